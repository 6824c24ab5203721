//! A real HTTP/1.1 server that stands in for the persistence API and for webhook receivers: it stores chunks by
//! `(jobId, seq)` the way a real persistence API deduplicates, records every request, verifies Standard Webhooks
//! signatures, and can be told to fail: answer 500, 429 with `Retry-After`, hang, or drop the connection.
//!
//! It is written on raw TCP rather than a framework because the faults are about the connection itself: a hang
//! must read the request and never answer, a drop must close the socket with the request half-processed.
//! It runs on its own thread and runtime, so a test that blocks its own runtime cannot stall it.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use super::PATIENCE;

/// What the server does with one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RetryAfter(u64),
    /// Reads the request and never answers.
    Hang,
    /// Reads the request and closes the connection without storing or answering.
    Drop,
    /// Stores the chunks, then closes the connection without answering: the sender cannot know it succeeded.
    StoreThenDrop,
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered, or None for a hang or a drop.
    pub status: Option<u16>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("recorded body is JSON")
    }

    pub fn is_chunks(&self) -> bool {
        self.path.ends_with("/chunks")
    }
}

#[derive(Default)]
pub struct State {
    /// One per request, in order; when empty, `always` (or success) applies.
    pub faults: VecDeque<Fault>,
    pub always: Option<Fault>,
    pub requests: Vec<Recorded>,
    /// Stored chunks, keyed like the real API's unique index.
    pub chunks: BTreeMap<(String, u64), Value>,
    /// Chunks that arrived again with identical content (deduplicated, fine).
    pub resends: usize,
    /// Chunks that arrived again with different content (must never happen).
    pub conflicts: Vec<(String, u64)>,
    /// When set, requests with a `webhook-signature` that does not verify get 401.
    pub webhook_secret: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Recorder {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(0),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("recorder runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
                addr_tx.send(listener.local_addr().expect("addr")).expect("report addr");
                let accept = async {
                    loop {
                        if let Ok((socket, _)) = listener.accept().await {
                            tokio::spawn(serve(socket, server.clone()));
                        }
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime here ends hung connections too.
        });
        Recorder {
            addr: addr_rx.recv().expect("recorder started"),
            shared,
            stop: Some(stop_tx),
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The stored seqs of one job, in order.
    pub fn stored_seqs(&self, job_id: &str) -> Vec<u64> {
        self.lock()
            .chunks
            .keys()
            .filter(|(job, _)| job == job_id)
            .map(|(_, seq)| *seq)
            .collect()
    }

    pub fn chunk(&self, job_id: &str, seq: u64) -> Option<Value> {
        self.lock().chunks.get(&(job_id.to_string(), seq)).cloned()
    }

    /// Waits until `done` holds, woken by each request the server sees (never by a timer).
    pub async fn wait_until(&self, done: impl Fn(&State) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        loop {
            if done(&self.lock()) {
                return;
            }
            tokio::time::timeout(PATIENCE, rx.changed())
                .await
                .expect("the recorder saw nothing new")
                .expect("recorder gone");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A receiver's check of a Standard Webhooks signature, written from the specification and independent of the
/// worker's code: HMAC-SHA256 over `{id}.{timestamp}.{body}` with the key a `whsec_` secret encodes.
pub fn signature_is_valid(secret: &str, recorded: &Recorded, body: &[u8]) -> bool {
    let (Some(id), Some(ts), Some(sigs)) = (
        recorded.header("webhook-id"),
        recorded.header("webhook-timestamp"),
        recorded.header("webhook-signature"),
    ) else {
        return false;
    };
    let key_bytes = match secret.strip_prefix("whsec_") {
        Some(b64) => BASE64.decode(b64).expect("whsec secret"),
        None => secret.as_bytes().to_vec(),
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    sigs.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b64| BASE64.decode(b64).ok())
            .is_some_and(|tag| ring::hmac::verify(&key, &signed, &tag).is_ok())
    })
}

async fn serve(mut socket: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let Some((path, headers, body)) = read_request(&mut socket, &mut buf).await else {
            return;
        };
        let mut recorded = Recorded {
            at: Instant::now(),
            path,
            headers,
            body,
            status: None,
        };
        let fault = {
            let mut state = shared.lock();
            state.faults.pop_front().or_else(|| state.always.clone())
        };
        let answer = decide(&shared, &mut recorded, fault);
        shared.lock().requests.push(recorded);
        shared.changed.send_modify(|n| *n += 1);
        match answer {
            Answer::Respond(status, extra) => {
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{extra}\r\n");
                if socket.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
            Answer::Hang => std::future::pending::<()>().await,
            Answer::Close => return,
        }
    }
}

enum Answer {
    Respond(u16, String),
    Hang,
    Close,
}

fn decide(shared: &Shared, recorded: &mut Recorded, fault: Option<Fault>) -> Answer {
    let answer = match fault {
        Some(Fault::Status(code)) => Answer::Respond(code, String::new()),
        Some(Fault::RetryAfter(secs)) => Answer::Respond(429, format!("retry-after: {secs}\r\n")),
        Some(Fault::Hang) => return Answer::Hang,
        Some(Fault::Drop) => return Answer::Close,
        Some(Fault::StoreThenDrop) => {
            store(&mut shared.lock(), recorded);
            return Answer::Close;
        }
        None => {
            let mut state = shared.lock();
            let verified = match &state.webhook_secret {
                Some(secret) if recorded.header("webhook-signature").is_some() || !recorded.is_chunks() => {
                    signature_is_valid(secret, recorded, &recorded.body)
                }
                _ => true,
            };
            if !verified {
                Answer::Respond(401, String::new())
            } else {
                if recorded.is_chunks() {
                    store(&mut state, recorded);
                }
                Answer::Respond(204, String::new())
            }
        }
    };
    if let Answer::Respond(status, _) = &answer {
        recorded.status = Some(*status);
    }
    answer
}

fn store(state: &mut State, recorded: &Recorded) {
    let body: Value = serde_json::from_slice(&recorded.body).expect("chunks body is JSON");
    let job = body["jobId"].as_str().expect("jobId").to_string();
    for chunk in body["chunks"].as_array().expect("chunks array") {
        let key = (job.clone(), chunk["seq"].as_u64().expect("seq"));
        match state.chunks.get(&key) {
            Some(existing) if existing == chunk => state.resends += 1,
            Some(_) => state.conflicts.push(key),
            None => {
                state.chunks.insert(key, chunk.clone());
            }
        }
    }
}

/// Reads one request (head and a Content-Length body); None when the peer closed the connection.
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < len {
        let mut chunk = [0u8; 64 * 1024];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Some((path, headers, body))
}
