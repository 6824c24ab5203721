//! The store in this gateway's memory: the default for a gateway of its own. It keeps every event it relayed, up
//! to `GATEWAY_LOG_MAX_BYTES` per job (the oldest go first, and a reader past them gets `410 events_evicted`), and
//! forgets a finished job `GATEWAY_JOB_MEMORY_SECONDS` after its end.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::watch;

use bytes::Bytes;

use super::{JobPhase, JobRecord, ListFilter, Read, Store, StoreError, StoredEvent, Waiting, after_id, now_ms};

/// The events from the first one past `after`, found by their ids (held in order): a follower reads only what is
/// new, not the whole log again on every read.
fn held_after(events: &VecDeque<StoredEvent>, after: Option<u64>) -> Read {
    let next = after.map_or(0, |a| a + 1);
    let start = events.partition_point(|e| e.id < next);
    after_id(events.range(start..).cloned(), after)
}

#[derive(Debug)]
struct Entry {
    record: JobRecord,
    events: VecDeque<StoredEvent>,
    bytes: usize,
    finished_at: Option<Instant>,
    /// Bumped on every append, for readers that wait.
    appended: watch::Sender<u64>,
}

/// The line and the requests of the jobs in it (or being handed to a worker).
#[derive(Debug, Default)]
struct Line {
    order: VecDeque<Waiting>,
    /// Each request with when it was queued (kept while claimed, so that a job put back keeps its wait) and when
    /// it is dropped at the latest.
    requests: HashMap<String, (Bytes, u64, Instant)>,
}

impl Line {
    fn leave(&mut self, job_id: &str) {
        self.order.retain(|w| w.job_id != job_id);
        self.requests.remove(job_id);
    }
}

#[derive(Debug)]
pub struct MemoryStore {
    jobs: Mutex<HashMap<String, Entry>>,
    line: Mutex<Line>,
    memory: Duration,
    log_max_bytes: usize,
}

impl MemoryStore {
    pub fn new(memory: Duration, log_max_bytes: usize) -> Self {
        MemoryStore {
            jobs: Mutex::new(HashMap::new()),
            line: Mutex::new(Line::default()),
            memory,
            log_max_bytes,
        }
    }

    /// The map with the jobs whose memory time is over removed.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let memory = self.memory;
        jobs.retain(|_, e| e.finished_at.is_none_or(|at| at.elapsed() < memory));
        jobs
    }

    fn line_lock(&self) -> MutexGuard<'_, Line> {
        let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        line.requests.retain(|_, (_, _, until)| *until > now);
        // A job whose request expired is no longer waited for.
        let Line { order, requests } = &mut *line;
        order.retain(|w| requests.contains_key(&w.job_id));
        line
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create(&self, record: &JobRecord) -> Result<Result<(), JobRecord>, StoreError> {
        let mut jobs = self.lock();
        if let Some(existing) = jobs.get(&record.job_id) {
            return Ok(Err(existing.record.clone()));
        }
        jobs.insert(
            record.job_id.clone(),
            Entry {
                record: record.clone(),
                events: VecDeque::new(),
                bytes: 0,
                finished_at: None,
                appended: watch::Sender::new(0),
            },
        );
        Ok(Ok(()))
    }

    async fn update(&self, record: &JobRecord) -> Result<(), StoreError> {
        if record.state != JobPhase::Queued {
            self.line_lock().leave(&record.job_id);
        }
        let mut jobs = self.lock();
        if let Some(entry) = jobs.get_mut(&record.job_id) {
            if record.state == JobPhase::Finished && entry.finished_at.is_none() {
                entry.finished_at = Some(Instant::now());
            }
            entry.record = record.clone();
            // A reader waiting for the end learns of it.
            entry.appended.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.lock().get(job_id).map(|e| e.record.clone()))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<JobRecord>, StoreError> {
        let jobs = self.lock();
        let mut records: Vec<JobRecord> = jobs
            .values()
            .map(|e| &e.record)
            .filter(|r| filter.admits(r))
            .cloned()
            .collect();
        records.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.job_id.cmp(&a.job_id)));
        records.truncate(filter.limit);
        Ok(records)
    }

    async fn forget(&self, job_id: &str) -> Result<(), StoreError> {
        self.line_lock().leave(job_id);
        self.lock().remove(job_id);
        Ok(())
    }

    async fn append(&self, job_id: &str, events: &[StoredEvent]) -> Result<(), StoreError> {
        let mut jobs = self.lock();
        let Some(entry) = jobs.get_mut(job_id) else {
            return Ok(());
        };
        for event in events {
            // A relay taken over resends nothing it already stored, but a batch retried after an error may.
            if entry.events.back().is_some_and(|last| last.id >= event.id) {
                continue;
            }
            entry.bytes += event.frame.len();
            entry.events.push_back(event.clone());
        }
        // The newest event always stays, so a reader can always be told where the log goes on.
        while entry.bytes > self.log_max_bytes && entry.events.len() > 1 {
            if let Some(old) = entry.events.pop_front() {
                entry.bytes -= old.frame.len();
            }
        }
        entry.appended.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn read(&self, job_id: &str, after: Option<u64>, wait: Duration) -> Result<Read, StoreError> {
        let mut appended = {
            let jobs = self.lock();
            let Some(entry) = jobs.get(job_id) else {
                return Ok(Read::Events(Vec::new()));
            };
            let read = held_after(&entry.events, after);
            if !matches!(&read, Read::Events(events) if events.is_empty()) || entry.finished_at.is_some() {
                return Ok(read);
            }
            entry.appended.subscribe()
        };
        // Nothing new yet: wait for the next append (or the end), then read again.
        let _ = tokio::time::timeout(wait, appended.changed()).await;
        let jobs = self.lock();
        Ok(match jobs.get(job_id) {
            Some(entry) => held_after(&entry.events, after),
            None => Read::Events(Vec::new()),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// One gateway, one relay per job: the lease is always its own, and a gateway that dies takes its memory
    /// (and so every job it could hand over) with it.
    async fn lease(&self, _job_id: &str, _owner: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release(&self, _job_id: &str, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn orphans(&self) -> Result<Vec<JobRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn enqueue(
        &self,
        job_id: &str,
        request: &Bytes,
        max: usize,
        ttl: Duration,
    ) -> Result<Option<Vec<Waiting>>, StoreError> {
        let mut line = self.line_lock();
        let present = line.order.iter().any(|w| w.job_id == job_id);
        if !present && line.order.len() >= max {
            return Ok(None);
        }
        let since = line.requests.get(job_id).map_or_else(now_ms, |(_, since, _)| *since);
        if !present {
            line.order.push_back(Waiting {
                job_id: job_id.to_string(),
                since,
                claimed: false,
            });
        }
        line.requests
            .insert(job_id.to_string(), (request.clone(), since, Instant::now() + ttl));
        Ok(Some(line.order.iter().cloned().collect()))
    }

    async fn line(&self) -> Result<Vec<Waiting>, StoreError> {
        Ok(self.line_lock().order.iter().cloned().collect())
    }

    /// One gateway: it holds every lease.
    async fn claim(&self, job_id: &str, _owner: &str) -> Result<bool, StoreError> {
        let mut line = self.line_lock();
        Ok(match line.order.iter_mut().find(|w| w.job_id == job_id) {
            Some(w) if !w.claimed => {
                w.claimed = true;
                true
            }
            _ => false,
        })
    }

    async fn unclaim(&self, job_id: &str) -> Result<(), StoreError> {
        if let Some(w) = self.line_lock().order.iter_mut().find(|w| w.job_id == job_id) {
            w.claimed = false;
        }
        Ok(())
    }

    async fn leave(&self, job_id: &str) -> Result<(), StoreError> {
        self.line_lock().leave(job_id);
        Ok(())
    }

    async fn request(&self, job_id: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.line_lock().requests.get(job_id).map(|(r, _, _)| r.clone()))
    }

    /// One gateway: a waiting job is always in its own line, where a cancel takes it out directly.
    async fn request_cancel(&self, _job_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn cancel_requested(&self, _job_id: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn last_id(&self, job_id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().get(job_id).and_then(|e| e.events.back()).map(|e| e.id))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn event(id: u64, size: usize) -> StoredEvent {
        StoredEvent {
            id,
            frame: Bytes::from(vec![b'x'; size]),
        }
    }

    #[tokio::test]
    async fn an_id_is_taken_until_its_job_is_forgotten() {
        let store = MemoryStore::new(Duration::from_secs(60), 1 << 20);
        let record = JobRecord::queued("j", "cursor");
        assert_eq!(store.create(&record).await.unwrap(), Ok(()));
        let taken = store.create(&record).await.unwrap().unwrap_err();
        assert_eq!(taken.state, JobPhase::Queued);
        store.forget("j").await.unwrap();
        assert_eq!(store.create(&record).await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_finished_job_is_kept_for_the_memory_time_only() {
        let store = MemoryStore::new(Duration::ZERO, 1 << 20);
        let mut record = JobRecord::queued("j", "cursor");
        store.create(&record).await.unwrap().unwrap();
        record.state = JobPhase::Finished;
        store.update(&record).await.unwrap();
        assert_eq!(store.get("j").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_reader_gets_what_follows_its_id_and_is_told_what_was_evicted() {
        let store = MemoryStore::new(Duration::from_secs(60), 250);
        store.create(&JobRecord::queued("j", "cursor")).await.unwrap().unwrap();
        store
            .append("j", &(0..5).map(|id| event(id, 100)).collect::<Vec<_>>())
            .await
            .unwrap();
        // 500 bytes went in, 250 are kept: events 3 and 4.
        let wait = Duration::ZERO;
        assert_eq!(
            store.read("j", Some(3), wait).await.unwrap(),
            Read::Events(vec![event(4, 100)])
        );
        assert_eq!(
            store.read("j", Some(0), wait).await.unwrap(),
            Read::Evicted { first_available: 3 }
        );
        assert_eq!(
            store.read("j", None, wait).await.unwrap(),
            Read::Evicted { first_available: 3 }
        );
        assert_eq!(store.read("j", Some(4), wait).await.unwrap(), Read::Events(Vec::new()));
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_the_next_append() {
        let store = std::sync::Arc::new(MemoryStore::new(Duration::from_secs(60), 1 << 20));
        store.create(&JobRecord::queued("j", "cursor")).await.unwrap().unwrap();
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { store.read("j", None, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        store.append("j", &[event(0, 1)]).await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), Read::Events(vec![event(0, 1)]));
    }

    #[tokio::test]
    async fn the_line_is_first_come_first_served_and_a_claimed_job_keeps_its_place() {
        let store = MemoryStore::new(Duration::from_secs(60), 1 << 20);
        let ttl = Duration::from_secs(60);
        let body = Bytes::from_static(b"{}");
        let ids = |line: Vec<Waiting>| line.into_iter().map(|w| w.job_id).collect::<Vec<_>>();
        assert_eq!(
            store.enqueue("a", &body, 2, ttl).await.unwrap().map(ids),
            Some(vec!["a".to_string()])
        );
        let line = store.enqueue("b", &body, 2, ttl).await.unwrap().map(ids);
        assert_eq!(line, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(store.enqueue("c", &body, 2, ttl).await.unwrap(), None);
        // Put back by a gateway that found it missing: it keeps its one place.
        assert_eq!(
            store.enqueue("a", &body, 2, ttl).await.unwrap().map(ids).unwrap().len(),
            2
        );
        assert!(store.claim("a", "me").await.unwrap());
        assert!(!store.claim("a", "me").await.unwrap(), "claimed once only");
        let line = store.line().await.unwrap();
        assert_eq!(
            (line[0].job_id.as_str(), line[0].claimed),
            ("a", true),
            "it keeps its place"
        );
        store.unclaim("a").await.unwrap();
        assert!(!store.line().await.unwrap()[0].claimed);
        assert_eq!(store.request("a").await.unwrap(), Some(body.clone()));
        store.leave("a").await.unwrap();
        assert_eq!(ids(store.line().await.unwrap()), ["b"]);
        assert_eq!(store.request("a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_list_is_newest_first_and_filtered() {
        let store = MemoryStore::new(Duration::from_secs(60), 1 << 20);
        for (i, provider) in ["cursor", "codex", "cursor"].into_iter().enumerate() {
            let mut r = JobRecord::queued(&format!("j{i}"), provider);
            r.created_at = 1000 + i as u64;
            store.create(&r).await.unwrap().unwrap();
        }
        let filter = |provider: Option<&str>, before: Option<u64>| ListFilter {
            provider: provider.map(String::from),
            before,
            limit: 10,
            ..ListFilter::default()
        };
        let ids = |records: Vec<JobRecord>| records.into_iter().map(|r| r.job_id).collect::<Vec<_>>();
        assert_eq!(ids(store.list(&filter(None, None)).await.unwrap()), ["j2", "j1", "j0"]);
        assert_eq!(
            ids(store.list(&filter(Some("cursor"), None)).await.unwrap()),
            ["j2", "j0"]
        );
        assert_eq!(ids(store.list(&filter(None, Some(1002))).await.unwrap()), ["j1", "j0"]);
    }
}
