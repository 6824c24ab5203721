//! Persistence benchmark: the events/s the `ChunkSink` sustains to a local recording server, and the latency the
//! SSE path shows with persistence on versus off (the real worker binary, a paced fake CLI, a local server).
//!
//! `cargo bench --bench sink` runs the full measurement; `cargo test` runs it at a tiny size as a smoke test.
//! The binary doubles as the fake CLI: the worker starts it as `CLAUDE_BIN` with `-p …` and the prompt on stdin.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use serde_json::{Value, json};
use unified_worker::{
    event::{EventKind, StreamName},
    event_log::EventLog,
    outbound,
    persistence::{ChunkSink, Destination},
    secret::{Redactor, Secret},
};

/// The recorder from the test suite: the same real HTTP server the persistence tests use.
#[path = "../tests/api/support/recorder.rs"]
#[allow(dead_code)]
mod recorder;

const PATIENCE: Duration = Duration::from_secs(120);

struct Size {
    sink_events: usize,
    sse_events: usize,
    interval: Duration,
    rounds: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version") {
        println!("sink-bench fake cli 1.0");
        return;
    }
    if args.iter().any(|a| a == "-p") {
        return fake_cli();
    }
    let size = if args.iter().any(|a| a == "--bench") {
        Size {
            sink_events: 200_000,
            sse_events: 5_000,
            interval: Duration::from_micros(500),
            rounds: 3,
        }
    } else {
        Size {
            sink_events: 2_000,
            sse_events: 200,
            interval: Duration::from_micros(200),
            rounds: 1,
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        sink_throughput(size.sink_events).await;
        println!(
            "SSE latency, CLI line printed -> SSE event parsed by the client ({} events, one every {:?}):",
            size.sse_events, size.interval
        );
        // Alternating rounds, so that noise from a shared machine shows up as spread instead of as a difference.
        for round in 1..=size.rounds {
            for persist in [false, true] {
                let latencies = sse_latency(size.sse_events, size.interval, persist).await;
                let label = if persist { "on " } else { "off" };
                report(&format!("round {round}, persistence {label}"), latencies);
            }
        }
    });
}

async fn sink_throughput(n: usize) {
    let server = recorder::Recorder::start();
    let log = EventLog::new("bench-job", Redactor::new(["bench-db-token"]), 1 << 30);
    let client = outbound::client(Duration::from_secs(10)).expect("client");
    let sink = ChunkSink::start(
        client,
        Destination::new(&server.base(), "bench", Secret::new("bench-db-token")),
        log.clone(),
    );
    let text = "x".repeat(160);
    let started = Instant::now();
    for i in 0..n {
        log.append(EventKind::AssistantMessage {
            text: format!("{i} {text}"),
        });
        if i % 1000 == 0 {
            // Appending is far faster than any provider; yielding lets the sink run as it would beside a real job.
            tokio::task::yield_now().await;
        }
    }
    log.append(EventKind::Log {
        stream: StreamName::Stdout,
        text: "end".into(),
    });
    log.append(unified_worker::event::Failure::new(unified_worker::event::ErrorCode::Cancelled, "end").into());
    let appended = started.elapsed();
    let undelivered = sink.finish(Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    let requests = server.lock().requests.len();
    assert_eq!(undelivered, 0);
    assert_eq!(server.stored_seqs("bench-job").len(), n + 2);
    println!(
        "sink: {} events (~200 B each) in {:.2}s = {:.0} events/s, {requests} requests (appending took {:.2}s)",
        n + 2,
        elapsed.as_secs_f64(),
        (n + 2) as f64 / elapsed.as_secs_f64(),
        appended.as_secs_f64()
    );
}

/// Latencies in microseconds from the fake CLI printing a line to the client parsing its SSE event.
async fn sse_latency(n: usize, interval: Duration, persist: bool) -> Vec<u64> {
    let server = recorder::Recorder::start();
    let workspace = tempfile::TempDir::new().expect("workspace");
    let me = std::env::current_exe().expect("current exe");
    let base = server.base();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unified-worker"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", workspace.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("WORKSPACE_DIR", workspace.path())
        .env("CLAUDE_BIN", &me)
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-bench-key")
        .env("LINGER_SECONDS", "0")
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if persist {
        cmd.env("DB_BASE_URL", &base);
    }
    let mut child = cmd.spawn().expect("start the worker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening"
            {
                let _ = tx.send(v["port"].as_u64().unwrap_or(0));
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(30)).expect("worker listening");
    let mut body = json!({
        "userRequest": format!("events={n} interval_us={}", interval.as_micros()),
        "codingAssistantProvider": "claude-code",
        "jobId": "bench-sse",
    });
    if persist {
        body["database"] = json!({"sessionId": "bench", "accessToken": "bench-db-token"});
    }
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("http://127.0.0.1:{port}/execute"))
        .json(&body)
        .send()
        .await
        .expect("execute");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut latencies = Vec::with_capacity(n);
    let mut done = false;
    while !done {
        let Some(chunk) = tokio::time::timeout(PATIENCE, stream.next()).await.expect("stalled") else {
            break;
        };
        buf.extend_from_slice(&chunk.expect("stream"));
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let now = unix_micros();
            let text = String::from_utf8_lossy(&frame);
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let event: Value = serde_json::from_str(data).expect("json");
            if let Some(sent) = event["text"].as_str().and_then(|t| t.strip_prefix("t=")) {
                latencies.push(now.saturating_sub(sent.parse().unwrap_or(now)));
            }
            done |= matches!(event["type"].as_str(), Some("completed" | "error"));
        }
    }
    let status = child.wait().expect("worker exit");
    assert!(status.success());
    if persist {
        assert_eq!(
            server.stored_seqs("bench-sse").len(),
            n + 3,
            "connected, session, {n} messages, completed"
        );
    }
    assert_eq!(latencies.len(), n);
    latencies
}

fn report(label: &str, mut micros: Vec<u64>) {
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!(
        "  {label}: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
        at(0.5),
        at(0.9),
        at(0.99),
        micros[micros.len() - 1]
    );
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The worker's view: a Claude Code CLI that prints `events` assistant lines, each stamped with the time it was
/// printed, one every `interval_us`, then its result.
fn fake_cli() {
    let mut prompt = String::new();
    let _ = std::io::stdin().read_to_string(&mut prompt);
    let param = |name: &str| -> u64 {
        prompt
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (events, interval) = (param("events"), Duration::from_micros(param("interval_us")));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        r#"{{"type":"system","subtype":"init","session_id":"bench-session"}}"#
    );
    let _ = out.flush();
    for _ in 0..events {
        let line =
            json!({"type":"assistant","message":{"content":[{"type":"text","text":format!("t={}", unix_micros())}]}});
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        std::thread::sleep(interval);
    }
    let _ = writeln!(
        out,
        r#"{{"type":"result","subtype":"success","is_error":false,"result":"done","num_turns":1,"duration_ms":1,"total_cost_usd":0,"session_id":"bench-session","usage":{{"input_tokens":1,"output_tokens":1}}}}"#
    );
}
