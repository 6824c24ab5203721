//! `bench/run.sh acp`: what `unified-worker acp` adds between a job's stream and the editor. One stamped job (the
//! fake CLI writes CLOCK_MONOTONIC into every line) is read at the same time straight from the worker's SSE stream
//! (`GET /jobs/{id}/events`) and through the bridge as `session/update` lines on its stdout; each line's arrival
//! through the bridge minus its arrival over SSE is what the bridge adds to it. Also the bridge's resident memory
//! when it idles with one session open.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use std::collections::HashMap;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{
    Row, median,
    proc_stats::rss_kib,
    runs, sse_client,
    worker::{Worker, bin_path},
};

const JOB: &str = "lines=10000 rate=5000 stamp=1";

/// The bridge under a minimal editor: raw JSON-RPC lines on its stdin, its stdout read on a thread of its own so
/// that each line is stamped the moment it is read.
struct Bridge {
    child: Child,
    lines: mpsc::Receiver<(u64, String)>,
}

impl Bridge {
    fn start(port: u16) -> Bridge {
        let mut child = Command::new(bin_path("unified-worker"))
            .args([
                "acp",
                "--url",
                &format!("http://127.0.0.1:{port}"),
                "--provider",
                "claude-code",
            ])
            .args(["--approvals", "false"])
            .env_remove("UNIFIED_WORKER_URL")
            .env_remove("WORKER_API_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start unified-worker acp");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((sse_client::monotonic_ns(), line)).is_err() {
                    return;
                }
            }
        });
        Bridge { child, lines }
    }

    fn send(&mut self, id: u64, method: &str, params: Value) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{message}")
            .and_then(|()| stdin.flush())
            .expect("write to the bridge");
    }

    /// Reads until the answer to `id`, noting when each stamped update arrived.
    fn until_answer(&self, id: u64, arrivals: &mut HashMap<u64, u64>) -> Value {
        loop {
            let (read_at, line) = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .expect("the bridge went quiet");
            if let Some(stamp) = sse_client::stamp(line.as_bytes()) {
                arrivals.entry(stamp).or_insert(read_at);
            }
            let message: Value = serde_json::from_str(&line).unwrap_or_default();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "the bridge answered {message}");
                return message["result"].clone();
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // End of input is the editor going away: the bridge closes the job and exits by itself.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted.get(sorted.len() * p / 100).copied().unwrap_or(f64::NAN)
}

/// When each stamped event of job `job_id` arrived over SSE, read from its first event to its last.
async fn sse_arrivals(port: u16, job_id: String) -> HashMap<u64, u64> {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let url = format!("http://127.0.0.1:{port}/jobs/{job_id}/events");
    // The job starts when the bridge sends its first prompt; its events are replayed from the first one.
    let resp = loop {
        match client.get(&url).send().await {
            Ok(resp) if resp.status() == 200 => break resp,
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    };
    let mut body = resp.bytes_stream();
    let (mut arrivals, mut pending) = (HashMap::new(), Vec::new());
    while let Some(Ok(chunk)) = body.next().await {
        let now = sse_client::monotonic_ns();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.starts_with(b"data: ") {
                if let Some(stamp) = sse_client::stamp(&line) {
                    arrivals.entry(stamp).or_insert(now);
                }
                if line.windows(20).any(|w| w == b"\"type\":\"completed\"") {
                    return arrivals;
                }
            }
        }
    }
    arrivals
}

pub async fn acp(rows: &mut Vec<Row>) {
    let (mut added_p50, mut added_p99, mut direct_p50, mut direct_p99, mut idle) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs() {
        let worker = Worker::spawn().await;
        let port = worker.port;
        let mut bridge = Bridge::start(port);
        let mut ignored = HashMap::new();
        bridge.send(1, "initialize", json!({"protocolVersion": 1, "clientCapabilities": {}}));
        bridge.until_answer(1, &mut ignored);
        bridge.send(2, "session/new", json!({"cwd": "/tmp", "mcpServers": []}));
        let session = bridge.until_answer(2, &mut ignored)["sessionId"].clone();
        // Idle with a session open, after start-up's allocations settled.
        tokio::time::sleep(Duration::from_millis(300)).await;
        idle.push(rss_kib(bridge.pid(), "VmRSS") as f64 / 1024.0);

        let direct = tokio::spawn(sse_arrivals(port, session.as_str().unwrap_or_default().to_string()));
        let through_bridge = tokio::task::spawn_blocking(move || {
            let mut arrivals = HashMap::new();
            let prompt = json!({"sessionId": session, "prompt": [{"type": "text", "text": JOB}]});
            bridge.send(3, "session/prompt", prompt);
            bridge.until_answer(3, &mut arrivals);
            drop(bridge);
            arrivals
        });
        let bridged = through_bridge.await.expect("the bridge's reader");
        // The bridge closed the job when it ended, so the SSE stream ends too.
        let direct = direct.await.expect("the SSE reader");
        let (mut added, mut delays) = (Vec::new(), Vec::new());
        for (stamp, over_sse) in &direct {
            delays.push(over_sse.saturating_sub(*stamp) as f64 / 1000.0);
            if let Some(via_bridge) = bridged.get(stamp) {
                added.push((*via_bridge as f64 - *over_sse as f64) / 1000.0);
            }
        }
        assert!(
            added.len() > 1000,
            "few stamped updates arrived both ways: {}",
            added.len()
        );
        added.sort_by(|a, b| a.total_cmp(b));
        delays.sort_by(|a, b| a.total_cmp(b));
        added_p50.push(percentile(&added, 50));
        added_p99.push(percentile(&added, 99));
        direct_p50.push(percentile(&delays, 50));
        direct_p99.push(percentile(&delays, 99));
        drop(worker);
    }
    let ms = |v: Vec<f64>| format!("{:.3}", median(v) / 1000.0);
    rows.push(Row {
        name: "acp: added per update p50 (ms, 5,000 updates/s)",
        value: ms(added_p50),
        target: "",
    });
    rows.push(Row {
        name: "acp: added per update p99 (ms)",
        value: ms(added_p99),
        target: "",
    });
    rows.push(Row {
        name: "acp: the same events straight over SSE, delay p50 / p99 (ms)",
        value: format!("{} / {}", ms(direct_p50), ms(direct_p99)),
        target: "",
    });
    rows.push(Row {
        name: "acp: bridge idle RSS, one session open (MiB)",
        value: format!("{:.1}", median(idle)),
        target: "",
    });
}
