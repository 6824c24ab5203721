//! The life of one job, top to bottom: connected → workspace (clone) → provider run → git changes, push and pull
//! request → terminal event → drain → exit.

mod repo;

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    delivery::Delivery,
    event::{Completed, ErrorCode, EventKind, Failure},
    process::{Next, OutputLine, ProviderProcess},
    provider::{self, JobContext, Outcome},
    request::JobRequest,
    session_store::SessionStore,
    worker::{CancelReason, JobHandle, Worker},
};

pub async fn run(worker: Arc<Worker>, job: Arc<JobHandle>, request: JobRequest) {
    let workdir = worker.settings.workspace_dir.join(&request.workspace);
    let delivery = Delivery::start(&worker.settings, &request, &job.log);
    let terminal = Pipeline {
        worker: &worker,
        job: &job,
        request: &request,
        workdir: workdir.clone(),
    }
    .run()
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
        Failure::new(
            ErrorCode::Timeout,
            format!("the job exceeded its time limit of {}", seconds(self.request.timeout)),
        )
    }

    async fn run(&self) -> EventKind {
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
        let cloned = match &self.request.github {
            Some(github) => match self.clone_repo(github, deadline).await {
                Ok(cloned) => Some((github, cloned)),
                Err(failure) => return failure.into(),
            },
            None => None,
        };
        let provider = provider::build(self.request.provider, settings);
        let ctx = JobContext {
            settings,
            request: self.request,
            workdir: &self.workdir,
        };
        if let Err(failure) = self.restore_session(provider.as_ref()).await {
            return failure.into();
        }
        let outcome = match provider.prepare(&ctx).await {
            Ok(plan) => self.run_process(plan, provider.parser(), deadline).await,
            Err(failure) => Outcome::Failed(failure),
        };
        provider.cleanup().await;
        self.save_session(provider.as_ref(), &outcome).await;
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
            usage: run.usage,
            changes,
            pull_request,
        }))
    }

    fn session_store(&self) -> Option<SessionStore> {
        self.worker.settings.session_store_dir.as_ref().map(SessionStore::new)
    }

    /// Resume across replicas: a session run elsewhere is put where this replica's CLI will look for it.
    async fn restore_session(&self, provider: &dyn provider::Provider) -> Result<(), Failure> {
        let (Some(store), Some(id)) = (self.session_store(), &self.request.resume_session_id) else {
            return Ok(());
        };
        let Some(files) = provider.session_files(&self.workdir, id) else {
            return Ok(());
        };
        match store.restore(provider.kind(), id, &files).await {
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

    async fn save_session(&self, provider: &dyn provider::Provider, outcome: &Outcome) {
        let id = match outcome {
            Outcome::Completed(run) => run.session_id.as_deref(),
            Outcome::Failed(failure) => failure.session_id.as_deref(),
        };
        let (Some(store), Some(id)) = (self.session_store(), id) else {
            return;
        };
        let Some(files) = provider.session_files(&self.workdir, id) else {
            return;
        };
        if let Err(e) = store.save(provider.kind(), id, &files).await {
            tracing::warn!(error = %e, "could not save the session to the session store");
            self.emit(EventKind::warn(format!(
                "the session could not be saved for resuming elsewhere: {e}"
            )));
        }
    }

    async fn run_process(
        &self,
        plan: provider::CommandPlan,
        mut parser: Box<dyn provider::OutputParser>,
        deadline: Instant,
    ) -> Outcome {
        let settings = &self.worker.settings;
        if let Some(reason) = self.job.cancel_reason() {
            return Outcome::Failed(cancelled(reason));
        }
        let program = plan.program.clone();
        let mut process = match ProviderProcess::spawn(plan, settings.max_line_bytes, settings.kill_grace) {
            Ok(p) => p,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Outcome::Failed(Failure::new(
                    ErrorCode::ProviderNotInstalled,
                    format!(
                        "{} could not be started ({e}); install it or set its *_BIN variable",
                        program.display()
                    ),
                ));
            }
            Err(e) => {
                return Outcome::Failed(Failure::new(
                    ErrorCode::Internal,
                    format!("could not start the provider: {e}"),
                ));
            }
        };
        tracing::info!(job_id = %self.job.id, program = %program.display(), "provider started");

        let idle = settings.idle_timeout;
        let mut last_output = Instant::now();
        // Re-armed only when it fires, not on every line: at 100k lines/s the timer wheel would dominate.
        let idle_timer = tokio::time::sleep_until(last_output + idle);
        tokio::pin!(idle_timer);
        let total_timer = tokio::time::sleep_until(deadline);
        tokio::pin!(total_timer);

        let stop = loop {
            tokio::select! {
                biased;
                _ = self.job.cancelled() => break self.stopped_from_outside(),
                _ = &mut total_timer => break self.job_timed_out(),
                _ = &mut idle_timer => {
                    if last_output.elapsed() >= idle {
                        break Failure::new(
                            ErrorCode::IdleTimeout,
                            format!("the provider produced no output for {}", seconds(idle)),
                        );
                    }
                    idle_timer.as_mut().reset(last_output + idle);
                }
                next = process.next() => match next {
                    Next::Lines(lines) => {
                        last_output = Instant::now();
                        let mut events = Vec::with_capacity(lines.len());
                        for line in lines {
                            self.handle_line(line, parser.as_mut(), &mut events);
                        }
                        self.job.log.append_all(events);
                    }
                    Next::Exited(exit) => return parser.finish(&exit),
                },
            }
        };
        let exit = process.terminate().await;
        tracing::info!(job_id = %self.job.id, code = ?stop.code, exit = %exit.describe(), "provider stopped");
        let mut failure = exit.annotate(stop);
        failure.session_id = parser.session_id().map(String::from);
        Outcome::Failed(failure)
    }

    fn handle_line(&self, line: OutputLine, parser: &mut dyn provider::OutputParser, out: &mut Vec<EventKind>) {
        match line {
            OutputLine::Stdout {
                text,
                original_len,
                truncated,
            } => {
                if truncated {
                    out.push(EventKind::warn(format!(
                        "a provider output line of {original_len} bytes was truncated to MAX_LINE_BYTES ({})",
                        self.worker.settings.max_line_bytes
                    )));
                }
                out.extend(
                    parser
                        .push_line(&text)
                        .into_iter()
                        .map(|e| self.truncate_tool_output(e)),
                );
            }
            OutputLine::Stderr(text) => out.push(EventKind::Log {
                stream: crate::event::StreamName::Stderr,
                text,
            }),
        }
    }

    fn truncate_tool_output(&self, event: EventKind) -> EventKind {
        let max = self.worker.settings.tool_output_max_bytes;
        match event {
            EventKind::ToolResult {
                tool_use_id,
                mut output,
                is_error,
            } if output.len() > max => {
                let total = output.len();
                let mut cut = max;
                while !output.is_char_boundary(cut) {
                    cut -= 1;
                }
                output.truncate(cut);
                output.push_str(&format!("\n[truncated: {total} bytes in total]"));
                EventKind::ToolResult {
                    tool_use_id,
                    output,
                    is_error,
                }
            }
            other => other,
        }
    }
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
