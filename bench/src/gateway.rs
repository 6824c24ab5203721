//! The fleet gateway (`unified-worker gateway`), measured with real processes on loopback:
//!
//! * `gateway-fleet`: 9 jobs of ~2 s on 3 one-job replicas (restarted by [`Supervisor`] as soon as they exit), 9
//!   clients at once, (a) through one gateway and (b) straight to the replicas, retrying 429 as clients do today;
//!   against the ideal FIFO schedule for the same job and replacement times.
//! * `gateway-latency`: the time from the fake CLI printing a line to the client parsing its event, through the
//!   gateway and straight to the worker, alternating, on the same worker.
//! * `gateway-startup`: exec → first 200 from the gateway's `/health`, → all workers seen idle, and idle RSS.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;

use crate::{
    Row, median,
    proc_stats::rss_kib,
    runs, sse_client,
    supervisor::{Life, Supervisor},
    worker::Worker,
};

const SLOTS: usize = 3;
/// Numbers the runs, for unique job ids.
static RUN: AtomicUsize = AtomicUsize::new(0);
const JOBS: usize = 9;
/// The job's own duration, spent by the fake CLI (it is the workload, as a model's turn would be).
const JOB_MS: u64 = 2000;
/// As the measurement on a swarm: the workers tell a busy client to come back in 1 s.
const RETRY_AFTER_SECONDS: &str = "1";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

fn job_body(job_id: &str) -> serde_json::Value {
    serde_json::json!({
        "userRequest": format!("lines=4 sleep={JOB_MS}"),
        "codingAssistantProvider": "claude-code",
        "jobId": job_id,
    })
}

/// The replicas' environment: one job per process, 429s say "1 s", and a terminal nobody read is kept only 1 s.
fn replica_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("EXIT_AFTER_JOB", "true"),
        ("LINGER_SECONDS", "1"),
        ("RETRY_AFTER_SECONDS", RETRY_AFTER_SECONDS),
    ]
}

/// `BENCH_REPLACEMENT_DELAY_MS`: the supervisor waits this long after an exit before it starts the replacement,
/// to play an orchestrator that takes its time (Swarm takes about 500 ms); the default 0 restarts at once.
fn replacement_delay() -> Duration {
    let ms = std::env::var("BENCH_REPLACEMENT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_millis(ms)
}

fn gateway_poll_ms() -> Option<String> {
    std::env::var("BENCH_GATEWAY_POLL_MS").ok()
}

/// `BENCH_GATEWAY_STORE`: the gateway's `GATEWAY_STORE` (a Redis URL, to time the fleet's line in the store); the
/// default is the gateway's own memory.
fn gateway_store() -> Option<String> {
    std::env::var("BENCH_GATEWAY_STORE").ok()
}

async fn spawn_gateway(workers: &str) -> Worker {
    let mut env = vec![
        ("GATEWAY_WORKERS", workers.to_string()),
        ("RETRY_AFTER_SECONDS", RETRY_AFTER_SECONDS.to_string()),
    ];
    if let Some(ms) = gateway_poll_ms() {
        env.push(("GATEWAY_POLL_MS", ms));
    }
    if let Some(store) = gateway_store() {
        env.push(("GATEWAY_STORE", store));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Worker::spawn_with(&["gateway"], &env).await
}

async fn fleet_view(port: u16) -> serde_json::Value {
    match client().get(format!("http://127.0.0.1:{port}/fleet")).send().await {
        Ok(resp) => resp.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// Job ids in the gateway's line, head first, once `n` wait (empty if that never happens within 2 s).
async fn line_order(port: u16, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let fleet = fleet_view(port).await;
        let jobs = fleet["queue"]["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.len() >= n {
            return jobs
                .iter()
                .filter_map(|j| Some(j["jobId"].as_str()?.to_string()))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Vec::new()
}

/// Waits until the gateway's `/fleet` shows `n` idle workers.
async fn wait_idle(port: u16, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let idle = fleet_view(port).await["workers"]
            .as_array()
            .map_or(0, |w| w.iter().filter(|w| w["state"] == "idle").count());
        if idle >= n {
            return;
        }
        assert!(Instant::now() < deadline, "the gateway never saw {n} idle workers");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A tiny xorshift: the ±20 % jitter on `Retry-After` needs no better randomness.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter((nanos ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// `wait` × [0.8, 1.2), as `unified-worker exec` does.
    fn apply(&mut self, wait: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        wait.mul_f64(0.8 + unit * 0.4)
    }
}

/// One client's job, times since the common start.
#[derive(Clone, Debug, Default)]
struct JobRecord {
    job_id: String,
    connected: Duration,
    terminal: Duration,
    outcome: String,
    worker_id: String,
    /// 429 answers this client got.
    busy: u32,
    /// Connections that could not be made (a replica between exit and listening).
    refused: u32,
    /// The `position` of each `queued` event, in order.
    positions: Vec<u64>,
}

/// Reads a job's stream to its end: when `connected` and the terminal event arrived, and which worker ran it.
async fn follow(resp: reqwest::Response, t0: Instant, record: &mut JobRecord) {
    let mut body = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut event = String::new();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        let now = t0.elapsed();
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + pos];
            start += pos + 1;
            if let Some(name) = line.strip_prefix(b"event: ") {
                event = String::from_utf8_lossy(name).into_owned();
            } else if let Some(data) = line.strip_prefix(b"data: ") {
                match event.as_str() {
                    "queued" => {
                        let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
                        record.positions.push(v["position"].as_u64().unwrap_or(0));
                    }
                    "connected" => {
                        record.connected = now;
                        let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
                        record.worker_id = v["workerId"].as_str().unwrap_or_default().to_string();
                    }
                    "completed" | "error" => {
                        record.terminal = now;
                        record.outcome = event.clone();
                    }
                    _ => {}
                }
            }
        }
        pending.drain(..start);
    }
}

fn retry_after(resp: &reqwest::Response) -> Duration {
    let seconds = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(seconds)
}

/// Posts until one of `bases` (taken in turn from the shared counter) accepts, each try on a new connection; a
/// 429 waits `Retry-After` ±20 %, a refused connection 100 ms. Then follows the stream.
async fn run_client(bases: Arc<Vec<String>>, turn: Arc<AtomicUsize>, t0: Instant, job_id: String) -> JobRecord {
    let mut record = JobRecord {
        job_id,
        ..JobRecord::default()
    };
    // Seeded from the job id (FNV-1a), so that the clients of one run draw different waits.
    let seed = record.job_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut jitter = Jitter::new(seed);
    let body = job_body(&record.job_id);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no replica accepted the job: {record:?}");
        let base = &bases[turn.fetch_add(1, Ordering::Relaxed) % bases.len()];
        // A new client is a new connection, as behind a routing mesh that balances connections.
        match client().post(format!("{base}/execute")).json(&body).send().await {
            Ok(resp) if resp.status() == 200 => {
                follow(resp, t0, &mut record).await;
                return record;
            }
            Ok(resp) if resp.status() == 429 => {
                record.busy += 1;
                let wait = jitter.apply(retry_after(&resp));
                drop(resp);
                tokio::time::sleep(wait).await;
            }
            Ok(resp) => panic!(
                "unexpected answer {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            ),
            Err(_) => {
                record.refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Gateway,
    Direct,
}

struct RunResult {
    /// The clients' common start: every time in `jobs` is relative to it.
    t0: Instant,
    /// Through the gateway: the job ids in line, head first, read from `/fleet` before the first dispatch from it.
    line: Vec<String>,
    jobs: Vec<JobRecord>,
    lives: Vec<Life>,
    makespan: Duration,
    /// The gateway's `/fleet` counters after the run (dispatches, 429s it absorbed …).
    counters: serde_json::Value,
}

async fn fleet_run(mode: Mode) -> RunResult {
    let supervisor = Supervisor::start(SLOTS, &replica_env(), replacement_delay()).await;
    let gateway = match mode {
        Mode::Gateway => {
            let gw = spawn_gateway(&supervisor.addresses().join(",")).await;
            wait_idle(gw.port, SLOTS).await;
            Some(gw)
        }
        Mode::Direct => None,
    };
    let bases = Arc::new(match &gateway {
        Some(gw) => vec![format!("http://127.0.0.1:{}", gw.port)],
        None => supervisor.addresses(),
    });
    let turn = Arc::new(AtomicUsize::new(0));
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let clients: Vec<_> = (0..JOBS)
        .map(|i| {
            let job_id = format!("bench-{}-{run}-{i}", std::process::id());
            tokio::spawn(run_client(bases.clone(), turn.clone(), t0, job_id))
        })
        .collect();
    // The order of the line, as the gateway holds it once everyone who waits is in it.
    let line = match &gateway {
        Some(gw) => line_order(gw.port, JOBS - SLOTS).await,
        None => Vec::new(),
    };
    let mut jobs = Vec::new();
    for c in clients {
        jobs.push(c.await.expect("client"));
    }
    let makespan = jobs.iter().map(|j| j.terminal).max().unwrap_or_default();
    // The last replicas' exits belong to the figures (terminal → exit); then everything is stopped.
    let ids: Vec<String> = jobs.iter().map(|j| j.worker_id.clone()).collect();
    supervisor.wait_exited(&ids, Duration::from_secs(15)).await;
    let lives = supervisor.stop().await;
    let counters = match &gateway {
        Some(gw) => fleet_view(gw.port).await["counters"].clone(),
        None => serde_json::Value::Null,
    };
    drop(gateway);
    RunResult {
        t0,
        line,
        jobs,
        lives,
        makespan,
        counters,
    }
}

/// A slot's turn-around between two jobs: terminal received → process exited → replacement answered `/health` →
/// the replacement's job `connected` at its client.
#[derive(Default)]
struct Turnaround {
    terminal_to_exit: Vec<f64>,
    exit_to_health: Vec<f64>,
    health_to_connected: Vec<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn turnarounds(run: &RunResult, into: &mut Turnaround) {
    let by_id: HashMap<&str, &JobRecord> = run.jobs.iter().map(|j| (j.worker_id.as_str(), j)).collect();
    for life in &run.lives {
        let Some(job) = by_id.get(life.id.as_str()) else {
            continue;
        };
        let t0 = run.t0;
        let terminal = t0 + job.terminal;
        if let Some(exited) = life.exited {
            into.terminal_to_exit
                .push(ms(exited.saturating_duration_since(terminal)));
        }
        let next = run
            .lives
            .iter()
            .find(|l| l.slot == life.slot && l.generation == life.generation + 1);
        if let (Some(exited), Some(next)) = (life.exited, next)
            && let Some(answered) = next.answered
        {
            into.exit_to_health.push(ms(answered.saturating_duration_since(exited)));
            if let Some(next_job) = by_id.get(next.id.as_str()) {
                into.health_to_connected
                    .push(ms((t0 + next_job.connected).saturating_duration_since(answered)));
            }
        }
    }
}

/// FIFO as the clients see it: `queued` positions only go down, and no job in line is `connected` more than
/// [`TURN_SLACK`] after one that was behind it in line (workers take a few ms to answer).
fn fifo_check(run: &RunResult) -> (usize, usize) {
    let up = run
        .jobs
        .iter()
        .map(|j| j.positions.windows(2).filter(|w| w[1] > w[0]).count())
        .sum();
    let connected: HashMap<&str, Duration> = run.jobs.iter().map(|j| (j.job_id.as_str(), j.connected)).collect();
    let in_line: Vec<(&str, Duration)> = run
        .line
        .iter()
        .filter_map(|id| Some((id.as_str(), *connected.get(id.as_str())?)))
        .collect();
    let mut out_of_turn = 0;
    for (i, (id, at)) in in_line.iter().enumerate() {
        if let Some((behind, before)) = in_line[i + 1..].iter().find(|(_, b)| *at > *b + TURN_SLACK) {
            out_of_turn += 1;
            eprintln!(
                "out of turn: {id} (place {}) connected at {:.3}s, after {behind} behind it at {:.3}s",
                i + 1,
                at.as_secs_f64(),
                before.as_secs_f64()
            );
        }
    }
    (up, out_of_turn)
}

/// How much later than one behind it a job may be `connected` without counting as out of turn.
const TURN_SLACK: Duration = Duration::from_millis(50);

/// p50 and p99 (nearest rank, as the other sections) and max of a small sample.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (v[v.len() / 2], v[v.len() * 99 / 100], v[v.len() - 1])
}

#[derive(Default)]
struct ModeFigures {
    wait_p50: Vec<f64>,
    wait_p99: Vec<f64>,
    wait_max: Vec<f64>,
    makespan: Vec<f64>,
    busy: Vec<f64>,
    refused: Vec<f64>,
    failed: usize,
    /// Through the gateway: the 429s it got from workers and retried elsewhere (`busyRetries`).
    absorbed: Vec<f64>,
    /// Through the gateway: `queued` positions that went up, and jobs that started before one ahead of them.
    positions_up: usize,
    out_of_turn: usize,
    turnaround: Turnaround,
}

pub async fn fleet(rows: &mut Vec<Row>) {
    let n = runs();
    let mut figures = [ModeFigures::default(), ModeFigures::default()];
    let (mut job_ms, mut replacement_ms) = (Vec::new(), Vec::new());
    for run in 0..n {
        // Alternate which mode goes first, so that neither always follows the other's leftovers.
        let order = if run % 2 == 0 {
            [Mode::Gateway, Mode::Direct]
        } else {
            [Mode::Direct, Mode::Gateway]
        };
        for mode in order {
            let result = fleet_run(mode).await;
            let f = &mut figures[mode as usize];
            let waits: Vec<f64> = result.jobs.iter().map(|j| j.connected.as_secs_f64()).collect();
            let (p50, p99, max) = spread(waits);
            f.wait_p50.push(p50);
            f.wait_p99.push(p99);
            f.wait_max.push(max);
            f.makespan.push(result.makespan.as_secs_f64());
            f.busy.push(result.jobs.iter().map(|j| j.busy as f64).sum());
            f.refused.push(result.jobs.iter().map(|j| j.refused as f64).sum());
            let (up, out_of_turn) = fifo_check(&result);
            f.positions_up += up;
            f.out_of_turn += out_of_turn;
            f.absorbed.push(result.counters["busyRetries"].as_f64().unwrap_or(0.0));
            f.failed += result.jobs.iter().filter(|j| j.outcome != "completed").count();
            job_ms.extend(result.jobs.iter().map(|j| ms(j.terminal - j.connected)));
            let before = f.turnaround.exit_to_health.len();
            turnarounds(&result, &mut f.turnaround);
            replacement_ms.extend_from_slice(&f.turnaround.exit_to_health[before..]);
            eprintln!(
                "gateway-fleet run {run} {}: makespan {:.2}s, waits p50 {p50:.2}s max {max:.2}s, 429s {}, refused {}, queued events {}",
                if mode == Mode::Gateway {
                    "through the gateway"
                } else {
                    "direct"
                },
                result.makespan.as_secs_f64(),
                result.jobs.iter().map(|j| j.busy).sum::<u32>(),
                result.jobs.iter().map(|j| j.refused).sum::<u32>(),
                result.jobs.iter().map(|j| j.positions.len()).sum::<usize>(),
            );
        }
    }
    let job = median(job_ms) / 1000.0;
    let replacement = median(replacement_ms.clone()) / 1000.0;
    let (_, _, replacement_max) = spread(replacement_ms);
    let cycle = job + replacement;
    // Job k (0-based, in FIFO order) starts at floor(k / 3) × (job + replacement) on 3 slots.
    let ideal_waits: Vec<f64> = (0..JOBS).map(|k| (k / SLOTS) as f64 * cycle).collect();
    let (ideal_p50, ideal_p99, ideal_max) = spread(ideal_waits.clone());
    let ideal_makespan = ideal_waits.iter().copied().fold(0.0, f64::max) + job;

    if let Some(ms) = gateway_poll_ms() {
        rows.push(Row {
            name: "fleet: the gateway's GATEWAY_POLL_MS (BENCH_GATEWAY_POLL_MS; default 500)",
            value: ms,
            target: "",
        });
    }
    if gateway_store().is_some() {
        rows.push(Row {
            name: "fleet: the gateway's store (BENCH_GATEWAY_STORE)",
            value: "redis".to_string(),
            target: "",
        });
    }
    if !replacement_delay().is_zero() {
        rows.push(Row {
            name: "fleet: the supervisor's restart delay after an exit (ms, BENCH_REPLACEMENT_DELAY_MS)",
            value: format!("{}", replacement_delay().as_millis()),
            target: "",
        });
    }
    rows.push(Row {
        name: "fleet: job time, `connected` → terminal event (s, median of all jobs)",
        value: format!("{job:.3}"),
        target: "",
    });
    rows.push(Row {
        name: "fleet: replacement, replica exit → new one answers /health (ms, median / max)",
        value: format!("{:.1} / {:.1}", replacement * 1000.0, replacement_max),
        target: "",
    });
    rows.push(Row {
        name: "ideal FIFO: wait until `connected` p50 / p99 / max (s)",
        value: format!("{ideal_p50:.2} / {ideal_p99:.2} / {ideal_max:.2}"),
        target: "",
    });
    rows.push(Row {
        name: "ideal FIFO: makespan (s)",
        value: format!("{ideal_makespan:.2}"),
        target: "",
    });
    for (mode, label) in [
        (Mode::Gateway, "(a) through the gateway"),
        (Mode::Direct, "(b) direct, retrying 429"),
    ] {
        let f = &figures[mode as usize];
        let makespan = median(f.makespan.clone());
        rows.push(Row {
            name: match mode {
                Mode::Gateway => "(a) through the gateway: wait until `connected` p50 / p99 / max (s)",
                Mode::Direct => "(b) direct, retrying 429: wait until `connected` p50 / p99 / max (s)",
            },
            value: format!(
                "{:.2} / {:.2} / {:.2}",
                median(f.wait_p50.clone()),
                median(f.wait_p99.clone()),
                median(f.wait_max.clone())
            ),
            target: "",
        });
        rows.push(Row {
            name: match mode {
                Mode::Gateway => "(a) through the gateway: makespan (s), × ideal",
                Mode::Direct => "(b) direct, retrying 429: makespan (s), × ideal",
            },
            value: format!("{makespan:.2}, × {:.3}", makespan / ideal_makespan),
            target: if mode == Mode::Gateway { "≤ × 1.10" } else { "" },
        });
        rows.push(Row {
            name: match mode {
                Mode::Gateway => "(a) through the gateway: 429s seen by the clients per run (median, max)",
                Mode::Direct => "(b) direct, retrying 429: 429s seen by the clients per run (median, max)",
            },
            value: format!(
                "{:.0}, {:.0} (+ refused connections {:.0})",
                median(f.busy.clone()),
                f.busy.iter().copied().fold(0.0, f64::max),
                median(f.refused.clone())
            ),
            target: if mode == Mode::Gateway { "0" } else { "" },
        });
        if mode == Mode::Gateway {
            rows.push(Row {
                name: "(a) through the gateway: 429s the gateway got from workers and retried (median per run)",
                value: format!("{:.0}", median(f.absorbed.clone())),
                target: "",
            });
            rows.push(Row {
                name: "(a) through the gateway: `queued` positions that went up / jobs started out of turn (all runs)",
                value: format!("{} / {}", f.positions_up, f.out_of_turn),
                target: "0 / 0",
            });
        }
        let t = &f.turnaround;
        rows.push(Row {
            name: match mode {
                Mode::Gateway => {
                    "(a) slot turn-around (ms, medians): terminal → exit, exit → /health, /health → next `connected`"
                }
                Mode::Direct => {
                    "(b) slot turn-around (ms, medians): terminal → exit, exit → /health, /health → next `connected`"
                }
            },
            value: format!(
                "{:.1}, {:.1}, {:.1}",
                median(t.terminal_to_exit.clone()),
                median(t.exit_to_health.clone()),
                median(t.health_to_connected.clone())
            ),
            target: "",
        });
        if f.failed > 0 {
            rows.push(Row {
                name: "jobs that did not end with `completed` (all runs)",
                value: format!("{label}: {}", f.failed),
                target: "0",
            });
        }
    }
}

/// p50 / p90 / p99 of one stamped job (10,000 lines at 5,000 lines/s) on `port`, in µs.
pub async fn stamped(port: u16) -> [f64; 3] {
    let mut delays = sse_client::run_job(port, "lines=10000 rate=5000 stamp=1")
        .await
        .delays_us;
    assert!(!delays.is_empty(), "no stamped events arrived");
    delays.sort_by(|a, b| a.total_cmp(b));
    let at = |q: usize| delays[delays.len() * q / 100];
    [at(50), at(90), at(99)]
}

pub async fn latency(rows: &mut Vec<Row>) {
    let worker = Worker::spawn().await;
    let gw = spawn_gateway(&format!("http://127.0.0.1:{}", worker.port)).await;
    // [direct, through the gateway, added] × [p50, p90, p99], one value per run.
    let mut figures: [[Vec<f64>; 3]; 3] = Default::default();
    for run in 0..runs() {
        let mut pair = [[0.0; 3]; 2];
        for step in 0..2 {
            // Alternating which goes first; the worker returns to idle after each job (`EXIT_AFTER_JOB=false`).
            let via_gateway = (run + step) % 2 == 1;
            wait_idle(gw.port, 1).await;
            let port = if via_gateway { gw.port } else { worker.port };
            pair[via_gateway as usize] = stamped(port).await;
        }
        for q in 0..3 {
            figures[0][q].push(pair[0][q]);
            figures[1][q].push(pair[1][q]);
            figures[2][q].push(pair[1][q] - pair[0][q]);
        }
        eprintln!(
            "gateway-latency run {run}: p50 / p90 / p99 µs direct {:.0} / {:.0} / {:.0}, through the gateway {:.0} / {:.0} / {:.0}",
            pair[0][0], pair[0][1], pair[0][2], pair[1][0], pair[1][1], pair[1][2]
        );
    }
    let names = [
        "event latency direct p50 / p90 / p99 (ms, 5,000 lines/s)",
        "event latency through the gateway p50 / p90 / p99 (ms)",
        "added by the gateway p50 / p90 / p99 (ms, median of per-run differences)",
    ];
    for (name, figure) in names.into_iter().zip(&figures) {
        let [p50, p90, p99] = [0, 1, 2].map(|q| median(figure[q].clone()) / 1000.0);
        rows.push(Row {
            name,
            value: format!("{p50:.3} / {p90:.3} / {p99:.3}"),
            target: if name.starts_with("added") { "p99 ≤ 1" } else { "" },
        });
    }
}

pub async fn startup(rows: &mut Vec<Row>) {
    let workers: Vec<Worker> = futures_util::future::join_all((0..SLOTS).map(|_| Worker::spawn())).await;
    let list = workers
        .iter()
        .map(|w| format!("http://127.0.0.1:{}", w.port))
        .collect::<Vec<_>>()
        .join(",");
    let mut env = vec![("GATEWAY_WORKERS", list.as_str())];
    let poll = gateway_poll_ms();
    if let Some(ms) = &poll {
        env.push(("GATEWAY_POLL_MS", ms.as_str()));
    }
    let (mut ready, mut all_idle, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs().max(5) {
        let started = Instant::now();
        let gw = Worker::spawn_and_poll_health_with(&["gateway"], &env).await;
        ready.push(ms(started.elapsed()));
        wait_idle(gw.port, SLOTS).await;
        all_idle.push(ms(started.elapsed()));
        // Several rounds of polling the three workers: idle means the steady state of an idle fleet.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        rss.push(rss_kib(gw.pid(), "VmRSS") as f64 / 1024.0);
    }
    rows.push(Row {
        name: "gateway start-up: exec → first 200 from /health (ms)",
        value: format!("{:.1}", median(ready)),
        target: "",
    });
    rows.push(Row {
        name: "gateway start-up: exec → all 3 workers seen idle in /fleet (ms)",
        value: format!("{:.1}", median(all_idle)),
        target: "",
    });
    rows.push(Row {
        name: "gateway idle RSS with 3 workers polled (MiB)",
        value: format!("{:.1}", median(rss)),
        target: "≤ 15",
    });
}
