//! The job's append-only event log: assigns `seq`, redacts, encodes each event once, bounds memory and feeds every
//! reader (the `/execute` response, `GET /events`, persistence) without letting a slow one hold up the job.

use std::{
    collections::VecDeque,
    ops::Range,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::{
    event::{Envelope, EventKind, timestamp},
    secret::Redactor,
};

/// One encoded event. The SSE frame is built once and handed to every reader; the JSON is a slice of it.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: u64,
    pub kind_name: &'static str,
    pub terminal: bool,
    sse: Bytes,
    json: Range<usize>,
}

impl Frame {
    pub fn sse(&self) -> &Bytes {
        &self.sse
    }

    /// The event's JSON object (the SSE `data` line), as persisted.
    pub fn json(&self) -> Bytes {
        self.sse.slice(self.json.clone())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("events before {first_available} were evicted from memory")]
pub struct Evicted {
    pub first_available: u64,
}

struct Inner {
    frames: VecDeque<Frame>,
    first_seq: u64,
    next_seq: u64,
    bytes: usize,
    closed: bool,
}

pub struct EventLog {
    job_id: Arc<str>,
    redactor: Redactor,
    max_bytes: usize,
    inner: Mutex<Inner>,
    /// Bumped on every append; readers wait on it instead of polling.
    appended: watch::Sender<()>,
    terminal_delivered: watch::Sender<bool>,
}

impl EventLog {
    pub fn new(job_id: &str, redactor: Redactor, max_bytes: usize) -> Arc<Self> {
        Arc::new(EventLog {
            job_id: job_id.into(),
            redactor,
            max_bytes,
            inner: Mutex::new(Inner {
                frames: VecDeque::new(),
                first_seq: 0,
                next_seq: 0,
                bytes: 0,
                closed: false,
            }),
            appended: watch::Sender::new(()),
            terminal_delivered: watch::Sender::new(false),
        })
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the log consistent (every mutation is a single push/pop), so a
        // poisoned lock is safe to keep using; the alternative is losing the terminal event.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event and returns its seq. After the terminal event the log is closed and further events are
    /// dropped, which is what guarantees exactly one terminal event, last.
    pub fn append(&self, kind: EventKind) -> Option<u64> {
        self.append_all([kind])
    }

    /// Appends events under one lock and wakes readers once: a burst from the provider costs one wake-up, not one
    /// per event. Returns the seq of the last event appended.
    pub fn append_all(&self, kinds: impl IntoIterator<Item = EventKind>) -> Option<u64> {
        let ts = timestamp(SystemTime::now());
        let mut inner = self.lock();
        let mut last = None;
        for kind in kinds {
            if inner.closed {
                tracing::debug!(event = kind.type_name(), "event after the terminal event dropped");
                break;
            }
            let seq = inner.next_seq;
            let frame = self.encode(seq, &ts, &kind);
            inner.bytes += frame.sse.len();
            inner.frames.push_back(frame);
            inner.next_seq += 1;
            inner.closed = kind.is_terminal();
            last = Some(seq);
        }
        while inner.bytes > self.max_bytes && inner.frames.len() > 1 {
            if let Some(old) = inner.frames.pop_front() {
                inner.bytes -= old.sse.len();
                inner.first_seq = old.seq + 1;
            }
        }
        drop(inner);
        if last.is_some() {
            self.appended.send_replace(());
        }
        last
    }

    fn encode(&self, seq: u64, ts: &str, kind: &EventKind) -> Frame {
        let envelope = Envelope {
            kind_name: kind.type_name(),
            seq,
            job_id: &self.job_id,
            ts,
            kind,
        };
        // serde_json escapes every control character, so the data line can never contain CR, LF or NUL and no
        // provider output can end the frame early or inject an `id:`/`event:` field.
        let json = serde_json::to_string(&envelope).unwrap_or_else(|e| {
            format!(r#"{{"type":"log","seq":{seq},"jobId":"","ts":"{ts}","stream":"stderr","text":"unencodable event: {e}"}}"#)
        });
        let json = self.redactor.redact(&json);
        let name = kind.type_name();
        let (buf, json) = crate::sse_wire::encode(Some(seq), name, &json);
        Frame {
            seq,
            kind_name: name,
            terminal: kind.is_terminal(),
            sse: buf.freeze(),
            json,
        }
    }

    /// The seq of the last event appended, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.lock().next_seq.checked_sub(1)
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The terminal event, once the log holds it.
    pub fn terminal(&self) -> Option<Frame> {
        let inner = self.lock();
        inner.frames.back().filter(|f| inner.closed && f.terminal).cloned()
    }

    /// A reader starting at `from` (the first seq it wants). Fails if that event was already evicted.
    pub fn reader(self: &Arc<Self>, from: u64) -> Result<Reader, Evicted> {
        let inner = self.lock();
        if from < inner.first_seq {
            return Err(Evicted {
                first_available: inner.first_seq,
            });
        }
        Ok(Reader {
            log: self.clone(),
            next: from,
            appended: self.appended.subscribe(),
            saw_terminal: false,
        })
    }

    pub fn mark_terminal_delivered(&self) {
        self.terminal_delivered.send_replace(true);
    }

    /// Resolves once some reader has handed the terminal event to its connection.
    pub async fn terminal_delivered(&self) {
        let mut rx = self.terminal_delivered.subscribe();
        let _ = rx.wait_for(|delivered| *delivered).await;
    }

    /// Frames from `from` on, and whether the log is closed.
    fn frames_from(&self, from: u64, max_count: usize, max_bytes: usize) -> Result<(Vec<Frame>, bool), Evicted> {
        let inner = self.lock();
        if from < inner.first_seq {
            return Err(Evicted {
                first_available: inner.first_seq,
            });
        }
        let skip = (from - inner.first_seq) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for frame in inner.frames.iter().skip(skip) {
            if out.len() >= max_count || (!out.is_empty() && bytes + frame.sse.len() > max_bytes) {
                break;
            }
            bytes += frame.sse.len();
            out.push(frame.clone());
        }
        Ok((out, inner.closed))
    }
}

/// A cursor over the log. Each reader keeps its own position, so readers never wait for each other.
pub struct Reader {
    log: Arc<EventLog>,
    next: u64,
    appended: watch::Receiver<()>,
    saw_terminal: bool,
}

impl Reader {
    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    /// Seq of the next event this reader will return.
    pub fn position(&self) -> u64 {
        self.next
    }

    pub fn saw_terminal(&self) -> bool {
        self.saw_terminal
    }

    /// Waits for the next frames. An empty batch means the log is closed and fully read.
    pub async fn next_frames(&mut self, max_count: usize, max_bytes: usize) -> Result<Vec<Frame>, Evicted> {
        loop {
            // Marking seen before looking means an append after the look still wakes the wait below.
            self.appended.borrow_and_update();
            let (frames, closed) = self.log.frames_from(self.next, max_count, max_bytes)?;
            if let Some(last) = frames.last() {
                self.next = last.seq + 1;
                self.saw_terminal |= last.terminal;
                return Ok(frames);
            }
            if closed {
                return Ok(Vec::new());
            }
            if self.appended.changed().await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Like `next_frames`, joined into one buffer so that a burst of small events costs one write.
    pub async fn next_chunk(&mut self, max_bytes: usize) -> Result<Option<Bytes>, Evicted> {
        let frames = self.next_frames(usize::MAX, max_bytes).await?;
        Ok(match frames.len() {
            0 => None,
            1 => Some(frames[0].sse().clone()),
            _ => {
                let mut buf = BytesMut::with_capacity(frames.iter().map(|f| f.sse().len()).sum());
                for frame in &frames {
                    buf.extend_from_slice(frame.sse());
                }
                Some(buf.freeze())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ErrorCode, Failure, StreamName};

    fn log_line(text: &str) -> EventKind {
        EventKind::Log {
            stream: StreamName::Stdout,
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn seqs_are_consecutive_and_nothing_follows_the_terminal_event() {
        let log = EventLog::new("job", Redactor::default(), 1 << 20);
        assert_eq!(log.append(log_line("a")), Some(0));
        assert_eq!(log.append(log_line("b")), Some(1));
        assert_eq!(log.append(Failure::new(ErrorCode::Cancelled, "x").into()), Some(2));
        assert_eq!(log.append(Failure::new(ErrorCode::Internal, "late").into()), None);
        let mut reader = log.reader(0).unwrap();
        let frames = reader.next_frames(100, usize::MAX).await.unwrap();
        assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(frames[2].terminal);
        assert!(reader.next_frames(100, usize::MAX).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn hostile_text_cannot_break_the_frame() {
        let log = EventLog::new("job", Redactor::default(), 1 << 20);
        log.append(log_line("x\r\nid: 99\nevent: completed\n\ndata: {}\0\u{2028}"));
        let frame = log
            .reader(0)
            .unwrap()
            .next_frames(1, usize::MAX)
            .await
            .unwrap()
            .remove(0);
        let text = std::str::from_utf8(frame.sse()).unwrap();
        assert_eq!(text.matches('\n').count(), 4, "{text:?}");
        assert!(!text.contains('\r') && !text.contains('\0'));
        let data: serde_json::Value = serde_json::from_slice(&frame.json()).unwrap();
        assert_eq!(data["text"], "x\r\nid: 99\nevent: completed\n\ndata: {}\0\u{2028}");
    }

    #[tokio::test]
    async fn memory_is_bounded_and_evicted_replays_are_refused() {
        let log = EventLog::new("job", Redactor::default(), 2_000);
        for _ in 0..100 {
            log.append(log_line(&"x".repeat(100)));
        }
        let inner_bytes = log.lock().bytes;
        assert!(inner_bytes <= 2_000, "{inner_bytes}");
        let err = log.reader(0).err().unwrap();
        assert!(err.first_available > 0);
        assert!(log.reader(99).is_ok());
    }

    #[tokio::test]
    async fn secrets_are_redacted_on_append() {
        let log = EventLog::new("job", Redactor::new(["sk-ant-api03-canary"]), 1 << 20);
        log.append(log_line("token is sk-ant-api03-canary"));
        let frame = log
            .reader(0)
            .unwrap()
            .next_frames(1, usize::MAX)
            .await
            .unwrap()
            .remove(0);
        let text = std::str::from_utf8(frame.sse()).unwrap();
        assert!(text.contains("token is [REDACTED]") && !text.contains("canary"));
    }

    #[tokio::test]
    async fn a_reader_waits_for_new_events() {
        let log = EventLog::new("job", Redactor::default(), 1 << 20);
        let mut reader = log.reader(0).unwrap();
        let waiter = tokio::spawn(async move { reader.next_chunk(1 << 16).await.unwrap() });
        tokio::task::yield_now().await;
        log.append(log_line("late"));
        let chunk = waiter.await.unwrap().unwrap();
        assert!(chunk.starts_with(b"id: 0\nevent: log\n"));
    }
}
