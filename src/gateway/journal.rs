//! What a relay writes to the store: every event it passes on, in batches (one round trip per burst, not per
//! event), then the job's final record. While the store is down the events wait here, bounded by
//! `GATEWAY_LOG_MAX_BYTES`, and are written when it is back, so that a replay is complete afterwards; the client
//! of the relay is never held up by the store.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use super::store::{JobRecord, Store, StoredEvent};
use tokio::sync::mpsc;

/// Retries of a failed write start here and grow to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

enum Entry {
    Event(StoredEvent),
    /// The job's record as it is now (running, or finished): written after the events before it.
    Record(JobRecord),
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
}

struct Writer {
    store: Arc<dyn Store>,
    job_id: String,
    max_bytes: usize,
    pending: VecDeque<StoredEvent>,
    pending_bytes: usize,
    /// The newest record not yet written; an older one is superseded.
    record: Option<JobRecord>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Entry>) {
        let mut open = true;
        let mut backoff = MIN_BACKOFF;
        loop {
            if open && self.pending.is_empty() && self.record.is_none() {
                match rx.recv().await {
                    Some(entry) => self.take(entry),
                    None => open = false,
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
            if self.pending.is_empty() && self.record.is_none() {
                if open {
                    continue;
                }
                return;
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
            Entry::Record(record) => self.record = Some(record),
        }
    }

    /// The events first, then the record, so that a reader who sees the job finished finds its last event.
    async fn flush(&mut self) -> Result<(), super::store::StoreError> {
        if !self.pending.is_empty() {
            let batch: Vec<StoredEvent> = self.pending.iter().cloned().collect();
            self.store.append(&self.job_id, &batch).await?;
            self.pending.clear();
            self.pending_bytes = 0;
        }
        if let Some(record) = &self.record {
            self.store.update(record).await?;
            self.record = None;
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
}
