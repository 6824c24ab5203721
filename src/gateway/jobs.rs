//! What this gateway knows of the jobs it took: waiting, running on which worker, or finished with the terminal
//! event it passed through (kept `GATEWAY_JOB_MEMORY_SECONDS`, so a client can still read the end after the
//! worker exited).

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub enum Place {
    Queued,
    Running { worker: String },
    Finished { terminal: Terminal },
}

/// A terminal event as it went to the client: its SSE frame and its id.
#[derive(Clone, Debug)]
pub struct Terminal {
    pub id: u64,
    pub frame: Bytes,
    pub json: Bytes,
}

struct Job {
    place: Place,
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
                place: Place::Queued,
                since: SystemTime::now(),
                finished_at: None,
                cancel: cancel.clone(),
                moved: watch::Sender::new(()),
            },
        );
        Ok(cancel)
    }

    pub fn move_to(&self, job_id: &str, place: Place) {
        let mut jobs = self.lock();
        if let Some(job) = jobs.get_mut(job_id) {
            if matches!(place, Place::Finished { .. }) {
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

    pub fn get(&self, job_id: &str) -> Option<(Place, SystemTime)> {
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
            Some(job) if matches!(job.place, Place::Queued) => {
                job.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    pub fn finished(&self, job_id: &str) -> Option<Terminal> {
        match self.get(job_id)?.0 {
            Place::Finished { terminal } => Some(terminal),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal(id: u64) -> Place {
        Place::Finished {
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
        assert!(matches!(jobs.get("j"), Some((Place::Queued, _))));
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
        jobs.move_to("j", Place::Running { worker: "w".into() });
        assert!(!jobs.cancel_queued("j"));
        let cancel2 = jobs.open("k").unwrap();
        assert!(jobs.cancel_queued("k"));
        assert!(cancel2.is_cancelled() && !cancel.is_cancelled());
    }
}
