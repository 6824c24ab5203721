//! The life of one job, top to bottom: connected → workspace (clone) → provider run → git changes, push and pull
//! request → terminal event → drain → exit. The model-API broker that stands between the CLI and its API is
//! started with the first run and stopped when the job's last run has ended (`through_broker`).

mod conversation;
mod private_dir;
mod repo;
mod snapshot;

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use private_dir::PrivateDir;
pub use snapshot::{Carried, carried_work_tree};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    acp,
    approvals::Policy,
    broker::Broker,
    delivery::Delivery,
    event::{Completed, ErrorCode, EventKind, Failure, Usage},
    process::{self, Limits, Outcome},
    provider::{AcpPrepared, Cleanup, PreparedRun, RunContext},
    request::JobRequest,
    session_store::SessionStore,
    worker::{CancelReason, JobHandle, Worker},
};

/// `carried`: what the store holds for a `resumeSessionId`, looked up before the slot was taken.
pub async fn run(worker: Arc<Worker>, job: Arc<JobHandle>, request: JobRequest, carried: Carried) {
    let workdir = worker.settings.workspace_dir.join(&request.workspace);
    let delivery = Delivery::start(&worker.settings, &request, &job.log);
    let terminal = Pipeline {
        worker: &worker,
        job: &job,
        request: &request,
        workdir: workdir.clone(),
        broker: OnceLock::new(),
    }
    .run(carried)
    .await;
    let code = match &terminal {
        EventKind::Error(f) => Some(f.code),
        _ => None,
    };
    let outcome = code.map_or("completed", |c| c.as_str());
    let seconds = job.started_at.elapsed().unwrap_or_default().as_secs_f64();
    let events = job.log.append(terminal).map_or(0, |seq| seq + 1);
    worker.metrics.job_finished(outcome, seconds, events);
    tracing::info!(job_id = %job.id, error = ?code, "job ended");
    worker.enter_draining();
    delivery.finish(&worker.settings, &job).await;

    if !worker.settings.keep_workspace
        && let Err(e) = tokio::fs::remove_dir_all(&workdir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "could not remove the workspace");
    }
    // A client that lost its connection near the end can still reconnect and read the terminal event.
    if worker.settings.exit_after_job && !worker.is_shutting_down() {
        tokio::select! {
            _ = job.log.terminal_delivered() => {}
            _ = tokio::time::sleep(worker.settings.linger) => {
                tracing::info!("no client read the terminal event within LINGER_SECONDS");
            }
            _ = worker.shutting_down() => {}
        }
    }
    worker.finish_job();
}

struct Pipeline<'a> {
    worker: &'a Worker,
    job: &'a JobHandle,
    request: &'a JobRequest,
    workdir: PathBuf,
    /// The job's model-API broker, once a run could use one.
    broker: OnceLock<Broker>,
}

impl Pipeline<'_> {
    fn emit(&self, kind: EventKind) {
        self.job.log.append(kind);
    }

    /// The terminal failure for a cancel, a vanished `cancelOnDisconnect` client or SIGTERM.
    fn stopped_from_outside(&self) -> Failure {
        cancelled(self.job.cancel_reason().unwrap_or(CancelReason::Requested))
    }

    fn job_timed_out(&self) -> Failure {
        process::timed_out(self.request.timeout)
    }

    async fn run(&self, carried: Carried) -> EventKind {
        let settings = &self.worker.settings;
        self.emit(EventKind::Connected {
            worker_id: settings.worker_id.clone(),
            provider: self.request.provider.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        let deadline = Instant::now() + self.request.timeout;
        if let Err(e) = tokio::fs::create_dir_all(&self.workdir).await {
            return Failure::new(ErrorCode::Internal, format!("could not create the workspace: {e}")).into();
        }
        let stored = match carried {
            Carried::Nothing => None,
            Carried::WorkTree(stored) => Some(stored),
            Carried::Unreadable(e) => {
                return Failure::new(
                    ErrorCode::Internal,
                    format!("could not read the session's work tree from the session store: {e}"),
                )
                .into();
            }
        };
        let mut cloned = match &self.request.github {
            Some(github) => match self.clone_repo(github, deadline).await {
                Ok(cloned) => Some((github, cloned)),
                Err(failure) => return failure.into(),
            },
            None => None,
        };
        // A bound lowered since the save applies to what comes back too: nothing larger is unpacked.
        let max = settings.session_snapshot_max_bytes;
        let packed = match &stored {
            Some(stored) => tokio::fs::metadata(&stored.pack).await.map_or(0, |m| m.len()),
            None => 0,
        };
        let stored = match stored {
            Some(stored) if stored.manifest.bytes > max || packed > max => {
                self.emit(EventKind::warn(format!(
                    "the session's work tree was not restored: it holds {} bytes ({packed} packed), more than \
                     SESSION_SNAPSHOT_MAX_BYTES ({max}); the job starts from a fresh workspace",
                    stored.manifest.bytes
                )));
                None
            }
            stored => stored,
        };
        if let Some(stored) = stored {
            match self
                .restore_work_tree(stored, cloned.as_ref().map(|(_, c)| c), deadline)
                .await
            {
                // What changed is counted from the snapshot's base, so the earlier job's work counts too.
                Ok(base) => {
                    if let Some((_, cloned)) = &mut cloned {
                        cloned.head = base;
                    }
                }
                Err(failure) => return failure.into(),
            }
        }
        // One for the whole job: a conversation's turns share the CLI's home, where its sessions are.
        let private_dir = match PrivateDir::create(&self.job.id).await {
            Ok(dir) => dir,
            Err(e) => {
                return Failure::new(
                    ErrorCode::Internal,
                    format!("could not create the job's private folder: {e}"),
                )
                .into();
            }
        };
        let outcome = match &self.job.conversation {
            Some(conversation) => {
                let base = cloned.as_ref().map(|(_, c)| c.head);
                self.converse(conversation, base, private_dir.path(), deadline).await
            }
            None => {
                let turn = TurnInput {
                    prompt: &self.request.prompt,
                    resume: self.request.resume_session_id.as_deref(),
                    interrupt: None,
                    first: true,
                };
                self.run_provider(&turn, private_dir.path(), deadline).await
            }
        };
        // The CLI has ended for good: the broker's placeholder opens nothing from now on.
        if let Some(broker) = self.broker.get() {
            broker.stop();
        }
        private_dir.remove().await;
        self.save_work_tree(&outcome, cloned.as_ref().map(|(_, c)| c)).await;
        let run = match outcome {
            Outcome::Completed(run) => run,
            Outcome::Failed(failure) => return failure.into(),
        };
        let (changes, pull_request) = match cloned {
            Some((github, cloned)) => match self.publish(github, &cloned, deadline).await {
                Ok(published) => published,
                // The run itself succeeded: its session can still be resumed.
                Err(mut failure) => {
                    failure.session_id = run.session_id;
                    return failure.into();
                }
            },
            None => (None, None),
        };
        EventKind::Completed(Box::new(Completed {
            session_id: run.session_id,
            result: run.result,
            duration_ms: run.duration_ms,
            num_turns: run.num_turns,
            cost_usd: run.cost_usd,
            usage: self.metered_usage().unwrap_or(run.usage),
            changes,
            pull_request,
        }))
    }

    /// The provider's part: the session restored, the run prepared, the CLI run, what `prepare` wrote undone,
    /// the session saved. A conversation runs it once per turn, in the same private folder.
    async fn run_provider(&self, turn: &TurnInput<'_>, private_dir: &std::path::Path, deadline: Instant) -> Outcome {
        let ctx = RunContext {
            binary: self.worker.settings.binary(self.request.provider),
            workdir: &self.workdir,
            private_dir,
            prompt: turn.prompt,
            resume_session_id: turn.resume,
            broker_until: self
                .worker
                .settings
                .broker
                .as_ref()
                .map(|_| std::time::SystemTime::now() + deadline.saturating_duration_since(Instant::now())),
        };
        // A later turn goes on with what the earlier one left on this replica.
        let restored = if turn.first {
            self.restore_session(&ctx).await
        } else {
            Ok(())
        };
        let outcome = match (restored, self.request.acp) {
            (Err(failure), _) => Outcome::Failed(failure),
            (Ok(()), None) => match self.request.provider_run.prepare(&ctx).await {
                Ok(prepared) => self.run_prepared(prepared, turn, deadline).await,
                Err(failure) => Outcome::Failed(failure),
            },
            (Ok(()), Some(policy)) => match self.request.provider_run.prepare_acp(&ctx).await {
                Ok(prepared) => self.run_acp(&ctx, prepared, policy, turn, deadline).await,
                Err(failure) => Outcome::Failed(failure),
            },
        };
        let outcome = self.budget_outcome(outcome);
        self.save_session(&ctx, &outcome).await;
        outcome
    }

    fn limits(&self, deadline: Instant) -> Limits {
        let settings = &self.worker.settings;
        Limits {
            deadline,
            timeout: self.request.timeout,
            idle: settings.idle_timeout,
            kill_grace: settings.kill_grace,
            max_line_bytes: settings.max_line_bytes,
            tool_output_max_bytes: settings.tool_output_max_bytes,
        }
    }

    /// Resolves when the run must stop: the job is stopped from outside, the conversation's turn interrupted, or
    /// the broker refused a call for the job's budget.
    async fn stopped(&self, interrupt: Option<&CancellationToken>) -> Failure {
        let interrupted = async {
            match interrupt {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let budget = async {
            match self.broker.get() {
                Some(broker) => broker.budget_reached().await.failure(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = self.job.cancelled() => self.stopped_from_outside(),
            failure = budget => failure,
            _ = interrupted => interrupted_turn(),
        }
    }

    /// Runs the CLI unless the job was stopped (or the turn interrupted) while it was being prepared; what
    /// `prepare` wrote is undone either way.
    async fn unless_stopped(
        &self,
        cleanup: Cleanup,
        turn: &TurnInput<'_>,
        run: impl Future<Output = Outcome>,
    ) -> Outcome {
        let interrupted = turn.interrupt.as_ref().is_some_and(CancellationToken::is_cancelled);
        let outcome = match self.job.cancel_reason() {
            Some(reason) => Outcome::Failed(cancelled(reason)),
            None if interrupted => Outcome::Failed(interrupted_turn()),
            None => run.await,
        };
        cleanup.run().await;
        outcome
    }

    async fn run_prepared(&self, prepared: PreparedRun, turn: &TurnInput<'_>, deadline: Instant) -> Outcome {
        let PreparedRun {
            mut plan,
            parser,
            cleanup,
        } = prepared;
        if let Err(failure) = self.through_broker(&mut plan.env).await {
            cleanup.run().await;
            return Outcome::Failed(failure);
        }
        let limits = self.limits(deadline);
        let stopped = self.stopped(turn.interrupt.as_ref());
        let run = process::run(plan, parser, &limits, stopped, |events| {
            self.job.log.append_all(events);
        });
        self.unless_stopped(
            cleanup,
            turn,
            run.instrument(tracing::info_span!("provider", job_id = %self.job.id)),
        )
        .await
    }

    async fn run_acp(
        &self,
        ctx: &RunContext<'_>,
        prepared: AcpPrepared,
        policy: Policy,
        turn: &TurnInput<'_>,
        deadline: Instant,
    ) -> Outcome {
        let AcpPrepared {
            mut plan,
            mcp_servers,
            cleanup,
        } = prepared;
        if let Err(failure) = self.through_broker(&mut plan.env).await {
            cleanup.run().await;
            return Outcome::Failed(failure);
        }
        let limits = self.limits(deadline);
        let run = async {
            let cwd = match std::path::absolute(ctx.workdir) {
                Ok(cwd) => cwd,
                Err(e) => {
                    return Outcome::Failed(Failure::new(
                        ErrorCode::Internal,
                        format!("the workspace has no absolute path: {e}"),
                    ));
                }
            };
            let setup = acp::AcpSetup {
                prompt: ctx.prompt.to_string(),
                cwd: cwd.to_string_lossy().into_owned(),
                resume_session_id: ctx.resume_session_id.map(String::from),
                mcp_servers,
                policy,
            };
            let stopped = self.stopped(turn.interrupt.as_ref());
            acp::converse(plan, setup, &self.job.approvals, &limits, stopped, |events| {
                self.job.log.append_all(events);
            })
            .await
        };
        self.unless_stopped(
            cleanup,
            turn,
            run.instrument(tracing::info_span!("agent", job_id = %self.job.id)),
        )
        .await
    }

    /// Puts the job's model-API broker between the CLI and its API: its key in `env` becomes the broker's
    /// placeholder and its base URL the broker's (docs/providers.md#the-model-api-broker). A run the broker cannot
    /// serve (`BROKER=off`, a credentials file, Copilot's GitHub sign-in) keeps its key, as before.
    async fn through_broker(&self, env: &mut Vec<(String, String)>) -> Result<(), Failure> {
        let Some(config) = &self.worker.settings.broker else {
            return Ok(());
        };
        let provider = self.request.provider.provider();
        let endpoint = provider.model_endpoint();
        if self.broker.get().is_none() {
            let (name, budget, metrics) = (
                self.request.provider.as_str(),
                self.request.budget,
                self.worker.metrics.model.clone(),
            );
            let started = match &endpoint {
                Some(endpoint) => Broker::start(name, endpoint, env, config, budget, metrics).await?,
                None if provider.routes_itself_to_broker() => Some(Broker::bind(name, config, budget, metrics).await?),
                None => None,
            };
            if let Some(broker) = started {
                let _ = self.broker.set(broker);
            }
        }
        match (self.broker.get(), &endpoint) {
            (Some(broker), Some(endpoint)) => broker.route(endpoint, env),
            (Some(broker), None) => {
                let routed = self
                    .request
                    .provider_run
                    .route_to_broker(env, &broker.address(config))
                    .await?;
                if let Some(api) = routed {
                    broker.arm(api, config, "the CLI's configuration")?;
                }
            }
            (None, _) => {}
        }
        let brokered = self.broker.get().is_some_and(Broker::is_armed);
        if !brokered && !self.request.budget.is_unlimited() {
            self.emit(EventKind::warn(
                "this run's credential does not go through the model-API broker, so the job's limits cannot be kept",
            ));
        }
        Ok(())
    }

    /// A run the broker stopped for the budget ends as `budget_exceeded`, whatever the CLI made of the refusal.
    fn budget_outcome(&self, outcome: Outcome) -> Outcome {
        let Some(exceeded) = self.broker.get().and_then(Broker::exceeded) else {
            return outcome;
        };
        let mut failure = exceeded.failure();
        failure.session_id = match &outcome {
            Outcome::Completed(run) => run.session_id.clone(),
            Outcome::Failed(f) => f.session_id.clone(),
        };
        Outcome::Failed(failure)
    }

    fn metered_usage(&self) -> Option<Usage> {
        self.broker.get().filter(|b| b.is_armed()).map(Broker::usage)
    }

    fn session_store(&self) -> Option<SessionStore> {
        self.worker.settings.session_store_dir.as_ref().map(SessionStore::new)
    }

    /// Resume across replicas: a session run elsewhere is put where this replica's CLI will look for it.
    async fn restore_session(&self, ctx: &RunContext<'_>) -> Result<(), Failure> {
        let (Some(store), Some(id)) = (self.session_store(), ctx.resume_session_id) else {
            return Ok(());
        };
        let Some(files) = self.request.provider_run.session_files(ctx, id) else {
            return Ok(());
        };
        match store.restore(self.request.provider, id, &files).await {
            Ok(true) => self.emit(EventKind::info(format!("restored session {id} from the session store"))),
            // The CLI may still have it locally (same replica); if not, it reports the unknown session itself.
            Ok(false) => {}
            Err(e) => {
                return Err(Failure::new(
                    ErrorCode::Internal,
                    format!("could not restore the session: {e}"),
                ));
            }
        }
        Ok(())
    }

    async fn save_session(&self, ctx: &RunContext<'_>, outcome: &Outcome) {
        let id = match outcome {
            Outcome::Completed(run) => run.session_id.as_deref(),
            Outcome::Failed(failure) => failure.session_id.as_deref(),
        };
        let (Some(store), Some(id)) = (self.session_store(), id) else {
            return;
        };
        let Some(files) = self.request.provider_run.session_files(ctx, id) else {
            return;
        };
        if let Err(e) = self.request.provider_run.export_session(ctx, id).await {
            self.session_not_saved(&e);
        } else if let Err(e) = store.save(self.request.provider, id, &files).await {
            self.session_not_saved(&e);
        }
    }

    fn session_not_saved(&self, e: &dyn std::fmt::Display) {
        tracing::warn!(error = %e, "could not save the session to the session store");
        self.emit(EventKind::warn(format!(
            "the session could not be saved for resuming elsewhere: {e}"
        )));
    }
}

/// One run of the provider: the job's prompt, or a conversation's message.
struct TurnInput<'a> {
    prompt: &'a str,
    /// The session to go on with: the request's, or the one the conversation's last turn left.
    resume: Option<&'a str>,
    /// Cancelled by a message sent with `interrupt`.
    interrupt: Option<CancellationToken>,
    /// The job's first run: a session run elsewhere is restored from the session store before it.
    first: bool,
}

fn interrupted_turn() -> Failure {
    Failure::new(
        ErrorCode::Interrupted,
        "the turn was interrupted (a message sent with interrupt, or POST /jobs/{jobId}/interrupt)",
    )
}

fn cancelled(reason: CancelReason) -> Failure {
    match reason {
        CancelReason::Requested => Failure::new(ErrorCode::Cancelled, "the job was cancelled (POST /cancel)"),
        CancelReason::ClientGone => Failure::new(
            ErrorCode::Cancelled,
            "the client disconnected and asked for cancelOnDisconnect",
        ),
        CancelReason::Shutdown => Failure::new(ErrorCode::Shutdown, "the worker is shutting down (SIGTERM)"),
    }
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
