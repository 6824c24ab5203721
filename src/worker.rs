//! The worker's state machine (idle → busy → draining → exit) and the job slot that only one request can take.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    approvals::Approvals, availability::Availability, conversation::Conversation, error::ApiError, event_log::EventLog,
    metrics::WorkerMetrics, provider::ProviderKind, settings::Settings,
};

pub use crate::error::Phase;

/// Why a job was stopped from outside; the first reason wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// `POST /cancel`.
    Requested,
    /// The `/execute` client went away and asked for `cancelOnDisconnect`.
    ClientGone,
    /// SIGTERM or SIGINT.
    Shutdown,
}

pub struct JobHandle {
    pub id: String,
    pub provider: ProviderKind,
    pub started_at: SystemTime,
    pub log: Arc<EventLog>,
    pub cancel_on_disconnect: bool,
    /// The permission requests of a run over ACP, answered through `/jobs/{jobId}/permissions/{requestId}`.
    pub approvals: Approvals,
    /// Set for a conversation job: the messages and the close sent to it.
    pub conversation: Option<Conversation>,
    cancel: CancellationToken,
    reason: Mutex<Option<CancelReason>>,
}

impl JobHandle {
    pub fn new(
        id: String,
        provider: ProviderKind,
        log: Arc<EventLog>,
        cancel_on_disconnect: bool,
        conversation: Option<Conversation>,
    ) -> Self {
        JobHandle {
            conversation,
            id,
            provider,
            started_at: SystemTime::now(),
            log,
            cancel_on_disconnect,
            approvals: Approvals::default(),
            cancel: CancellationToken::new(),
            reason: Mutex::new(None),
        }
    }

    pub fn cancel(&self, reason: CancelReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.cancel.cancel();
    }

    pub fn cancel_reason(&self) -> Option<CancelReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

struct State {
    phase: Phase,
    /// The running job, or the last one (so `GET /events` can still replay it).
    job: Option<Arc<JobHandle>>,
}

pub struct Worker {
    pub settings: Arc<Settings>,
    pub availability: Availability,
    pub metrics: WorkerMetrics,
    state: Mutex<State>,
    /// The phase as it moves, for `GET /status?wait=`: a waiting request costs one receiver, no polling. Written
    /// under the state lock, so it never disagrees with `phase()` for long.
    phase_watch: watch::Sender<Phase>,
    exit: CancellationToken,
    shutdown: CancellationToken,
    /// Jobs run on the main runtime, not on the HTTP worker threads that happened to accept them.
    runtime: tokio::runtime::Handle,
}

impl Worker {
    pub fn new(settings: Arc<Settings>, runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(Worker {
            availability: Availability::new(&settings),
            metrics: WorkerMetrics::default(),
            settings,
            state: Mutex::new(State {
                phase: Phase::Idle,
                job: None,
            }),
            phase_watch: watch::Sender::new(Phase::Idle),
            exit: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            runtime,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every phase change goes through here, with the lock held.
    fn set_phase(&self, state: &mut State, phase: Phase) {
        state.phase = phase;
        self.phase_watch.send_replace(phase);
    }

    /// Follows the phase: `GET /status?wait=` answers when it moves.
    pub fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.phase_watch.subscribe()
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Takes the job slot. Check and set happen under one lock, so of any number of concurrent requests
    /// exactly one gets it.
    pub fn take_slot(&self, job: Arc<JobHandle>) -> Result<(), ApiError> {
        let mut state = self.lock();
        let busy = |phase| {
            self.metrics.refused_busy();
            ApiError::Busy {
                phase,
                retry_after_seconds: self.settings.retry_after_seconds,
            }
        };
        // Checked under the state lock, which `begin_shutdown` also holds while it cancels the token.
        if self.shutdown.is_cancelled() {
            return Err(busy(Phase::Draining));
        }
        if state.phase != Phase::Idle {
            return Err(busy(state.phase));
        }
        self.set_phase(&mut state, Phase::Busy);
        state.job = Some(job);
        Ok(())
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    pub fn job(&self) -> Option<Arc<JobHandle>> {
        self.lock().job.clone()
    }

    /// The current or last job if it has this id (`/jobs/{jobId}…`).
    pub fn job_named(&self, job_id: &str) -> Result<Arc<JobHandle>, ApiError> {
        self.job()
            .filter(|job| job.id == job_id)
            .ok_or_else(|| ApiError::JobNotFound {
                job_id: job_id.to_string(),
            })
    }

    /// The job if it is still running.
    pub fn running_job(&self) -> Option<Arc<JobHandle>> {
        let state = self.lock();
        (state.phase == Phase::Busy).then(|| state.job.clone()).flatten()
    }

    pub fn enter_draining(&self) {
        let mut state = self.lock();
        self.set_phase(&mut state, Phase::Draining);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    pub async fn shutting_down(&self) {
        self.shutdown.cancelled().await
    }

    /// After the drain: exit (the default, and always during shutdown) or take the next job.
    pub fn finish_job(&self) {
        let mut state = self.lock();
        if self.settings.exit_after_job || self.shutdown.is_cancelled() {
            self.set_phase(&mut state, Phase::Draining);
            drop(state);
            tracing::info!("job finished; exiting so that a fresh replica takes this one's place");
            self.exit.cancel();
        } else {
            self.set_phase(&mut state, Phase::Idle);
        }
    }

    /// SIGTERM/SIGINT: exit at once when idle; otherwise stop the job and exit after its drain.
    pub fn begin_shutdown(&self) {
        let mut state = self.lock();
        if self.shutdown.is_cancelled() {
            return;
        }
        self.shutdown.cancel();
        match state.phase {
            Phase::Idle => {
                self.set_phase(&mut state, Phase::Draining);
                drop(state);
                self.exit.cancel();
            }
            Phase::Busy => {
                if let Some(job) = state.job.clone() {
                    drop(state);
                    job.cancel(CancelReason::Shutdown);
                }
            }
            // The drain is already under way and ends in an exit.
            Phase::Draining => {}
        }
    }

    pub async fn exited(&self) {
        self.exit.cancelled().await
    }
}
