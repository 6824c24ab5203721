//! A strict SSE client for tests: parses frames as a browser would and keeps the raw bytes for framing checks.

use futures_util::StreamExt;
use serde_json::Value;

use super::PATIENCE;

#[derive(Clone, Debug)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Value,
    /// Every field line of the frame, to prove nothing was injected.
    pub fields: Vec<String>,
}

impl SseEvent {
    pub fn kind(&self) -> &str {
        self.data["type"].as_str().unwrap_or_default()
    }

    pub fn seq(&self) -> u64 {
        self.data["seq"].as_u64().expect("seq")
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.kind(), "completed" | "error")
    }
}

#[derive(Debug)]
enum Frame {
    Event(SseEvent),
    Comment(String),
}

pub struct SseStream {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: Vec<u8>,
    pub raw: Vec<u8>,
    pub comments: usize,
}

impl SseStream {
    pub fn new(resp: reqwest::Response) -> Self {
        SseStream {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
            raw: Vec::new(),
            comments: 0,
        }
    }

    /// The next event, or None when the server ends the stream. Comments are counted and skipped.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            match self.next_frame().await? {
                Frame::Event(ev) => return Some(ev),
                Frame::Comment(_) => self.comments += 1,
            }
        }
    }

    /// Reads until a comment line (such as a keep-alive) arrives; panics if an event comes first.
    pub async fn next_comment(&mut self) -> String {
        match self.next_frame().await {
            Some(Frame::Comment(text)) => text,
            other => panic!("expected a comment, got {other:?}"),
        }
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = find_frame_end(&self.buf) {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(frame).expect("SSE frames are UTF-8");
                let lines: Vec<String> = text.trim_end_matches('\n').split('\n').map(String::from).collect();
                if lines.iter().all(|l| l.starts_with(':')) {
                    return Some(Frame::Comment(lines.join("\n")));
                }
                let field = |name: &str| {
                    lines
                        .iter()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(String::from))
                };
                let data = field("data").expect("data line");
                return Some(Frame::Event(SseEvent {
                    id: field("id"),
                    event: field("event"),
                    data: serde_json::from_str(&data).expect("data is JSON"),
                    fields: lines,
                }));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("stream stalled");
            match chunk {
                Some(Ok(bytes)) => {
                    assert!(!bytes.contains(&b'\r'), "SSE output must not contain CR");
                    self.raw.extend_from_slice(&bytes);
                    self.buf.extend_from_slice(&bytes);
                }
                Some(Err(_)) | None => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended mid-frame: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return None;
                }
            }
        }
    }

    /// Reads until an event of this type arrives and returns everything read, that event included.
    pub async fn until(&mut self, kind: &str) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        while let Some(ev) = self.next_event().await {
            let done = ev.kind() == kind;
            seen.push(ev);
            if done {
                return seen;
            }
        }
        panic!(
            "stream ended before a {kind} event; got {:?}",
            seen.iter().map(|e| e.kind().to_string()).collect::<Vec<_>>()
        );
    }

    /// Reads to the end of the stream.
    pub async fn collect(&mut self) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        while let Some(ev) = self.next_event().await {
            seen.push(ev);
        }
        seen
    }
}

fn find_frame_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

/// Asserts the invariants of a complete job stream: ids = seq from `first`, consecutive, exactly one terminal, last.
pub fn assert_well_formed(events: &[SseEvent], first: u64) {
    for (i, ev) in events.iter().enumerate() {
        let seq = first + i as u64;
        assert_eq!(ev.seq(), seq, "seq gap at {i}: {:?}", ev.data);
        assert_eq!(ev.id.as_deref(), Some(seq.to_string().as_str()));
        assert_eq!(ev.event.as_deref(), Some(ev.kind()));
        assert_eq!(ev.fields.len(), 3, "unexpected fields {:?}", ev.fields);
    }
    let terminals = events.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "expected exactly one terminal event: {:?}", kinds(events));
    assert!(
        events.last().is_some_and(SseEvent::is_terminal),
        "the terminal event must be last"
    );
}

pub fn kinds(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(SseEvent::kind).collect()
}

/// What a job that writes one file tells, without the incidental `log` and `message` events.
pub const WRITE_FILE_STORY: [&str; 7] = [
    "connected",
    "session",
    "assistant_message",
    "tool_use",
    "tool_result",
    "assistant_message",
    "completed",
];

pub fn assert_write_file_story(events: &[SseEvent]) {
    let story: Vec<&str> = kinds(events)
        .into_iter()
        .filter(|k| !matches!(*k, "log" | "message"))
        .collect();
    assert_eq!(
        story,
        WRITE_FILE_STORY,
        "{:#?}",
        events.iter().map(|e| &e.data).collect::<Vec<_>>()
    );
}
