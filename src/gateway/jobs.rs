//! What this gateway knows of the jobs it took: waiting, running on which worker, or finished with the terminal
//! event it passed through (kept `GATEWAY_JOB_MEMORY_SECONDS`, so a client can still read the end after the
//! worker exited).

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    fleet::Fleet,
    relay::{Terminal, Upstream},
    store::{JobPhase, Read, Store},
};
use crate::error::ApiError;

#[derive(Clone, Debug)]
pub enum JobState {
    Queued,
    Running { worker: String },
    Finished { terminal: Terminal },
}

struct Job {
    place: JobState,
    since: SystemTime,
    finished_at: Option<Instant>,
    /// Cancels a job that is still waiting in line.
    cancel: CancellationToken,
    /// Bumped on every change of place, for readers that follow the job.
    moved: watch::Sender<()>,
}

pub struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
    memory: Duration,
}

/// The job id is already waiting or running here.
#[derive(Debug)]
pub struct Duplicate;

impl Jobs {
    pub fn new(memory: Duration) -> Self {
        Jobs {
            jobs: Mutex::new(HashMap::new()),
            memory,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new job; returns its cancel signal.
    pub fn open(&self, job_id: &str) -> Result<CancellationToken, Duplicate> {
        let mut jobs = self.lock();
        let memory = self.memory;
        jobs.retain(|_, j| j.finished_at.is_none_or(|at| at.elapsed() < memory));
        if jobs.get(job_id).is_some_and(|j| j.finished_at.is_none()) {
            return Err(Duplicate);
        }
        let cancel = CancellationToken::new();
        jobs.insert(
            job_id.to_string(),
            Job {
                place: JobState::Queued,
                since: SystemTime::now(),
                finished_at: None,
                cancel: cancel.clone(),
                moved: watch::Sender::new(()),
            },
        );
        Ok(cancel)
    }

    pub fn move_to(&self, job_id: &str, place: JobState) {
        let mut jobs = self.lock();
        if let Some(job) = jobs.get_mut(job_id) {
            if matches!(place, JobState::Finished { .. }) {
                job.finished_at = Some(Instant::now());
            }
            job.place = place;
            job.since = SystemTime::now();
            job.moved.send_replace(());
        }
    }

    /// The client left before the job started: nothing to remember.
    pub fn forget(&self, job_id: &str) {
        if let Some(job) = self.lock().remove(job_id) {
            job.moved.send_replace(());
        }
    }

    pub fn get(&self, job_id: &str) -> Option<(JobState, SystemTime)> {
        let jobs = self.lock();
        let job = jobs.get(job_id)?;
        if job.finished_at.is_some_and(|at| at.elapsed() >= self.memory) {
            return None;
        }
        Some((job.place.clone(), job.since))
    }

    pub fn follow(&self, job_id: &str) -> Option<watch::Receiver<()>> {
        self.lock().get(job_id).map(|j| j.moved.subscribe())
    }

    /// Cancels a waiting job; false when it is not waiting here.
    pub fn cancel_queued(&self, job_id: &str) -> bool {
        let jobs = self.lock();
        match jobs.get(job_id) {
            Some(job) if matches!(job.place, JobState::Queued) => {
                job.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    pub fn finished(&self, job_id: &str) -> Option<Terminal> {
        match self.get(job_id)?.0 {
            JobState::Finished { terminal } => Some(terminal),
            _ => None,
        }
    }
}

/// The event `id` of a job as the store holds it, when it is a terminal one.
pub async fn stored_terminal(store: &dyn Store, job_id: &str, id: u64) -> Option<Terminal> {
    let Ok(Read::Events(events)) = store.read(job_id, id.checked_sub(1), Duration::ZERO).await else {
        return None;
    };
    let event = events.into_iter().find(|e| e.id == id)?;
    Terminal::of_frame(id, event.frame)
}

/// Where a job is, as far as the fleet can tell.
pub enum Found {
    Queued,
    /// On the worker at this address.
    Running(String),
    Finished(Terminal),
}

impl Jobs {
    /// This gateway's own record, else the worker whose `/status` names the job, else the first worker that answers
    /// for it: another gateway dispatched it, or this one restarted since.
    pub async fn locate(
        &self,
        fleet: &Fleet,
        upstream: &Upstream,
        store: &dyn Store,
        job_id: &str,
    ) -> Result<Found, ApiError> {
        match self.get(job_id).map(|(state, _)| state) {
            Some(JobState::Queued) => return Ok(Found::Queued),
            Some(JobState::Running { worker }) => return Ok(Found::Running(worker)),
            Some(JobState::Finished { terminal }) => return Ok(Found::Finished(terminal)),
            None => {}
        }
        // Another gateway took it: the store knows where it is. A store that cannot answer is skipped; the
        // workers still know the jobs they run.
        if let Ok(Some(record)) = store.get(job_id).await {
            match (record.state, record.worker, record.terminal_id) {
                (JobPhase::Queued, _, _) => return Ok(Found::Queued),
                (JobPhase::Running, Some(worker), _) => return Ok(Found::Running(worker)),
                (JobPhase::Finished, _, Some(id)) => {
                    if let Some(terminal) = stored_terminal(store, job_id, id).await {
                        return Ok(Found::Finished(terminal));
                    }
                }
                _ => {}
            }
        }
        if let Some(worker) = fleet.worker_with_job(job_id) {
            return Ok(Found::Running(worker));
        }
        for w in fleet.workers() {
            let req = upstream.authorized(upstream.client.get(format!("{}/jobs/{job_id}", w.address)));
            if req.send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(Found::Running(w.address));
            }
        }
        Err(ApiError::JobNotFound {
            job_id: job_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn terminal(id: u64) -> JobState {
        JobState::Finished {
            terminal: Terminal {
                id,
                frame: Bytes::new(),
                json: Bytes::new(),
            },
        }
    }

    #[test]
    fn a_running_id_is_refused_and_a_finished_one_may_be_reused() {
        let jobs = Jobs::new(Duration::from_secs(60));
        jobs.open("j").unwrap();
        assert!(jobs.open("j").is_err());
        jobs.move_to("j", terminal(4));
        assert_eq!(jobs.finished("j").map(|t| t.id), Some(4));
        jobs.open("j").unwrap();
        assert!(matches!(jobs.get("j"), Some((JobState::Queued, _))));
    }

    #[test]
    fn finished_jobs_are_forgotten_after_the_memory_time() {
        let jobs = Jobs::new(Duration::ZERO);
        jobs.open("j").unwrap();
        jobs.move_to("j", terminal(1));
        assert!(jobs.get("j").is_none());
    }

    #[test]
    fn only_a_waiting_job_is_cancelled_here() {
        let jobs = Jobs::new(Duration::from_secs(60));
        let cancel = jobs.open("j").unwrap();
        jobs.move_to("j", JobState::Running { worker: "w".into() });
        assert!(!jobs.cancel_queued("j"));
        let cancel2 = jobs.open("k").unwrap();
        assert!(jobs.cancel_queued("k"));
        assert!(cancel2.is_cancelled() && !cancel.is_cancelled());
    }
}
