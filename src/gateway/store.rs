//! The fleet's memory that outlives a gateway (docs/fleet.md): each job's record and its events as they were
//! relayed, and the fleet's one line of waiting jobs with their requests, behind one trait. In memory for one gateway (the default), or in Redis common to every gateway
//! (`GATEWAY_STORE=redis://…`). The code that relays or replays never knows which it has.

mod memory;
mod redis;
mod seal;

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::{
    memory::MemoryStore,
    redis::RedisStore,
    seal::{MIN_SECRET_LEN, RequestSeal},
};

/// Where a job stands, fleet-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobPhase {
    Queued,
    Running,
    Finished,
}

impl JobPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Queued => "queued",
            JobPhase::Running => "running",
            JobPhase::Finished => "finished",
        }
    }
}

/// What the fleet remembers of a job (`GET /jobs`, `GET /jobs/{jobId}`). Times are milliseconds since the epoch,
/// so that every gateway reads the same clock-free values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub job_id: String,
    pub state: JobPhase,
    pub provider: String,
    /// The worker that runs or ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// `completed`, or the code of the terminal `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_code: Option<String>,
    /// The id of the terminal event: a reader stops after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<u64>,
    /// From admission to dispatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<u64>,
}

impl JobRecord {
    pub fn queued(job_id: &str, provider: &str) -> Self {
        JobRecord {
            job_id: job_id.to_string(),
            state: JobPhase::Queued,
            provider: provider.to_string(),
            worker: None,
            created_at: now_ms(),
            started_at: None,
            ended_at: None,
            terminal_code: None,
            terminal_id: None,
            queue_wait_ms: None,
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One event as it was relayed: its id and its whole SSE frame, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: u64,
    pub frame: Bytes,
}

/// What a read found after the client's last id.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The next events in order (empty when none came within the wait).
    Events(Vec<StoredEvent>),
    /// The events right after the client's id are no longer held; the first one still held has this id.
    Evicted { first_available: u64 },
}

/// `GET /jobs` filters.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub state: Option<JobPhase>,
    pub provider: Option<String>,
    /// Only jobs created before this instant (ms since the epoch): the next page starts at the last one's
    /// `createdAt`.
    pub before: Option<u64>,
    pub limit: usize,
}

impl ListFilter {
    fn admits(&self, record: &JobRecord) -> bool {
        self.state.is_none_or(|s| s == record.state)
            && self.provider.as_deref().is_none_or(|p| p == record.provider)
            && self.before.is_none_or(|b| record.created_at < b)
    }
}

/// A job in the fleet's line, and since when (ms since the epoch) it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub job_id: String,
    pub since: u64,
    /// A gateway is handing it to a worker: it keeps its place (nobody behind it moves up and back down if the
    /// worker refuses) but holds that worker, not an idle one.
    pub claimed: bool,
}

/// The store cannot be reached or answered wrongly; the message says why (never a credential).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the store is unavailable: {0}")]
pub struct StoreError(pub String);

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// `redis` or `memory`, for `/health`.
    fn kind(&self) -> &'static str;

    /// Registers a new job. `Ok(Err(existing))` when the id is taken by a job that waits, runs, or ended within
    /// the memory time: job ids are unique fleet-wide.
    async fn create(&self, record: &JobRecord) -> Result<Result<(), JobRecord>, StoreError>;

    /// Writes the record as it is now. A finished record, and the job's events with it, are kept for the memory
    /// time from this call on.
    async fn update(&self, record: &JobRecord) -> Result<(), StoreError>;

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;

    /// The remembered jobs, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// A job whose client left before it started: nothing to remember.
    async fn forget(&self, job_id: &str) -> Result<(), StoreError>;

    /// Appends events in order (one round trip for the whole batch).
    async fn append(&self, job_id: &str, events: &[StoredEvent]) -> Result<(), StoreError>;

    /// The events after `after` (all of them for `None`), waiting at most `wait` for the first one when there is
    /// none yet.
    async fn read(&self, job_id: &str, after: Option<u64>, wait: Duration) -> Result<Read, StoreError>;

    /// Answers when the store does.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Takes the relay lease of a running job for `owner`, or renews it when `owner` holds it already; false when
    /// another gateway holds it. A lease lapses `ttl` after its last renewal.
    async fn lease(&self, job_id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the lease up, if `owner` holds it.
    async fn release(&self, job_id: &str, owner: &str) -> Result<(), StoreError>;

    /// Jobs not finished that no gateway answers for any more: their lease lapsed (their gateway died).
    async fn orphans(&self) -> Result<Vec<JobRecord>, StoreError>;

    /// The id of the last event stored for the job.
    async fn last_id(&self, job_id: &str) -> Result<Option<u64>, StoreError>;

    /// Puts a job at the end of the fleet's line with the request that runs it, unless `max` wait already:
    /// `Ok(None)` then. Otherwise the line as it is now, this job in it. A job already in the line stays where it is
    /// (a gateway putting back a job the store lost is not a second place). The request is kept until the job
    /// leaves the line for good (it starts, or ends while waiting), at most `ttl`: a gateway that adopts the job of
    /// a dead one sends it.
    async fn enqueue(
        &self,
        job_id: &str,
        request: &Bytes,
        max: usize,
        ttl: Duration,
    ) -> Result<Option<Vec<Waiting>>, StoreError>;

    /// The fleet's line, head first. A job whose request is gone (expired) is no longer waited for: it leaves.
    async fn line(&self) -> Result<Vec<Waiting>, StoreError>;

    /// Marks the job as being handed to a worker by `owner`, which must hold its lease (or nobody does): false when
    /// it is not in the line, another gateway claimed it, or another gateway holds the job now. The job keeps its
    /// place until it starts (`update` to running takes it out) or is unclaimed.
    async fn claim(&self, job_id: &str, owner: &str) -> Result<bool, StoreError>;

    /// The worker refused (429) or could not be reached: the job waits again, in its place.
    async fn unclaim(&self, job_id: &str) -> Result<(), StoreError>;

    /// The job leaves the line for good (it started, or ended while waiting): its request is dropped.
    async fn leave(&self, job_id: &str) -> Result<(), StoreError>;

    /// The request of a job still waiting (or being handed to a worker).
    async fn request(&self, job_id: &str) -> Result<Option<Bytes>, StoreError>;

    /// Asks the gateway that holds a waiting job to cancel it (a cancel that reached another gateway).
    async fn request_cancel(&self, job_id: &str) -> Result<(), StoreError>;

    /// Whether a cancel was asked for the job through another gateway.
    async fn cancel_requested(&self, job_id: &str) -> Result<bool, StoreError>;
}

/// `GATEWAY_STORE`: `memory`, or a Redis URL.
#[derive(Clone)]
pub enum StoreConfig {
    Memory,
    Redis {
        /// `redis://` or `rediss://`; may hold a password.
        url: String,
        /// From `GATEWAY_STORE_PASSWORD_FILE`; wins over one in the URL.
        password: Option<crate::secret::Secret>,
        /// From `GATEWAY_STORE_KEY` / `GATEWAY_STORE_KEY_FILE`: the waiting requests are sealed with it.
        seal: Option<std::sync::Arc<RequestSeal>>,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Memory => f.write_str("memory"),
            // The URL may carry the password.
            StoreConfig::Redis { .. } => f.write_str("redis"),
        }
    }
}

/// Builds the configured store. Redis is connected lazily: a gateway starts while the store is down, and says so
/// in `/health` until it is back.
pub fn open(config: &StoreConfig, memory: Duration, log_max_bytes: usize) -> Result<Box<dyn Store>, StoreError> {
    Ok(match config {
        StoreConfig::Memory => Box::new(MemoryStore::new(memory, log_max_bytes)),
        StoreConfig::Redis { url, password, seal } => Box::new(RedisStore::new(
            url,
            password.as_ref(),
            seal.clone(),
            memory,
            log_max_bytes,
        )?),
    })
}

/// Which of `events` are new after `after`, and whether some between were lost: the one rule both stores apply to
/// what they hold.
fn after_id(held: impl IntoIterator<Item = StoredEvent>, after: Option<u64>) -> Read {
    let next = after.map_or(0, |a| a + 1);
    let events: Vec<StoredEvent> = held.into_iter().filter(|e| e.id >= next).collect();
    match events.first() {
        Some(first) if first.id > next => Read::Evicted {
            first_available: first.id,
        },
        _ => Read::Events(events),
    }
}

/// A store that counts its failures and times its calls for `/metrics`, and remembers whether the last call
/// worked, for `/health`.
#[derive(Debug)]
pub struct Metered {
    inner: Box<dyn Store>,
    errors: prometheus_client::metrics::counter::Counter,
    seconds: prometheus_client::metrics::histogram::Histogram,
    /// The last call's fate; a gateway that has not asked yet counts the store as up.
    up: std::sync::atomic::AtomicBool,
}

impl Metered {
    /// `errors` and `seconds` are the gateway's store metrics, passed as handles so that the store needs nothing of
    /// the module that draws the fleet's metrics.
    pub fn new(
        inner: Box<dyn Store>,
        errors: prometheus_client::metrics::counter::Counter,
        seconds: prometheus_client::metrics::histogram::Histogram,
    ) -> Self {
        Metered {
            inner,
            errors,
            seconds,
            up: std::sync::atomic::AtomicBool::new(true),
        }
    }

    async fn timed<T>(&self, call: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.observed(true, call).await
    }

    async fn observed<T>(
        &self,
        timed: bool,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = call.await;
        if timed {
            self.seconds.observe(started.elapsed().as_secs_f64());
        }
        if result.is_err() {
            self.errors.inc();
        }
        self.up.store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
        result
    }

    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl Store for Metered {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn create(&self, record: &JobRecord) -> Result<Result<(), JobRecord>, StoreError> {
        self.timed(self.inner.create(record)).await
    }

    async fn update(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.timed(self.inner.update(record)).await
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.timed(self.inner.get(job_id)).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRecord>, StoreError> {
        self.timed(self.inner.list(filter)).await
    }

    async fn forget(&self, job_id: &str) -> Result<(), StoreError> {
        self.timed(self.inner.forget(job_id)).await
    }

    async fn append(&self, job_id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        self.timed(self.inner.append(job_id, events)).await
    }

    async fn read(&self, job_id: &str, after: Option<u64>, wait: Duration) -> Result<Read, StoreError> {
        // A blocking read lasts as long as nothing happens: counted when it fails, not timed.
        self.observed(wait.is_zero(), self.inner.read(job_id, after, wait))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(self.inner.ping()).await
    }

    async fn lease(&self, job_id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.timed(self.inner.lease(job_id, owner, ttl)).await
    }

    async fn release(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.timed(self.inner.release(job_id, owner)).await
    }

    async fn orphans(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.timed(self.inner.orphans()).await
    }

    async fn last_id(&self, job_id: &str) -> Result<Option<u64>, StoreError> {
        self.timed(self.inner.last_id(job_id)).await
    }

    async fn enqueue(
        &self,
        job_id: &str,
        request: &Bytes,
        max: usize,
        ttl: Duration,
    ) -> Result<Option<Vec<Waiting>>, StoreError> {
        self.timed(self.inner.enqueue(job_id, request, max, ttl)).await
    }

    async fn line(&self) -> Result<Vec<Waiting>, StoreError> {
        self.timed(self.inner.line()).await
    }

    async fn claim(&self, job_id: &str, owner: &str) -> Result<bool, StoreError> {
        self.timed(self.inner.claim(job_id, owner)).await
    }

    async fn unclaim(&self, job_id: &str) -> Result<(), StoreError> {
        self.timed(self.inner.unclaim(job_id)).await
    }

    async fn leave(&self, job_id: &str) -> Result<(), StoreError> {
        self.timed(self.inner.leave(job_id)).await
    }

    async fn request(&self, job_id: &str) -> Result<Option<Bytes>, StoreError> {
        self.timed(self.inner.request(job_id)).await
    }

    async fn request_cancel(&self, job_id: &str) -> Result<(), StoreError> {
        self.timed(self.inner.request_cancel(job_id)).await
    }

    async fn cancel_requested(&self, job_id: &str) -> Result<bool, StoreError> {
        self.timed(self.inner.cancel_requested(job_id)).await
    }
}
