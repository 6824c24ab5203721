//! The client side of the fleet tests: jobs sent to 127.0.0.1 only, their SSE streams read event by event, and the
//! client docs/deployment.md asks for (429 → wait `Retry-After` → retry on a new connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use super::support::PATIENCE;

/// No pooling: every request is a new connection, so the routing mesh picks a replica afresh each time.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

pub fn job(prompt: &str) -> Value {
    serde_json::json!({ "userRequest": prompt, "codingAssistantProvider": "claude-code" })
}

pub struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// Keep-alives arrive every few seconds, so the bound is on the whole stream, not on each chunk.
    deadline: tokio::time::Instant,
}

/// One event as it was sent: its `id:` (a `queued` event has none), its name and its data.
pub struct Frame {
    pub id: Option<u64>,
    pub name: String,
    pub data: Value,
}

impl Sse {
    pub fn new(response: reqwest::Response) -> Sse {
        Sse {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            deadline: tokio::time::Instant::now() + PATIENCE,
        }
    }

    /// The next event as (name, data), or `None` when the stream ended.
    pub async fn next_event(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Some((frame.name, frame.data));
            }
            let chunk = tokio::time::timeout_at(self.deadline, self.body.next())
                .await
                .expect("the stream stalled")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk.ok()?));
        }
    }

    /// The next event, or `None` when the stream ended, broke, or sent nothing at all (not even a keep-alive) for
    /// `silence` or until `until`: for clients that reconnect instead of failing.
    pub async fn next_frame(&mut self, silence: Duration, until: tokio::time::Instant) -> Option<Frame> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            let quiet = (tokio::time::Instant::now() + silence).min(until);
            let chunk = tokio::time::timeout_at(quiet, self.body.next()).await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk.ok()?));
        }
    }

    /// The first whole event in the buffer, skipping keep-alive comments.
    fn take_frame(&mut self) -> Option<Frame> {
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut frame = Frame {
                id: None,
                name: String::new(),
                data: Value::Null,
            };
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    frame.id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    frame.name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !frame.name.is_empty() {
                frame.data = serde_json::from_str(&data).unwrap_or(Value::Null);
                return Some(frame);
            }
        }
        None
    }

    /// Reads up to the terminal event (`completed` or `error`) and returns it.
    pub async fn terminal(&mut self) -> (String, Value) {
        while let Some((name, data)) = self.next_event().await {
            if name == "completed" || name == "error" {
                return (name, data);
            }
        }
        panic!("the stream ended without a terminal event");
    }
}

/// Waits until `url` answers 200 (a replica listening, a restart finished).
pub async fn wait_healthy(url: &str) {
    let client = client();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a gateway's `GET /fleet` satisfies `done` and returns it.
pub async fn wait_fleet(gateway: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_json(&format!("{gateway}/fleet"), done).await
}

/// Waits until `url` answers 200 with JSON that satisfies `done` and returns it.
pub async fn wait_json(url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let client = client();
    let deadline = Instant::now() + PATIENCE;
    let mut last = Value::Null;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            last = r.json().await.unwrap_or(Value::Null);
            if done(&last) {
                return last;
            }
        }
        assert!(Instant::now() < deadline, "{url} never got there; last: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The addresses of the workers in a `/fleet` answer, sorted, all of them or those in `state`.
pub fn fleet_workers(fleet: &Value, state: Option<&str>) -> Vec<String> {
    let workers = fleet["workers"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut addresses: Vec<String> = workers
        .iter()
        .filter(|w| state.is_none_or(|s| w["state"] == s))
        .filter_map(|w| w["address"].as_str().map(str::to_string))
        .collect();
    addresses.sort();
    addresses
}

/// What the retrying client saw on the way to a stream.
#[derive(Default, Debug)]
pub struct Attempts {
    pub busy: u32,
    pub refused: u32,
}

/// Where new connections go: the replicas' addresses in turn, as the routing mesh's round robin does.
pub struct Mesh {
    bases: Vec<String>,
    next: AtomicUsize,
}

impl Mesh {
    pub fn new(bases: Vec<String>) -> Mesh {
        Mesh {
            bases,
            next: AtomicUsize::new(0),
        }
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    pub fn pick(&self) -> &str {
        &self.bases[self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len()]
    }
}

/// Posts a job until a replica accepts it: a 429 waits `Retry-After` and retries on a new connection, as does a
/// connection that could not be made (a replica that just exited). Returns the open stream.
pub async fn execute_with_retry(mesh: &Mesh, body: &Value, attempts: &mut Attempts) -> Sse {
    let client = client();
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no replica accepted the job: {attempts:?}");
        match client.post(format!("{}/execute", mesh.pick())).json(body).send().await {
            Ok(r) if r.status() == 200 => return Sse::new(r),
            Ok(r) if r.status() == 429 => {
                attempts.busy += 1;
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<f64>().ok())
                    .expect("a 429 carries Retry-After");
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            Ok(r) => panic!(
                "unexpected answer {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(_) => {
                attempts.refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
