//! Stream persistence (docs/persistence.md): the `ChunkSink`, one more reader of the job's event log, which batches events to
//! `POST {DB_BASE_URL}/sessions/{sessionId}/chunks` and retries until they are stored or the drain runs out of time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use tokio::task::JoinHandle;

use crate::{
    event::EventKind,
    event_log::{EventLog, Frame, Reader},
    outbound::{self, Backoff, Verdict},
    secret::Secret,
};

/// docs/persistence.md: a batch holds at most this many events…
pub const MAX_BATCH_EVENTS: usize = 100;
/// …and waits at most this long for more after its first event.
pub const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// A soft byte cap so that a few multi-MiB events do not make one huge request; one event always fits.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Where a job's chunks go.
#[derive(Clone, Debug)]
pub struct Destination {
    pub url: String,
    pub token: Secret,
}

impl Destination {
    /// `session_id` was validated as a safe path segment, so it needs no escaping.
    pub fn new(base_url: &str, session_id: &str, token: Secret) -> Self {
        Destination {
            url: format!("{}/sessions/{session_id}/chunks", base_url.trim_end_matches('/')),
            token,
        }
    }
}

/// How the sink ended, as far as the job's drain is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum SinkEnd {
    /// Every event of the log, terminal included, was accepted.
    Complete,
    /// The server refused a batch for good; persistence stopped for this job.
    Refused,
}

pub struct ChunkSink {
    log: Arc<EventLog>,
    acked: Arc<AtomicU64>,
    task: JoinHandle<SinkEnd>,
}

impl ChunkSink {
    /// Starts reading the log from event 0. Call it before the job appends anything that could be evicted.
    pub fn start(client: reqwest::Client, destination: Destination, log: Arc<EventLog>) -> Self {
        let acked = Arc::new(AtomicU64::new(0));
        let worker = SinkTask {
            client,
            destination,
            log: log.clone(),
            acked: acked.clone(),
        };
        ChunkSink {
            log,
            acked,
            task: tokio::spawn(worker.run()),
        }
    }

    /// Events accepted by the server so far.
    pub fn delivered(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// The drain: waits until every event is stored or `timeout` passes, then reports and returns the number of
    /// events (chunks) that were not delivered. Never fails: the job already ended, the worker must exit anyway.
    pub async fn finish(mut self, timeout: Duration) -> u64 {
        let job_id = self.log.job_id().to_string();
        let end = match tokio::time::timeout(timeout, &mut self.task).await {
            Ok(Ok(end)) => Some(end),
            Ok(Err(join)) => {
                tracing::error!(job_id, error = %join, "persistence task failed");
                None
            }
            Err(_) => {
                self.task.abort();
                None
            }
        };
        let total = self.log.last_seq().map_or(0, |s| s + 1);
        let undelivered = total.saturating_sub(self.delivered());
        match end {
            Some(SinkEnd::Complete) => tracing::info!(job_id, chunks = total, undelivered, "persistence flushed"),
            _ => tracing::warn!(
                job_id,
                chunks = total,
                undelivered,
                flush_timeout_seconds = timeout.as_secs_f64(),
                "persistence ended with {undelivered} of {total} chunks not delivered"
            ),
        }
        undelivered
    }
}

/// Why a batch will never be stored.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("the persistence API answered {0}")]
    Refused(reqwest::StatusCode),
    #[error("the request could not be built ({0})")]
    Unbuildable(String),
}

struct SinkTask {
    client: reqwest::Client,
    destination: Destination,
    log: Arc<EventLog>,
    acked: Arc<AtomicU64>,
}

impl SinkTask {
    async fn run(self) -> SinkEnd {
        let mut reader = match self.log.reader(0) {
            Ok(reader) => reader,
            Err(evicted) => self.skip_evicted(evicted.first_available, 0),
        };
        loop {
            let batch = match next_batch(&mut reader).await {
                Ok(batch) => batch,
                Err(evicted) => {
                    reader = self.skip_evicted(evicted.first_available, reader.position());
                    continue;
                }
            };
            if batch.is_empty() {
                return SinkEnd::Complete;
            }
            // Built once: every retry of this batch sends byte-identical content, so a batch the server stored
            // before the connection broke can be sent again without ever contradicting what it holds.
            let body = encode_batch(self.log.job_id(), &batch);
            if let Err(stop) = self.deliver(body).await {
                let first = batch.first().map_or(0, |f| f.seq);
                tracing::warn!(
                    job_id = self.log.job_id(),
                    reason = %stop,
                    first_seq = first,
                    "persistence stops for this job"
                );
                self.log.append(EventKind::warn(format!(
                    "persistence stopped: {stop}; events from seq {first} on are not stored"
                )));
                return SinkEnd::Refused;
            }
            self.acked.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }

    /// The log only evicts when the sink fell more than `EVENT_LOG_MAX_BYTES` behind (the server was down that
    /// long); holding everything instead would trade the memory bound for a job that can outlive any outage.
    fn skip_evicted(&self, mut first_available: u64, from: u64) -> Reader {
        loop {
            tracing::warn!(
                job_id = self.log.job_id(),
                lost = first_available.saturating_sub(from),
                "events were evicted from memory before persistence could store them"
            );
            match self.log.reader(first_available) {
                Ok(reader) => return reader,
                Err(e) => first_available = e.first_available,
            }
        }
    }

    /// Retries until the server accepts or refuses for good; the drain's timeout is what stops a dead server.
    async fn deliver(&self, body: Bytes) -> Result<(), Stop> {
        let mut backoff = Backoff::default();
        loop {
            let sent = self
                .client
                .post(&self.destination.url)
                .header(AUTHORIZATION, format!("Bearer {}", self.destination.token.expose()))
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let wait = match sent {
                Ok(resp) => match outbound::classify(resp.status(), resp.headers()) {
                    Verdict::Delivered => return Ok(()),
                    Verdict::Refused(status) => return Err(Stop::Refused(status)),
                    Verdict::Retry(after) => {
                        tracing::debug!(status = resp.status().as_u16(), "persistence answered; retrying");
                        after
                    }
                },
                Err(e) if outbound::transient(&e) => {
                    tracing::debug!(error = %e.without_url(), "persistence request failed; retrying");
                    None
                }
                Err(e) => return Err(Stop::Unbuildable(e.without_url().to_string())),
            };
            tokio::time::sleep(backoff.delay(wait)).await;
        }
    }
}

/// Up to `MAX_BATCH_EVENTS` events: whatever is there, plus what arrives within `BATCH_WINDOW` of the first one.
/// The terminal event goes out at once. An empty batch means the log is closed and fully read.
async fn next_batch(reader: &mut Reader) -> Result<Vec<Frame>, crate::event_log::Evicted> {
    let mut batch = reader.next_frames(MAX_BATCH_EVENTS, MAX_BATCH_BYTES).await?;
    let window = tokio::time::sleep(BATCH_WINDOW);
    tokio::pin!(window);
    let mut bytes: usize = batch.iter().map(|f| f.json().len()).sum();
    while batch.len() < MAX_BATCH_EVENTS && bytes < MAX_BATCH_BYTES && !batch.last().is_none_or(|f| f.terminal) {
        tokio::select! {
            more = reader.next_frames(MAX_BATCH_EVENTS - batch.len(), MAX_BATCH_BYTES - bytes) => match more {
                Ok(more) if !more.is_empty() => {
                    bytes += more.iter().map(|f| f.json().len()).sum::<usize>();
                    batch.extend(more);
                }
                // Closed, or the next events were evicted: send what we have; the next call reports the gap.
                _ => break,
            },
            _ = &mut window => break,
        }
    }
    Ok(batch)
}

/// `{"jobId":…,"chunks":[{"seq":…,"type":…,"ts":…,"data":{…}}]}`, where `data` is the event exactly as the SSE
/// stream carried it (already redacted by the log).
pub fn encode_batch(job_id: &str, frames: &[Frame]) -> Bytes {
    let json: Vec<Bytes> = frames.iter().map(Frame::json).collect();
    let mut out = Vec::with_capacity(json.iter().map(|j| j.len() + 96).sum::<usize>() + 64);
    out.extend_from_slice(b"{\"jobId\":");
    out.extend_from_slice(quote(job_id).as_bytes());
    out.extend_from_slice(b",\"chunks\":[");
    for (i, (frame, data)) in frames.iter().zip(&json).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"seq\":{},\"type\":\"{}\",\"ts\":", frame.seq, frame.kind_name).as_bytes());
        out.extend_from_slice(quote(&timestamp_of(data)).as_bytes());
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(data);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The envelope is written in a fixed order (`type`, `seq`, `jobId`, `ts`), so `ts` is found without parsing a
/// possibly multi-MiB event; anything unexpected falls back to a full parse.
fn timestamp_of(data: &[u8]) -> String {
    const KEY: &[u8] = b",\"ts\":\"";
    let head = &data[..data.len().min(512)];
    if let Some(at) = memchr::memmem::find(head, KEY) {
        let rest = &head[at + KEY.len()..];
        if let Some(end) = memchr::memchr(b'"', rest)
            && let Ok(ts) = std::str::from_utf8(&rest[..end])
        {
            return ts.to_string();
        }
    }
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["ts"].as_str().map(String::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{ErrorCode, Failure},
        secret::Redactor,
    };

    #[tokio::test]
    async fn a_batch_encodes_each_event_as_a_chunk_with_the_stream_json_as_data() {
        let log = EventLog::new("job-1", Redactor::new(["db-token-canary"]), 1 << 20);
        log.append(EventKind::info("hello \"db-token-canary\""));
        log.append(Failure::new(ErrorCode::Cancelled, "x").into());
        let frames = log.reader(0).unwrap().next_frames(10, usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&encode_batch("job-1", &frames)).unwrap();
        assert_eq!(body["jobId"], "job-1");
        let chunks = body["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 2);
        for (i, chunk) in chunks.iter().enumerate() {
            let data: serde_json::Value = serde_json::from_slice(&frames[i].json()).unwrap();
            assert_eq!(chunk["seq"], i as u64);
            assert_eq!(chunk["type"], data["type"]);
            assert_eq!(chunk["ts"], data["ts"]);
            assert!(chunk["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
            assert_eq!(chunk["data"], data);
        }
        assert_eq!(chunks[1]["type"], "error");
        assert!(!body.to_string().contains("db-token-canary"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_the_window_but_not_for_the_terminal_event() {
        let log = EventLog::new("job", Redactor::default(), 1 << 20);
        let mut reader = log.reader(0).unwrap();
        log.append(EventKind::info("one"));
        let started = tokio::time::Instant::now();
        let batch = next_batch(&mut reader).await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(started.elapsed(), BATCH_WINDOW);

        for i in 0..250 {
            log.append(EventKind::info(format!("{i}")));
        }
        assert_eq!(next_batch(&mut reader).await.unwrap().len(), MAX_BATCH_EVENTS);
        assert_eq!(next_batch(&mut reader).await.unwrap().len(), MAX_BATCH_EVENTS);

        log.append(Failure::new(ErrorCode::Cancelled, "x").into());
        let started = tokio::time::Instant::now();
        let last = next_batch(&mut reader).await.unwrap();
        assert_eq!(last.len(), 51);
        assert!(last.last().unwrap().terminal);
        assert_eq!(started.elapsed(), Duration::ZERO, "the terminal event is not held back");
        assert!(next_batch(&mut reader).await.unwrap().is_empty());
    }
}
