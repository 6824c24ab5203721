//! Approvals (docs/approvals.md): the request's `approvals` policy, and a job's open permission questions, held
//! in common by the run that asks them and the endpoint that answers them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, time::Instant};

/// The `approvals` field of `POST /execute`.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalsSpec {
    /// `client`: every permission request of the agent is a `permission_request` event, answered by a client.
    pub mode: ApprovalMode,
    /// How long a question waits for its answer (default 300, at most 86400).
    #[serde(default, deserialize_with = "crate::request::whole_number")]
    #[schema(minimum = 1, maximum = 86400, value_type = Option<i32>)]
    pub timeout_seconds: Option<u32>,
    /// What applies when no answer came in time (default `reject`).
    pub on_timeout: Option<OnTimeout>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    Client,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    #[default]
    Reject,
    Allow,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_TIMEOUT_SECONDS: u32 = 86_400;

/// Who answers the agent's questions in a run over ACP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No `approvals` in the request: every tool call is allowed, as in the headless modes.
    AllowAll,
    /// `approvals.mode = "client"`.
    Client { timeout: Duration, on_timeout: OnTimeout },
}

impl ApprovalsSpec {
    pub fn policy(&self) -> Result<Policy, ApprovalError> {
        let timeout = match self.timeout_seconds {
            None => DEFAULT_TIMEOUT,
            Some(secs @ 1..=MAX_TIMEOUT_SECONDS) => Duration::from_secs(secs.into()),
            Some(_) => {
                return Err(ApprovalError::Invalid {
                    field: "approvals.timeoutSeconds",
                    message: format!("approvals.timeoutSeconds must be from 1 to {MAX_TIMEOUT_SECONDS}"),
                });
            }
        };
        match self.mode {
            ApprovalMode::Client => Ok(Policy::Client {
                timeout,
                on_timeout: self.on_timeout.unwrap_or_default(),
            }),
        }
    }
}

/// Why a policy or an answer was refused; the HTTP layer maps it to its status and code.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// A field of the request or of the answer is out of bounds.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("job has no permission request {request_id}")]
    NotFound { request_id: String },
    #[error("permission request {request_id} was already answered")]
    AlreadyAnswered { request_id: String },
}

/// An answer from a client, on its way to the run.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub request_id: String,
    pub option_id: String,
}

enum Question {
    Open { options: Vec<String>, deadline: Instant },
    Resolved,
}

/// A job's questions and when each one's wait is up. Opening, answering, expiring and withdrawing happen under one
/// lock, so each question is settled exactly once: by a client, its timeout or a stop, whichever comes first; the
/// others get 409.
pub struct Approvals {
    questions: Mutex<HashMap<String, Question>>,
    answers: mpsc::UnboundedSender<Answer>,
    /// Held by the run that waits for answers; a conversation's next turn is a new run and takes it in turn.
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>>,
}

impl Default for Approvals {
    fn default() -> Self {
        let (answers, receiver) = mpsc::unbounded_channel();
        Approvals {
            questions: Mutex::default(),
            answers,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
        }
    }
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Question>> {
        self.questions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run's end of the answers, for as long as the run holds it: one run at a time, one after another in a
    /// conversation.
    pub fn take_answers(&self) -> Option<tokio::sync::OwnedMutexGuard<mpsc::UnboundedReceiver<Answer>>> {
        self.receiver.clone().try_lock_owned().ok()
    }

    /// How many questions the job has asked so far: a conversation's next turn numbers its questions after them,
    /// so that a request id names one question within the job.
    pub fn asked(&self) -> u64 {
        self.lock().len() as u64
    }

    /// Called by the run before it announces the question, so that an answer to the event always finds it.
    pub fn open(&self, request_id: &str, options: Vec<String>, deadline: Instant) {
        self.lock()
            .insert(request_id.to_string(), Question::Open { options, deadline });
    }

    /// Whether a question waits for its answer (the wait is not the agent's idleness).
    pub fn waiting(&self) -> bool {
        self.lock().values().any(|q| matches!(q, Question::Open { .. }))
    }

    /// When the next open question's wait is up.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock()
            .values()
            .filter_map(|q| match q {
                Question::Open { deadline, .. } => Some(*deadline),
                Question::Resolved => None,
            })
            .min()
    }

    /// Settles the questions whose wait is up at `now` and returns them, for `onTimeout`. A question a client
    /// answered just before is not among them: its answer is on its way to the run.
    pub fn take_expired(&self, now: Instant) -> Vec<String> {
        let mut expired = Vec::new();
        for (request_id, question) in self.lock().iter_mut() {
            if matches!(question, Question::Open { deadline, .. } if *deadline <= now) {
                *question = Question::Resolved;
                expired.push(request_id.clone());
            }
        }
        expired.sort();
        expired
    }

    /// Settles every open question: the run is over or stopped, so a late answer gets 409.
    pub fn withdraw_all(&self) {
        for question in self.lock().values_mut() {
            *question = Question::Resolved;
        }
    }

    /// A client's answer: checked against the question's options, settled, and handed to the run.
    pub fn answer(&self, request_id: &str, option_id: &str) -> Result<(), ApprovalError> {
        let mut questions = self.lock();
        let question = questions.get_mut(request_id).ok_or_else(|| ApprovalError::NotFound {
            request_id: request_id.to_string(),
        })?;
        let Question::Open { options, .. } = question else {
            return Err(ApprovalError::AlreadyAnswered {
                request_id: request_id.to_string(),
            });
        };
        if !options.iter().any(|o| o == option_id) {
            return Err(ApprovalError::Invalid {
                field: "optionId",
                message: format!("optionId must be one of the request's options: {}", options.join(", ")),
            });
        }
        *question = Question::Resolved;
        drop(questions);
        // The run may have ended in the meantime (then nobody waits for the answer any more, and it is moot).
        let _ = self.answers.send(Answer {
            request_id: request_id.to_string(),
            option_id: option_id.to_string(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_turn_of_a_conversation_takes_the_answers_after_the_last_let_them_go() {
        let approvals = Approvals::default();
        let first = approvals.take_answers().expect("the first turn's");
        assert!(approvals.take_answers().is_none(), "one run at a time");
        approvals.open("perm-1", vec!["allow".into()], Instant::now() + Duration::from_secs(60));
        drop(first);

        let mut second = approvals.take_answers().expect("the next turn's");
        assert_eq!(
            approvals.asked(),
            1,
            "the next turn numbers its questions after the first's"
        );
        approvals.open(
            "perm-2",
            vec!["reject".into()],
            Instant::now() + Duration::from_secs(60),
        );
        approvals.answer("perm-2", "reject").unwrap();
        assert_eq!(second.recv().await.unwrap().request_id, "perm-2");
    }

    #[test]
    fn a_question_is_settled_once_whoever_comes_first() {
        let approvals = Approvals::default();
        let mut answers = approvals.take_answers().unwrap();
        assert!(approvals.take_answers().is_none());
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        approvals.open("perm-1", vec!["allow".into(), "reject".into()], later);
        approvals.open("perm-2", vec!["allow".into()], now);
        approvals.open("perm-3", vec!["allow".into()], later);
        assert_eq!(approvals.next_deadline(), Some(now));

        let wrong = approvals.answer("perm-1", "maybe").unwrap_err();
        assert!(matches!(wrong, ApprovalError::Invalid { field, .. } if field == "optionId"));
        approvals.answer("perm-1", "reject").unwrap();
        assert_eq!(
            answers.try_recv().unwrap(),
            Answer {
                request_id: "perm-1".into(),
                option_id: "reject".into()
            }
        );
        assert!(matches!(
            approvals.answer("perm-1", "allow"),
            Err(ApprovalError::AlreadyAnswered { .. })
        ));

        assert_eq!(approvals.take_expired(now), ["perm-2"]);
        assert!(matches!(
            approvals.answer("perm-2", "allow"),
            Err(ApprovalError::AlreadyAnswered { .. })
        ));
        assert!(matches!(
            approvals.answer("perm-9", "allow"),
            Err(ApprovalError::NotFound { .. })
        ));
        assert!(approvals.waiting());
        approvals.withdraw_all();
        assert!(!approvals.waiting() && approvals.next_deadline().is_none());
        assert!(matches!(
            approvals.answer("perm-3", "allow"),
            Err(ApprovalError::AlreadyAnswered { .. })
        ));
        assert!(answers.try_recv().is_err());
    }

    #[test]
    fn the_policy_takes_its_defaults_and_refuses_an_unbounded_wait() {
        let spec: ApprovalsSpec = serde_json::from_str(r#"{"mode":"client"}"#).unwrap();
        assert_eq!(
            spec.policy().unwrap(),
            Policy::Client {
                timeout: DEFAULT_TIMEOUT,
                on_timeout: OnTimeout::Reject
            }
        );
        let spec: ApprovalsSpec =
            serde_json::from_str(r#"{"mode":"client","timeoutSeconds":5.0,"onTimeout":"allow"}"#).unwrap();
        assert_eq!(
            spec.policy().unwrap(),
            Policy::Client {
                timeout: Duration::from_secs(5),
                on_timeout: OnTimeout::Allow
            }
        );
        for bad in [0, 86_401] {
            let spec: ApprovalsSpec =
                serde_json::from_value(serde_json::json!({"mode":"client","timeoutSeconds":bad})).unwrap();
            assert!(
                matches!(spec.policy(), Err(ApprovalError::Invalid { field, .. }) if field == "approvals.timeoutSeconds")
            );
        }
        assert!(serde_json::from_str::<ApprovalsSpec>(r#"{"mode":"auto"}"#).is_err());
    }
}
