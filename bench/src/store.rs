//! `gateway-store`: what keeping fleet state costs. One worker, and two gateways in front of it, one with the
//! in-memory store and one with a real `redis-server` (AOF on, as the stack runs it); in each run the same stamped
//! job goes straight to the worker, through the memory gateway and through the Redis gateway (in rotating order),
//! and a large job measures events per second through each.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Row, median, runs, sse_client, worker::Worker};

/// Lines of the throughput job: long enough that start-up is noise.
const THROUGHPUT_LINES: u64 = 200_000;

struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("unified-worker-bench-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's package) must be installed for gateway-store");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis { child, port, dir }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// p50 / p99 of one stamped job (10,000 lines at 5,000 lines/s), in µs.
async fn stamped(port: u16) -> [f64; 2] {
    let [p50, _, p99] = crate::gateway::stamped(port).await;
    [p50, p99]
}

async fn events_per_second(port: u16) -> f64 {
    let started = Instant::now();
    let summary = sse_client::run_job(port, &format!("lines={THROUGHPUT_LINES}")).await;
    summary.events as f64 / started.elapsed().as_secs_f64()
}

/// The worker answers idle again (`EXIT_AFTER_JOB=false`) once the previous job's stream is done.
async fn wait_idle(worker: u16) {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value = match client.get(format!("http://127.0.0.1:{worker}/status")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if status["status"] == "idle" {
            // The gateways poll; give them the worker back as idle before the next job.
            tokio::time::sleep(Duration::from_millis(600)).await;
            return;
        }
        assert!(Instant::now() < deadline, "the worker never turned idle");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn store(rows: &mut Vec<Row>) {
    let redis = Redis::start();
    let worker = Worker::spawn().await;
    let workers = format!("http://127.0.0.1:{}", worker.port);
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let memory = Worker::spawn_with(&["gateway"], &[("GATEWAY_WORKERS", workers.as_str())]).await;
    let shared = Worker::spawn_with(
        &["gateway"],
        &[("GATEWAY_WORKERS", workers.as_str()), ("GATEWAY_STORE", url.as_str())],
    )
    .await;
    let ports = [worker.port, memory.port, shared.port];
    // [direct, memory, redis] × [p50, p99] per run, and events/s per run.
    let mut latency: [[Vec<f64>; 2]; 3] = Default::default();
    let mut added: [[Vec<f64>; 2]; 2] = Default::default();
    let mut rate: [Vec<f64>; 3] = Default::default();
    for run in 0..runs() {
        let mut this = [[0.0; 2]; 3];
        for step in 0..3 {
            let which = (run + step) % 3;
            wait_idle(worker.port).await;
            this[which] = stamped(ports[which]).await;
        }
        for which in 0..3 {
            wait_idle(worker.port).await;
            rate[which].push(events_per_second(ports[which]).await);
        }
        for q in 0..2 {
            for which in 0..3 {
                latency[which][q].push(this[which][q]);
            }
            added[0][q].push(this[1][q] - this[0][q]);
            added[1][q].push(this[2][q] - this[0][q]);
        }
        eprintln!(
            "gateway-store run {run}: p50 / p99 µs direct {:.0} / {:.0}, memory {:.0} / {:.0}, redis {:.0} / {:.0}; events/s {:.0}, {:.0}, {:.0}",
            this[0][0],
            this[0][1],
            this[1][0],
            this[1][1],
            this[2][0],
            this[2][1],
            rate[0][run],
            rate[1][run],
            rate[2][run]
        );
    }
    let ms = |v: &Vec<f64>| median(v.clone()) / 1000.0;
    for (name, figure) in [
        ("event latency direct p50 / p99 (ms, 5,000 lines/s)", &latency[0]),
        (
            "event latency through the gateway, memory store p50 / p99 (ms)",
            &latency[1],
        ),
        (
            "event latency through the gateway, Redis store p50 / p99 (ms)",
            &latency[2],
        ),
    ] {
        rows.push(Row {
            name,
            value: format!("{:.3} / {:.3}", ms(&figure[0]), ms(&figure[1])),
            target: "",
        });
    }
    for (name, figure, target) in [
        (
            "added by the gateway, memory store p50 / p99 (ms, median of per-run differences)",
            &added[0],
            "",
        ),
        (
            "added by the gateway, Redis store p50 / p99 (ms, median of per-run differences)",
            &added[1],
            "p99 ≤ 2",
        ),
    ] {
        rows.push(Row {
            name,
            value: format!("{:.3} / {:.3}", ms(&figure[0]), ms(&figure[1])),
            target,
        });
    }
    for (name, figure, target) in [
        ("events/s straight to the worker (200,000 lines)", &rate[0], ""),
        ("events/s through the gateway, memory store", &rate[1], "≥ 50,000"),
        ("events/s through the gateway, Redis store", &rate[2], "≥ 50,000"),
    ] {
        rows.push(Row {
            name,
            value: format!("{:.0}", median(figure.clone())),
            target,
        });
    }
}
