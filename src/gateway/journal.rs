//! What a relay writes to the store: every event it passes on, in batches (one round trip per burst, not per
//! event), then the job's final record. While the store is down the events wait here, bounded by
//! `GATEWAY_LOG_MAX_BYTES`, and are written when it is back, so that a replay is complete afterwards; the client
//! of the relay is never held up by the store. While the job runs, the writer also renews this gateway's relay
//! lease, until the job's final record is written: a gateway that dies stops renewing, and another takes over.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use super::store::{JobRecord, Store, StoredEvent};
use tokio::sync::mpsc;

/// Retries of a failed write start here and grow to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The most one append carries.
const MAX_BATCH_EVENTS: usize = 1000;
const MAX_BATCH_BYTES: usize = 1 << 20;
/// A relay's lease lapses this long after its last renewal; it is renewed every `LEASE_RENEW`.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
const LEASE_RENEW: Duration = Duration::from_secs(1);

enum Entry {
    Event(StoredEvent),
    /// The job's record as it is now (running, or finished): written after the events before it.
    Record(JobRecord),
    /// This gateway relays the job from now on, as `owner`: the lease is renewed until the job's end is written.
    Lease(String),
    /// While the job waits in this gateway's line, a cancel asked through another gateway trips this.
    WatchCancel(tokio_util::sync::CancellationToken),
    /// Resolved once everything sent before it is in the store (dropped unresolved if this journal was fenced).
    Written(tokio::sync::oneshot::Sender<()>),
    /// The job leaves no trace (its client left before it started, or it was refused): whatever is pending is
    /// dropped, the job is removed from the store, and then the lease is given up, in that order, so that no
    /// write of this journal brings it back and no other gateway ends it meanwhile.
    Forget,
}

/// The relay's end of a job's journal. Dropping it lets the writer finish what it holds and stop.
pub struct Journal {
    tx: mpsc::UnboundedSender<Entry>,
}

impl Journal {
    /// Starts the writer for one job. It stops when the journal is dropped and everything is written; while the
    /// store is down it keeps trying for as long as the gateway lives.
    pub fn start(store: Arc<dyn Store>, job_id: String, max_bytes: usize) -> Journal {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            store,
            job_id,
            max_bytes,
            pending: VecDeque::new(),
            pending_bytes: 0,
            record: None,
            lease: None,
            cancel: None,
            fenced: false,
            forget: false,
            marks: Vec::new(),
        };
        tokio::spawn(writer.run(rx));
        Journal { tx }
    }

    pub fn event(&self, event: StoredEvent) {
        let _ = self.tx.send(Entry::Event(event));
    }

    pub fn record(&self, record: JobRecord) {
        let _ = self.tx.send(Entry::Record(record));
    }

    pub fn hold_lease(&self, owner: &str) {
        let _ = self.tx.send(Entry::Lease(owner.to_string()));
    }

    pub fn watch_cancel(&self, cancel: tokio_util::sync::CancellationToken) {
        let _ = self.tx.send(Entry::WatchCancel(cancel));
    }

    pub fn forget(&self) {
        let _ = self.tx.send(Entry::Forget);
    }

    /// Resolves once everything journaled so far is in the store; fails if it never will be from here (another
    /// gateway took the job over).
    pub fn written(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Entry::Written(tx));
        rx
    }
}

struct Writer {
    store: Arc<dyn Store>,
    job_id: String,
    max_bytes: usize,
    pending: VecDeque<StoredEvent>,
    pending_bytes: usize,
    /// The newest record not yet written; an older one is superseded.
    record: Option<JobRecord>,
    /// The owner name this gateway holds the job's relay lease under, while it does.
    lease: Option<String>,
    /// Tripped by a cancel asked through another gateway, until the job leaves the line.
    cancel: Option<tokio_util::sync::CancellationToken>,
    /// Another gateway took the job over, or the job is forgotten: nothing more is written from here.
    fenced: bool,
    /// The job is to be removed from the store once the writer gets to it.
    forget: bool,
    /// Waiting for what came before them to be written.
    marks: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Entry>) {
        let mut open = true;
        let mut backoff = MIN_BACKOFF;
        let mut renew = tokio::time::interval(LEASE_RENEW);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.pending.is_empty() && self.record.is_none() {
                for mark in self.marks.drain(..) {
                    let _ = mark.send(());
                }
            }
            if open && self.pending.is_empty() && self.record.is_none() && !self.forget {
                tokio::select! {
                    entry = rx.recv() => match entry {
                        Some(entry) => self.take(entry),
                        None => open = false,
                    },
                    _ = renew.tick(), if self.lease.is_some() => {
                        self.renew().await;
                        continue;
                    }
                }
            }
            // Everything that came meanwhile joins the batch.
            while open {
                match rx.try_recv() {
                    Ok(entry) => self.take(entry),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            if self.forget {
                // Until the job is gone from the store the lease stays held: released earlier, another gateway
                // would adopt a job whose client was told it is refused or cancelled.
                if let Err(e) = self.store.forget(&self.job_id).await {
                    tracing::warn!(job_id = %self.job_id, error = %e, "could not remove a job that never started; retrying");
                    self.renew().await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                self.forget = false;
                if let Some(owner) = self.lease.take() {
                    let _ = self.store.release(&self.job_id, &owner).await;
                }
            }
            if self.pending.is_empty() && self.record.is_none() {
                if open {
                    continue;
                }
                for mark in self.marks.drain(..) {
                    let _ = mark.send(());
                }
                // The relay ended without a final record (its client left before the job started): let go.
                if let Some(owner) = self.lease.take() {
                    let _ = self.store.release(&self.job_id, &owner).await;
                }
                return;
            }
            // A relay that never runs dry (a burst longer than a renewal period, or a store that fails every
            // write) renews here too: its lease must not lapse while it lives.
            if self.lease.is_some() && futures_util::FutureExt::now_or_never(renew.tick()).is_some() {
                self.renew().await;
            }
            match self.flush().await {
                Ok(()) => backoff = MIN_BACKOFF,
                Err(e) => {
                    tracing::warn!(job_id = %self.job_id, error = %e, buffered = self.pending_bytes, "store write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn take(&mut self, entry: Entry) {
        if self.fenced {
            return;
        }
        match entry {
            Entry::Event(event) => {
                self.pending_bytes += event.frame.len();
                self.pending.push_back(event);
                // The bound of a store that stays down: the oldest go, as the store itself would drop them.
                while self.pending_bytes > self.max_bytes && self.pending.len() > 1 {
                    if let Some(old) = self.pending.pop_front() {
                        self.pending_bytes -= old.frame.len();
                        tracing::warn!(job_id = %self.job_id, id = old.id, "store unreachable; an event was dropped from the buffer");
                    }
                }
            }
            Entry::Record(record) => {
                // Out of the line: a cancel now goes to the worker, through any gateway.
                if record.state != super::store::JobPhase::Queued {
                    self.cancel = None;
                }
                self.record = Some(record);
            }
            Entry::Lease(owner) => self.lease = Some(owner),
            Entry::WatchCancel(cancel) => self.cancel = Some(cancel),
            Entry::Written(mark) => self.marks.push(mark),
            Entry::Forget => {
                self.fence();
                self.forget = true;
            }
        }
    }

    async fn renew(&mut self) {
        if let Some(cancel) = &self.cancel
            && let Ok(true) = self.store.cancel_requested(&self.job_id).await
        {
            cancel.cancel();
            self.cancel = None;
        }
        let Some(owner) = &self.lease else { return };
        match self.store.lease(&self.job_id, owner, LEASE_TTL).await {
            Ok(true) => {}
            Ok(false) => {
                // Renewals failed for longer than the lease (the store was out of reach) and another gateway took
                // the relay over: it writes the job from here on; the ids it writes again are skipped.
                tracing::warn!(job_id = %self.job_id, "another gateway took this relay over; this one stops writing");
                self.lease = None;
                self.fence();
            }
            Err(e) => tracing::debug!(job_id = %self.job_id, error = %e, "lease renewal failed"),
        }
    }

    /// Stops every later write: what is pending is dropped.
    fn fence(&mut self) {
        self.fenced = true;
        self.pending.clear();
        self.pending_bytes = 0;
        self.record = None;
        self.cancel = None;
        self.marks.clear();
    }

    /// The events first, then the record, so that a reader who sees the job finished finds its last event.
    async fn flush(&mut self) -> Result<(), super::store::StoreError> {
        // In bounded batches: what piled up during an outage goes in several calls, each well within the store's
        // response timeout, and each one written is off the buffer at once.
        while !self.pending.is_empty() {
            let (mut count, mut bytes) = (0, 0);
            for event in &self.pending {
                if count > 0 && (count == MAX_BATCH_EVENTS || bytes + event.frame.len() > MAX_BATCH_BYTES) {
                    break;
                }
                count += 1;
                bytes += event.frame.len();
            }
            let batch: Vec<StoredEvent> = self.pending.iter().take(count).cloned().collect();
            self.store.append(&self.job_id, &batch).await?;
            self.pending.drain(..count);
            self.pending_bytes -= bytes;
        }
        if let Some(record) = &self.record {
            self.store.update(record).await?;
            let finished = record.state == super::store::JobPhase::Finished;
            self.record = None;
            // The end is written: nobody needs to take this relay over any more.
            if finished && let Some(owner) = self.lease.take() {
                let _ = self.store.release(&self.job_id, &owner).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::gateway::store::{JobPhase, MemoryStore, Read};

    #[tokio::test]
    async fn events_and_then_the_final_record_reach_the_store() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Duration::from_secs(60), 1 << 20));
        let mut record = JobRecord::queued("j", "cursor");
        store.create(&record).await.unwrap().unwrap();
        let journal = Journal::start(store.clone(), "j".into(), 1 << 20);
        for id in 0..3 {
            journal.event(StoredEvent {
                id,
                frame: Bytes::from(format!("id: {id}\n\n")),
            });
        }
        record.state = JobPhase::Finished;
        record.terminal_id = Some(2);
        journal.record(record.clone());
        drop(journal);
        // The writer finishes on its own; the record is its last write.
        let mut stored = None;
        while stored.as_ref() != Some(&record) {
            tokio::task::yield_now().await;
            stored = store.get("j").await.unwrap();
        }
        let Read::Events(events) = store.read("j", None, Duration::ZERO).await.unwrap() else {
            panic!("evicted")
        };
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_long_backlog_is_written_in_bounded_batches_without_a_gap() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(Duration::from_secs(60), 1 << 30));
        let mut record = JobRecord::queued("j", "cursor");
        store.create(&record).await.unwrap().unwrap();
        let journal = Journal::start(store.clone(), "j".into(), 1 << 30);
        let n = 2 * MAX_BATCH_EVENTS as u64 + 7;
        for id in 0..n {
            journal.event(StoredEvent {
                id,
                frame: Bytes::from(format!("id: {id}\n\n")),
            });
        }
        record.state = JobPhase::Finished;
        journal.record(record.clone());
        drop(journal);
        while store.get("j").await.unwrap().as_ref() != Some(&record) {
            tokio::task::yield_now().await;
        }
        let Read::Events(events) = store.read("j", None, Duration::ZERO).await.unwrap() else {
            panic!("evicted")
        };
        assert_eq!(
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>()
        );
    }
}
