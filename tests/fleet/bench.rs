//! The fleet benchmark (BENCHMARKS.md, `## Fleet`): how long a replica's replacement takes to answer `/health`
//! after it exits, and how many short jobs per minute three replicas serve to clients that retry 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::Mutex;

use super::http::{Attempts, execute_with_retry, job};
use super::stack::Stack;
use super::support::{Fleet, PATIENCE, canary_credentials};

const JOBS: usize = 30;
const CLIENTS: usize = 3;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

#[tokio::test]
async fn fleet_benchmark() {
    let Some(fleet) = Fleet::connect("fleet_benchmark").await else {
        return;
    };
    let (_, credentials) = canary_credentials();
    let stack = Stack::deploy(&fleet, "fleetbench", 3, "1522", &credentials).await;
    let fleet = Arc::new(fleet);

    // Exits come from the engine's events (its own clock); readiness is the first `unified-worker healthcheck`
    // (a GET of 127.0.0.1:5000/health inside the replica) that succeeds in a container that just started.
    let exits = Arc::new(Mutex::new(Vec::<i64>::new()));
    let ready = Arc::new(Mutex::new(Vec::<i64>::new()));
    let watcher = {
        let (fleet, exits, ready) = (fleet.clone(), exits.clone(), ready.clone());
        let mut events = Box::pin(stack.events(&fleet));
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let id = event.actor.and_then(|a| a.id).unwrap_or_default();
                match event.action.as_deref() {
                    Some("die") => exits.lock().await.push(event.time_nano.unwrap_or_default()),
                    Some("start") => {
                        let (fleet, ready) = (fleet.clone(), ready.clone());
                        tokio::spawn(async move {
                            let deadline = Instant::now() + PATIENCE;
                            while Instant::now() < deadline {
                                if fleet.exec(&id, &["unified-worker", "healthcheck"]).await == Some(0) {
                                    ready.lock().await.push(now_ns());
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        });
                    }
                    _ => {}
                }
            }
        })
    };

    let next = Arc::new(AtomicUsize::new(0));
    let totals = Arc::new(Mutex::new(Attempts::default()));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, totals, mesh) = (next.clone(), totals.clone(), stack.mesh.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < JOBS {
                    let mut attempts = Attempts::default();
                    let mut stream = execute_with_retry(&mesh, &job("short"), &mut attempts).await;
                    let (name, data) = stream.terminal().await;
                    assert_eq!(name, "completed", "{data}");
                    let mut totals = totals.lock().await;
                    totals.busy += attempts.busy;
                    totals.refused += attempts.refused;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    let elapsed = started.elapsed();

    // Every job's replica is replaced; wait for all of those replacements to answer.
    let deadline = Instant::now() + PATIENCE;
    while ready.lock().await.len() < JOBS || exits.lock().await.len() < JOBS {
        assert!(Instant::now() < deadline, "not every replica was replaced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();
    let mut exits = exits.lock().await.clone();
    let mut ready = ready.lock().await.clone();
    exits.sort_unstable();
    ready.sort_unstable();
    // Swarm starts one replacement per exit, in order: the n-th readiness belongs to the n-th exit.
    let mut gaps: Vec<f64> = exits
        .iter()
        .zip(&ready)
        .map(|(exit, ready)| (ready - exit) as f64 / 1e6)
        .collect();
    gaps.sort_by(f64::total_cmp);
    assert!(gaps.len() >= 10 && gaps[0] > 0.0, "{gaps:?}");
    let totals = totals.lock().await;
    println!(
        "fleet: replacement exit→/health over {} replacements: median {:.0} ms, max {:.0} ms",
        gaps.len(),
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1]
    );
    println!(
        "fleet: {JOBS} short jobs, {CLIENTS} replicas, {CLIENTS} clients: {:.1} s, {:.1} jobs/min \
         ({} answers 429, {} failed connections retried)",
        elapsed.as_secs_f64(),
        JOBS as f64 * 60.0 / elapsed.as_secs_f64(),
        totals.busy,
        totals.refused
    );
    stack.remove(&fleet).await;
}
