//! A conversation job's turns (docs/conversations.md): each message runs the provider again on the same work tree
//! and session, bracketed by `turn_started` and `turn_completed` / `turn_failed`, until the close, the idle window,
//! a stop from outside or the total timeout. What the whole conversation amounts to is one `RunSummary`, which the
//! job then publishes and reports like a one-turn run.

use std::{path::Path, sync::Arc};

use git2::Oid;
use tokio::time::Instant;

use super::{Pipeline, TurnInput};
use crate::{
    conversation::{Conversation, Message, Next},
    event::{Changes, ErrorCode, EventKind, Failure, TurnCompleted, Usage},
    git::{self, GitError, snapshot::Author},
    process::{Outcome, RunSummary},
};

impl Pipeline<'_> {
    /// `base`: the commit the clone checked out (None inside: an empty repository); None without a repository,
    /// where turns report no changes.
    pub(super) async fn converse(
        &self,
        conversation: &Conversation,
        base: Option<Option<Oid>>,
        private_dir: &Path,
        deadline: Instant,
    ) -> Outcome {
        let mut totals = RunSummary::default();
        let mut session = self.request.resume_session_id.as_deref().map(String::from);
        let mut message = Message {
            turn: 1,
            text: self.request.prompt.clone(),
        };
        loop {
            let interrupt = conversation.begin_turn();
            self.emit(EventKind::TurnStarted {
                turn: message.turn,
                text: message.text.clone(),
            });
            let start = match base {
                Some(base) => self.checkpoint(base).await,
                None => None,
            };
            let input = TurnInput {
                prompt: &message.text,
                resume: session.as_deref(),
                interrupt: Some(interrupt),
                first: message.turn == 1,
            };
            match self.run_provider(&input, private_dir, deadline).await {
                Outcome::Completed(run) => {
                    if run.session_id.is_some() {
                        session.clone_from(&run.session_id);
                    }
                    let changes = match start {
                        Some(start) => self.turn_changes(start).await,
                        None => None,
                    };
                    self.emit(EventKind::TurnCompleted(Box::new(TurnCompleted {
                        turn: message.turn,
                        session_id: session.clone(),
                        result: run.result.clone(),
                        duration_ms: run.duration_ms,
                        num_turns: run.num_turns,
                        cost_usd: run.cost_usd,
                        usage: run.usage,
                        changes,
                    })));
                    add(&mut totals, run);
                }
                Outcome::Failed(mut failure) => {
                    if failure.session_id.is_some() {
                        session.clone_from(&failure.session_id);
                    }
                    if self.ends_conversation(&failure) {
                        conversation.close();
                        failure.session_id = session;
                        return Outcome::Failed(failure);
                    }
                    self.emit(EventKind::TurnFailed {
                        turn: message.turn,
                        code: failure.code,
                        message: failure.message,
                    });
                }
            }
            for turn in conversation.take_withdrawn() {
                self.emit(EventKind::TurnFailed {
                    turn,
                    code: ErrorCode::Interrupted,
                    message: "withdrawn before it started: a later message interrupted the conversation".into(),
                });
            }
            let next = tokio::select! {
                next = conversation.next() => next,
                _ = self.job.cancelled() => Next::Close { idle: false },
                _ = tokio::time::sleep_until(deadline) => Next::Close { idle: false },
            };
            // A stop from outside or the total timeout ends the job as it would a one-turn one.
            if let Some(reason) = self.job.cancel_reason() {
                conversation.close();
                let mut failure = super::cancelled(reason);
                failure.session_id = session;
                return Outcome::Failed(failure);
            }
            if Instant::now() >= deadline {
                conversation.close();
                let mut failure = self.job_timed_out();
                failure.session_id = session;
                return Outcome::Failed(failure);
            }
            match next {
                Next::Message(next) => message = next,
                Next::Close { idle } => {
                    if idle {
                        self.emit(EventKind::info(format!(
                            "no message for {}s after the last turn: the conversation closes itself",
                            conversation.idle.as_secs()
                        )));
                    }
                    break;
                }
            }
        }
        totals.session_id = session;
        Outcome::Completed(totals)
    }

    /// Failures that another message cannot mend end the conversation with them: a stop from outside, the
    /// timeouts, a CLI that is missing or refuses the credential, a spent budget, and the worker's own faults.
    fn ends_conversation(&self, failure: &Failure) -> bool {
        self.job.cancel_reason().is_some()
            || matches!(
                failure.code,
                ErrorCode::Timeout
                    | ErrorCode::IdleTimeout
                    | ErrorCode::Cancelled
                    | ErrorCode::Shutdown
                    | ErrorCode::ProviderNotInstalled
                    | ErrorCode::AuthFailed
                    | ErrorCode::Internal
                    | ErrorCode::BudgetExceeded
            )
    }

    /// The work tree as the turn starts, as a commit its changes are counted from; None (and a warning) if it
    /// cannot be taken, and the turn then reports none.
    async fn checkpoint(&self, base: Option<Oid>) -> Option<Oid> {
        let settings = Arc::clone(&self.worker.settings);
        let dir = self.workdir.clone();
        let taken = tokio::task::spawn_blocking(move || {
            let author = Author {
                name: &settings.git_author_name,
                email: &settings.git_author_email,
            };
            git::snapshot::checkpoint(&dir, base, &author)
        })
        .await;
        self.counted(taken)
    }

    async fn turn_changes(&self, start: Oid) -> Option<Changes> {
        let dir = self.workdir.clone();
        let counted = tokio::task::spawn_blocking(move || git::changes::summarize(&dir, Some(start))).await;
        self.counted(counted)
    }

    /// A turn's changes are worth a warning, never the turn.
    fn counted<T>(&self, step: Result<Result<T, GitError>, tokio::task::JoinError>) -> Option<T> {
        let e = match step {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        self.emit(EventKind::warn(format!("the turn's changes cannot be counted: {e}")));
        None
    }
}

/// The conversation's totals grow by one turn; its result is the last turn's.
fn add(totals: &mut RunSummary, run: RunSummary) {
    totals.result = run.result.or(totals.result.take());
    totals.duration_ms += run.duration_ms;
    totals.num_turns += run.num_turns;
    totals.cost_usd = match (totals.cost_usd, run.cost_usd) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    totals.usage = Usage {
        input_tokens: totals.usage.input_tokens + run.usage.input_tokens,
        output_tokens: totals.usage.output_tokens + run.usage.output_tokens,
        cache_read_tokens: totals.usage.cache_read_tokens + run.usage.cache_read_tokens,
        cache_creation_tokens: totals.usage.cache_creation_tokens + run.usage.cache_creation_tokens,
        // The CLI's figures, turn by turn; the broker's own count of the whole job replaces them in `completed`.
        ..Usage::default()
    };
}
