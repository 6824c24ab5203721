//! `bench/run.sh`: measures the worker core side by side in one run and prints a table (issue: throughput, added
//! latency, big-output memory, start-up, the 429 path). Each figure is the median of several runs.

mod abuse;
mod acp;
mod broker;
mod compare;
mod gateway;
// The suite's git server and the HTTP reader it uses, shared with the integration tests rather than copied.
#[allow(dead_code)]
#[path = "../../tests/api/support/git_server.rs"]
mod git_server;
#[allow(dead_code)]
#[path = "../../tests/api/support/http.rs"]
mod http;
mod proc_stats;
mod sse_client;
mod store;
mod supervisor;
mod worker;
mod worktree;

use std::time::{Duration, Instant};

use proc_stats::{cpu_seconds, rss_kib};
use worker::{Worker, bin_path};

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

pub fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

pub struct Row {
    pub name: &'static str,
    pub value: String,
    pub target: &'static str,
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "compare") {
        compare::compare(&compare::subjects(&args[2..])).await;
        return;
    }
    let only: Option<String> = args.get(1).cloned();
    // `gateway` selects its three sections; each can also be run alone (`gateway-fleet` …).
    let want = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o == name || (o == "gateway" && name.starts_with("gateway-")))
    };
    if want("throughput") {
        throughput(&mut rows).await;
    }
    if want("latency") {
        latency(&mut rows).await;
    }
    if want("big") {
        big_output(&mut rows).await;
    }
    if want("startup") {
        startup(&mut rows).await;
    }
    if want("busy") {
        busy_path(&mut rows).await;
    }
    if want("acp") {
        acp::acp(&mut rows).await;
    }
    if want("gateway-fleet") {
        gateway::fleet(&mut rows).await;
    }
    if want("gateway-latency") {
        gateway::latency(&mut rows).await;
    }
    if want("gateway-startup") {
        gateway::startup(&mut rows).await;
    }
    if want("gateway-store") {
        store::store(&mut rows).await;
    }
    // Not part of the default run: it makes a repository of 20,000 files and clones it a dozen times.
    if only.as_deref() == Some("worktree") {
        worktree::worktree(&mut rows).await;
    }
    // Not part of the default run: it measures the model-API broker in process, not the worker.
    if only.as_deref() == Some("broker") {
        broker::broker(&mut rows).await;
    }
    // Not part of the default run: it opens thousands of connections and takes a minute or more.
    if only.as_deref() == Some("abuse") {
        abuse::abuse(&mut rows).await;
    }
    println!("\n| figure | value | target |\n|---|---|---|");
    for row in rows {
        println!("| {} | {} | {} |", row.name, row.value, row.target);
    }
}

async fn throughput(rows: &mut Vec<Row>) {
    let lines = 200_000u64;
    let (mut rates, mut cpu, mut rss, mut baseline) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs() {
        let worker = Worker::spawn().await;
        let cpu0 = cpu_seconds(worker.pid());
        let started = Instant::now();
        let summary = sse_client::run_job(worker.port, &format!("lines={lines}")).await;
        let secs = started.elapsed().as_secs_f64();
        rates.push(summary.events as f64 / secs);
        cpu.push((cpu_seconds(worker.pid()) - cpu0) / summary.events as f64 * 100_000.0);
        rss.push(rss_kib(worker.pid(), "VmHWM") as f64 / 1024.0);
        baseline.push(pipe_baseline(lines).await);
        eprintln!("throughput run {run}: {} events in {secs:.3}s", summary.events);
    }
    let (rate, base) = (median(rates), median(baseline));
    rows.push(Row {
        name: "stream throughput (events/s, end to end)",
        value: format!("{rate:.0}"),
        target: "≥ 100,000",
    });
    rows.push(Row {
        name: "physical baseline: fake CLI → byte counter (lines/s)",
        value: format!("{base:.0}"),
        target: "",
    });
    rows.push(Row {
        name: "worker / baseline",
        value: format!("{:.2}", rate / base),
        target: "",
    });
    rows.push(Row {
        name: "worker CPU seconds per 100,000 events",
        value: format!("{:.3}", median(cpu)),
        target: "",
    });
    rows.push(Row {
        name: "peak RSS during the throughput job (MiB)",
        value: format!("{:.1}", median(rss)),
        target: "",
    });
}

/// The same fake CLI piped straight into a counter: what the machine can do without the worker in between.
async fn pipe_baseline(lines: u64) -> f64 {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(bin_path("fake-claude"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("fake-claude");
    let started = Instant::now();
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(format!("lines={lines}").as_bytes()).await;
    }
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 16];
    let mut newlines = 0u64;
    loop {
        let n = stdout.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        newlines += memchr_count(&buf[..n]);
    }
    let _ = child.wait().await;
    newlines as f64 / started.elapsed().as_secs_f64()
}

fn memchr_count(buf: &[u8]) -> u64 {
    buf.iter().filter(|b| **b == b'\n').count() as u64
}

async fn latency(rows: &mut Vec<Row>) {
    let (mut p50, mut p99, mut max) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs() {
        let worker = Worker::spawn().await;
        let mut delays = sse_client::run_job(worker.port, "lines=10000 rate=5000 stamp=1")
            .await
            .delays_us;
        delays.sort_by(|a, b| a.total_cmp(b));
        assert!(!delays.is_empty(), "no stamped events arrived");
        p50.push(delays[delays.len() / 2]);
        p99.push(delays[delays.len() * 99 / 100]);
        max.push(*delays.last().unwrap_or(&f64::NAN));
    }
    rows.push(Row {
        name: "added latency p50 (ms, 5,000 lines/s)",
        value: format!("{:.3}", median(p50) / 1000.0),
        target: "",
    });
    rows.push(Row {
        name: "added latency p99 (ms)",
        value: format!("{:.3}", median(p99) / 1000.0),
        target: "≤ 2",
    });
    rows.push(Row {
        name: "added latency max (ms)",
        value: format!("{:.3}", median(max) / 1000.0),
        target: "",
    });
}

async fn big_output(rows: &mut Vec<Row>) {
    let bytes: u64 = std::env::var("BENCH_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000_000);
    let (mut rss, mut rate) = (Vec::new(), Vec::new());
    for _ in 0..runs().min(3) {
        let worker = Worker::spawn().await;
        let started = Instant::now();
        let summary = sse_client::run_job(worker.port, &format!("big={bytes}")).await;
        rate.push(summary.bytes as f64 / started.elapsed().as_secs_f64() / 1e6);
        rss.push(rss_kib(worker.pid(), "VmHWM") as f64 / 1024.0);
    }
    rows.push(Row {
        name: "big output: peak RSS (MiB) for a 2 GB job, EVENT_LOG_MAX_BYTES = 64 MiB",
        value: format!("{:.1}", median(rss)),
        target: "≤ 128",
    });
    rows.push(Row {
        name: "big output: SSE bytes/s received (MB/s)",
        value: format!("{:.0}", median(rate)),
        target: "",
    });
}

async fn startup(rows: &mut Vec<Row>) {
    let (mut ready, mut idle) = (Vec::new(), Vec::new());
    for _ in 0..runs().max(10) {
        let started = Instant::now();
        let worker = Worker::spawn_and_poll_health().await;
        ready.push(started.elapsed().as_secs_f64() * 1000.0);
        // Let the background provider probe finish: idle means after start-up work is done.
        tokio::time::sleep(Duration::from_millis(300)).await;
        idle.push(rss_kib(worker.pid(), "VmRSS") as f64 / 1024.0);
    }
    rows.push(Row {
        name: "start-up: spawn → first 200 from /health (ms)",
        value: format!("{:.1}", median(ready)),
        target: "≤ 50",
    });
    rows.push(Row {
        name: "idle RSS (MiB)",
        value: format!("{:.1}", median(idle)),
        target: "≤ 15",
    });
}

async fn busy_path(rows: &mut Vec<Row>) {
    let hold = std::env::temp_dir().join(format!("bench-hold-{}", std::process::id()));
    let _ = std::fs::remove_file(&hold);
    let worker = Worker::spawn().await;
    let phase = Duration::from_secs(3);
    let prompt = format!("lines=10000000 rate=20000 hold={}", hold.display());
    let (quiet, loaded, refusals) = sse_client::run_busy_job(worker.port, &prompt, phase).await;
    rows.push(Row {
        name: "429 answers per second while busy (8 clients, new connection each)",
        value: format!("{:.0}", refusals),
        target: "",
    });
    rows.push(Row {
        name: "busy job's event rate without / with the 429 load (events/s)",
        value: format!("{quiet:.0} / {loaded:.0}"),
        target: "unaffected",
    });
    let _ = std::fs::write(&hold, "");
    let _ = std::fs::remove_file(&hold);
}
