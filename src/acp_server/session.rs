//! One editor session of the ACP bridge and the conversation jobs behind it (docs/acp-server.md): the first prompt
//! starts a job, later prompts are its messages, a cancel interrupts the running turn, a load resumes the session
//! in a new job after replaying the old jobs' turns, a close ends the job.
//!
//! The ACP session id is the id of the session's first job; the jobs after it (a load, or a prompt after the
//! conversation closed itself) are `<id>.2`, `<id>.3`, …, so that a bridge that never saw the session finds every
//! job of it, in order, on the gateway that ran them.

use std::{
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use agent_client_protocol::{
    Client, Error,
    v1::{
        ConnectionTo,
        schema::{ContentBlock, PromptResponse, RequestPermissionOutcome, SessionId, SessionNotification, StopReason},
    },
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    Settings,
    remote::{Feed, Remote, RemoteError},
    updates,
};

pub struct Session {
    pub id: SessionId,
    cwd: PathBuf,
    mcp_servers: Option<Value>,
    /// The job the session talks to, held for a whole turn so that prompts run one after another.
    job: tokio::sync::Mutex<JobState>,
    /// The job whose turn runs now, for a cancel that arrives while the turn holds `job`.
    running: Mutex<Option<String>>,
    /// The job open now, for a close that arrives while a turn holds `job`.
    current: Mutex<Option<String>>,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct JobState {
    link: Option<Link>,
    /// How many jobs this session has had; the next one's id follows from it.
    jobs: u32,
    /// The provider session the next job resumes (conversation and work tree).
    resume: Option<String>,
}

struct Link {
    job_id: String,
    events: mpsc::UnboundedReceiver<Feed>,
}

/// How a turn ended, for the prompt's reply.
enum TurnEnd {
    Reply(PromptResponse),
    Failed(String),
}

impl Session {
    pub fn new(id: SessionId, cwd: PathBuf, mcp_servers: Option<Value>) -> Self {
        Session {
            id,
            cwd,
            mcp_servers,
            job: tokio::sync::Mutex::new(JobState::default()),
            running: Mutex::new(None),
            current: Mutex::new(None),
            cancelled: AtomicBool::new(false),
        }
    }

    fn job_id(&self, n: u32) -> String {
        if n <= 1 {
            self.id.to_string()
        } else {
            format!("{}.{n}", self.id)
        }
    }

    /// Runs one prompt turn to its end, forwarding its events to the editor as they come.
    pub async fn prompt(
        &self,
        settings: &Settings,
        remote: &Remote,
        prompt: &[ContentBlock],
        cx: &ConnectionTo<Client>,
    ) -> Result<PromptResponse, Error> {
        let text = updates::prompt_text(prompt, &self.cwd).map_err(|e| Error::invalid_params().data(e.to_string()))?;
        let mut guard = self.job.lock().await;
        let state = &mut *guard;
        self.cancelled.store(false, Ordering::SeqCst);
        let turn = self
            .send(state, settings, remote, &text)
            .await
            .map_err(|e| Error::internal_error().data(format!("the worker did not take the prompt: {e}")))?;
        let Some(link) = state.link.as_mut() else {
            return Err(Error::internal_error().data("the job ended before its turn began"));
        };
        *lock(&self.running) = Some(link.job_id.clone());
        // A cancel that came while the job was being started found no turn to interrupt: it is done now. (Running
        // is set before the flag is read, and the cancel sets the flag before it reads running, so one of the two
        // always sees the other.)
        if self.cancelled.load(Ordering::SeqCst) {
            self.interrupt(remote, &link.job_id).await;
        }
        let end = self.follow_turn(link, turn, &mut state.resume, remote, cx).await;
        *lock(&self.running) = None;
        match end {
            Ok(TurnEnd::Reply(reply)) => Ok(reply),
            Ok(TurnEnd::Failed(message)) => Err(Error::internal_error().data(message)),
            Err(ended) => {
                // The job is over (closed after its idle window, cancelled, lost): the next prompt starts a new one
                // that resumes the session.
                state.link = None;
                *lock(&self.current) = None;
                if self.cancelled.load(Ordering::SeqCst) {
                    return Ok(PromptResponse::new(StopReason::Cancelled));
                }
                ended
            }
        }
    }

    /// Hands the text to the session's job: the first turn of a new job, or a message to the running one.
    /// Returns the turn it starts.
    async fn send(
        &self,
        state: &mut JobState,
        settings: &Settings,
        remote: &Remote,
        text: &str,
    ) -> Result<u64, RemoteError> {
        if let Some(link) = &state.link {
            match remote
                .post(&format!("/jobs/{}/messages", link.job_id), Some(json!({"text": text})))
                .await
            {
                Ok(answer) => return Ok(answer["turn"].as_u64().unwrap_or(0)),
                // The conversation closed itself (idle) or ended since the last turn: a new job goes on with it.
                Err(e) if matches!(e.code(), Some("job_finished" | "not_running" | "job_not_found")) => {
                    state.link = None;
                }
                Err(e) => return Err(e),
            }
        }
        state.jobs += 1;
        let job_id = self.job_id(state.jobs);
        let mut body = settings.request(text, &job_id);
        if let Some(resume) = &state.resume {
            body["resumeSessionId"] = json!(resume);
        }
        if let Some(servers) = &self.mcp_servers {
            body["providerOptions"]["mcpServers"] = servers.clone();
        }
        let response = remote.start(&body).await?;
        *lock(&self.current) = Some(job_id.clone());
        state.link = Some(Link {
            events: remote.follow(job_id.clone(), Some(response)),
            job_id,
        });
        Ok(1)
    }

    /// Reads the job's events until `turn` ends. `Err` when the job itself ended (its terminal event or a lost
    /// stream), with the prompt's answer for that case.
    async fn follow_turn(
        &self,
        link: &mut Link,
        turn: u64,
        resume: &mut Option<String>,
        remote: &Remote,
        cx: &ConnectionTo<Client>,
    ) -> Result<TurnEnd, Result<PromptResponse, Error>> {
        // Events before this turn's start are the end of an earlier, interrupted turn: the editor has closed it.
        let mut in_turn = false;
        while let Some(feed) = link.events.recv().await {
            let event = match feed {
                Feed::Event(event) => event,
                Feed::Lost(why) => return Err(Err(Error::internal_error().data(why))),
            };
            if let Some(id) = event["sessionId"].as_str().filter(|id| !id.is_empty()) {
                *resume = Some(id.to_string());
            }
            let this_turn = event["turn"].as_u64() == Some(turn);
            match event["type"].as_str().unwrap_or_default() {
                "turn_started" if this_turn => in_turn = true,
                "turn_completed" if this_turn => {
                    let reply = PromptResponse::new(StopReason::EndTurn).usage(updates::turn_usage(&event));
                    return Ok(TurnEnd::Reply(reply));
                }
                "turn_failed" if this_turn => {
                    return Ok(
                        if event["code"] == "interrupted" || self.cancelled.load(Ordering::SeqCst) {
                            TurnEnd::Reply(PromptResponse::new(StopReason::Cancelled))
                        } else {
                            TurnEnd::Failed(format!(
                                "{}: {}",
                                event["code"].as_str().unwrap_or("failed"),
                                event["message"].as_str().unwrap_or_default()
                            ))
                        },
                    );
                }
                "completed" => return Err(Ok(PromptResponse::new(StopReason::EndTurn))),
                "error" => {
                    return Err(Err(Error::internal_error().data(format!(
                        "the job ended: {}: {}",
                        event["code"].as_str().unwrap_or("error"),
                        event["message"].as_str().unwrap_or_default()
                    ))));
                }
                "permission_request" if in_turn => self.ask(&event, &link.job_id, remote, cx),
                _ if in_turn => self.show(&event, false, cx),
                _ => {}
            }
        }
        Err(Err(Error::internal_error().data("the job's events ended")))
    }

    fn show(&self, event: &Value, replay: bool, cx: &ConnectionTo<Client>) {
        for update in updates::session_updates(event, replay) {
            // A notification cannot fail but for a closed connection, which ends the bridge anyway.
            let _ = cx.send_notification(SessionNotification::new(self.id.clone(), update));
        }
    }

    /// Puts the agent's question to the editor and sends its answer to the job. In a task of its own: the editor
    /// may take its time, and a cancel must still reach the job meanwhile. A withdrawn question (the editor
    /// cancelled the turn) is not answered: the interrupt withdraws it on the worker.
    fn ask(&self, event: &Value, job_id: &str, remote: &Remote, cx: &ConnectionTo<Client>) {
        let request = updates::permission_request(&self.id, event);
        let (Some(request_id), remote, cx) = (event["requestId"].as_str(), remote.clone(), cx.clone()) else {
            return;
        };
        let path = format!("/jobs/{job_id}/permissions/{request_id}");
        tokio::spawn(async move {
            let Ok(answer) = cx.send_request(request).block_task().await else {
                return;
            };
            if let RequestPermissionOutcome::Selected(selected) = answer.outcome {
                let body = json!({"optionId": selected.option_id.to_string()});
                if let Err(e) = remote.post(&path, Some(body)).await {
                    eprintln!("unified-worker acp: the answer to {path} was not taken: {e}");
                }
            }
        });
    }

    /// `session/cancel`: interrupts the running turn, whose prompt then answers `cancelled`. A job still waiting
    /// in the gateway's line has no turn to interrupt, so it is cancelled as a whole.
    pub async fn cancel(&self, remote: &Remote) {
        self.cancelled.store(true, Ordering::SeqCst);
        let running = lock(&self.running).clone();
        if let Some(job_id) = running {
            self.interrupt(remote, &job_id).await;
        }
    }

    async fn interrupt(&self, remote: &Remote, job_id: &str) {
        match remote.post(&format!("/jobs/{job_id}/interrupt"), None).await {
            Err(e) if e.code() == Some("not_running") => {
                let _ = remote.post(&format!("/jobs/{job_id}/cancel"), None).await;
            }
            Err(e) => eprintln!("unified-worker acp: cannot interrupt job {job_id}: {e}"),
            Ok(_) => {}
        }
    }

    /// `session/load`: every earlier job of the session, closed and read from its beginning, replayed to the editor
    /// (each turn's message as the user's, then what the agent did); the next prompt starts a job that resumes the
    /// last one's provider session, conversation and work tree. `false` when the server knows no job of it.
    pub async fn load(&self, remote: &Remote, cx: &ConnectionTo<Client>) -> Result<bool, RemoteError> {
        let mut state = self.job.lock().await;
        let mut n = 1;
        loop {
            let job_id = self.job_id(n);
            // A job the bridge that had the session left open would wait out its idle window: closed now, its
            // stream ends and its work tree is saved for the resume.
            let _ = remote.post(&format!("/jobs/{job_id}/close"), None).await;
            let Some(events) = remote.all_events(&job_id).await? else {
                break;
            };
            for event in &events {
                if let Some(id) = event["sessionId"].as_str().filter(|id| !id.is_empty()) {
                    state.resume = Some(id.to_string());
                }
                self.show(event, true, cx);
            }
            state.jobs = n;
            n += 1;
        }
        Ok(state.jobs > 0)
    }

    /// `session/close`, and the bridge's end: the running turn is interrupted and the job closed (its push and
    /// saved work tree happen once, after the turn's end).
    pub async fn close(&self, remote: &Remote) {
        self.cancel(remote).await;
        let current = lock(&self.current).take();
        if let Some(job_id) = current {
            let _ = remote.post(&format!("/jobs/{job_id}/close"), None).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
