//! `bench/run.sh abuse`: the front door under many connections that send a request head and then trickle their
//! body a byte at a time or stop sending (10,000 against a gateway, 1,000 against a worker, on loopback). Prints how
//! each connection ended, how long the last one stayed open, the server's peak RSS against the stack's 256 MB
//! limit, and how `/health` answered meanwhile.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{Row, proc_stats::rss_kib, worker::Worker};

/// No connection may stay open longer than this; one that does counts as held.
const UPPER_BOUND: Duration = Duration::from_secs(180);

/// The gateway's memory limit in swarm.yml.
const STACK_LIMIT_MIB: f64 = 256.0;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The bench holds every connection's socket itself: raise its open-file limit to the hard one (the servers it
/// starts inherit it).
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[derive(Default)]
struct Tally {
    answered_408: AtomicU64,
    answered_other: AtomicU64,
    closed_silently: AtomicU64,
    never_connected: AtomicU64,
    held: AtomicU64,
    /// The longest a connection stayed open after its head was sent, in ms.
    longest_open_ms: AtomicU64,
}

async fn one(port: u16, trickle: bool, tally: Arc<Tally>) {
    let connected = tokio::time::timeout(UPPER_BOUND, TcpStream::connect(("127.0.0.1", port))).await;
    let Ok(Ok(mut stream)) = connected else {
        tally.never_connected.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let head = format!(
        "POST /execute HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: 100000\r\n\r\n{{"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        tally.closed_silently.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let sent = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let mut drip = tokio::time::interval(Duration::from_millis(500));
    let until = tokio::time::sleep(UPPER_BOUND);
    tokio::pin!(until);
    let held = loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break false,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = drip.tick(), if trickle => {
                let _ = stream.write_all(b" ").await;
            }
            _ = &mut until => break true,
        }
    };
    tally
        .longest_open_ms
        .fetch_max(sent.elapsed().as_millis() as u64, Ordering::Relaxed);
    let counter = if held {
        &tally.held
    } else if answer.starts_with(b"HTTP/1.1 408") {
        &tally.answered_408
    } else if answer.is_empty() {
        &tally.closed_silently
    } else {
        &tally.answered_other
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Opens `n` abusive connections to `port` (half trickle, half stall), samples the server's RSS and `/health`
/// until every connection ended, and adds the figures to `rows` under `label`.
async fn run(label: &'static str, server: &Worker, n: usize, rows: &mut Vec<Row>) {
    let idle_rss = rss_kib(server.pid(), "VmRSS") as f64 / 1024.0;
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    let (pid, port) = (server.pid(), server.port);
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let client = reqwest::Client::builder().no_proxy().build().expect("client");
            let (mut peak, mut worst_health, mut health_failures) = (0u64, Duration::ZERO, 0u32);
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid, "VmRSS"));
                let asked = Instant::now();
                let ok = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.get(format!("http://127.0.0.1:{port}/health")).send(),
                )
                .await
                .is_ok_and(|r| r.is_ok_and(|r| r.status() == 200));
                if ok {
                    worst_health = worst_health.max(asked.elapsed());
                } else {
                    health_failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (peak.max(rss_kib(pid, "VmHWM")), worst_health, health_failures)
        }
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(one(port, i % 2 == 0, tally.clone())))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let all_ended = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (peak, worst_health, health_failures) = sampler.await.expect("sampler");
    let peak = peak as f64 / 1024.0;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "abuse {label}: {n} connections, 408 {}, closed {}, other {}, never connected {}, held {}, peak RSS {peak:.1} MiB",
        get(&tally.answered_408),
        get(&tally.closed_silently),
        get(&tally.answered_other),
        get(&tally.never_connected),
        get(&tally.held),
    );
    let name = |what: &str| -> &'static str { Box::leak(format!("abuse {label}: {what}").into_boxed_str()) };
    rows.push(Row {
        name: name("connections opened (half trickle a byte every 500 ms, half stall)"),
        value: n.to_string(),
        target: "",
    });
    rows.push(Row {
        name: name("answered 408 / closed without an answer / other answer"),
        value: format!(
            "{} / {} / {}",
            get(&tally.answered_408),
            get(&tally.closed_silently),
            get(&tally.answered_other)
        ),
        target: "",
    });
    rows.push(Row {
        name: name("never connected / still open after 180 s"),
        value: format!("{} / {}", get(&tally.never_connected), get(&tally.held)),
        target: "0 / 0",
    });
    rows.push(Row {
        name: name("longest a connection stayed open (s); all ended after (s)"),
        value: format!(
            "{:.1}; {:.1}",
            get(&tally.longest_open_ms) as f64 / 1000.0,
            all_ended.as_secs_f64()
        ),
        target: "",
    });
    rows.push(Row {
        name: name("RSS idle → peak (MiB)"),
        value: format!("{idle_rss:.1} → {peak:.1}"),
        target: if label == "gateway" {
            "≤ 256 (the stack's limit)"
        } else {
            ""
        },
    });
    rows.push(Row {
        name: name("/health meanwhile: slowest answer (ms), failures"),
        value: format!("{:.1}, {health_failures}", worst_health.as_secs_f64() * 1000.0),
        target: "",
    });
    if peak > STACK_LIMIT_MIB {
        eprintln!("abuse {label}: peak RSS {peak:.1} MiB is over the stack's {STACK_LIMIT_MIB} MiB limit");
    }
}

/// `BENCH_ABUSE_GATEWAY` (10,000) and `BENCH_ABUSE_WORKER` (1,000) connections; the servers run with their
/// default settings unless `BENCH_BODY_TIMEOUT_SECONDS` / `BENCH_MAX_CONNECTIONS` say otherwise.
pub async fn abuse(rows: &mut Vec<Row>) {
    let files = raise_open_files();
    let mut env: Vec<(&str, String)> = Vec::new();
    for (var, setting) in [
        ("BENCH_BODY_TIMEOUT_SECONDS", "BODY_TIMEOUT_SECONDS"),
        ("BENCH_MAX_CONNECTIONS", "MAX_CONNECTIONS"),
    ] {
        if let Ok(value) = std::env::var(var) {
            rows.push(Row {
                name: Box::leak(format!("abuse: {setting} ({var})").into_boxed_str()),
                value: value.clone(),
                target: "",
            });
            env.push((setting, value));
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    eprintln!("abuse: open-file limit {files}");

    let worker = Worker::spawn_with(&[], &env).await;
    let mut gateway_env = env.clone();
    let workers = format!("http://127.0.0.1:{}", worker.port);
    gateway_env.push(("GATEWAY_WORKERS", &workers));
    let gateway = Worker::spawn_with(&["gateway"], &gateway_env).await;
    // Its first polls of the worker are part of its idle state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run("gateway", &gateway, count("BENCH_ABUSE_GATEWAY", 10_000), rows).await;
    drop(gateway);
    run("worker", &worker, count("BENCH_ABUSE_WORKER", 1_000), rows).await;
}
