//! A lean SSE client: counts events and bytes, and reads the fake CLI's monotonic stamps to measure delay.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

#[derive(Default)]
pub struct Summary {
    pub events: u64,
    pub bytes: u64,
    pub delays_us: Vec<f64>,
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

async fn start(port: u16, settings: &str) -> reqwest::Response {
    let body = serde_json::json!({"userRequest": settings, "codingAssistantProvider": "claude-code"});
    let resp = client()
        .post(format!("http://127.0.0.1:{port}/execute"))
        .json(&body)
        .send()
        .await
        .expect("execute");
    assert_eq!(resp.status(), 200, "the job was not accepted");
    resp
}

/// Feeds bytes, returns completed lines; keeps the partial tail.
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|b| *b == b'\n') {
            each(&self.pending[start..start + pos]);
            start += pos + 1;
        }
        self.pending.drain(..start);
    }
}

pub fn stamp(line: &[u8]) -> Option<u64> {
    let at = line.windows(2).position(|w| w == b"t=")?;
    let digits: Vec<u8> = line[at + 2..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Runs one job to its end.
pub async fn run_job(port: u16, settings: &str) -> Summary {
    let mut body = start(port, settings).await.bytes_stream();
    let mut summary = Summary::default();
    let mut lines = Lines { pending: Vec::new() };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("stream");
        summary.bytes += chunk.len() as u64;
        let now = monotonic_ns();
        lines.feed(&chunk, |line| {
            if line.starts_with(b"id: ") {
                summary.events += 1;
            } else if line.starts_with(b"data: ")
                && let Some(t) = stamp(line)
            {
                summary.delays_us.push(now.saturating_sub(t) as f64 / 1000.0);
            }
        });
    }
    summary
}

/// Measures the job's event rate for `phase` alone, then for `phase` under a flood of requests that get 429.
/// Returns (quiet events/s, loaded events/s, 429s per second).
pub async fn run_busy_job(port: u16, settings: &str, phase: Duration) -> (f64, f64, f64) {
    let mut body = start(port, settings).await.bytes_stream();
    // Warm up, then a quiet phase.
    count_events(&mut body, Instant::now() + Duration::from_millis(500)).await;
    let quiet = count_events(&mut body, Instant::now() + phase).await as f64 / phase.as_secs_f64();

    let stop = Instant::now() + phase;
    let flood: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let body = serde_json::json!({"userRequest": "x", "codingAssistantProvider": "claude-code"});
                let mut refused = 0u64;
                while Instant::now() < stop {
                    // A fresh client each time: the worker closes 429 connections, as Swarm's mesh needs.
                    let resp = client()
                        .post(format!("http://127.0.0.1:{port}/execute"))
                        .json(&body)
                        .send()
                        .await;
                    if resp.is_ok_and(|r| r.status() == 429) {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let loaded = count_events(&mut body, stop).await as f64 / phase.as_secs_f64();
    let mut refused = 0;
    for task in flood {
        refused += task.await.unwrap_or(0);
    }
    (quiet, loaded, refused as f64 / phase.as_secs_f64())
}

async fn count_events<S>(body: &mut S, until: Instant) -> u64
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    let mut events = 0u64;
    while Instant::now() < until {
        match tokio::time::timeout(until.saturating_duration_since(Instant::now()), body.next()).await {
            Ok(Some(Ok(chunk))) => events += chunk.windows(4).filter(|w| w == b"id: ").count() as u64,
            _ => break,
        }
    }
    events
}
