//! The fleet benchmark (BENCHMARKS.md, `## Fleet`): how long a replica's replacement takes to answer `/health`
//! after it exits, and how many short jobs per minute three replicas serve to clients that retry 429.

use std::collections::HashMap;
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

    // Exits and starts come from the engine's events (its clock, the host's); a replacement is ready at the first
    // `unified-worker healthcheck` (a GET of 127.0.0.1:$PORT/health inside it) that succeeds, or when it accepted a
    // job, whichever is first: a replica may take a job and exit before a probe gets its turn.
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let watcher = {
        let (fleet, timeline) = (fleet.clone(), timeline.clone());
        let mut events = Box::pin(stack.events(&fleet));
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let at = event.time_nano.unwrap_or_default();
                let actor = event.actor.unwrap_or_default();
                let id = actor.id.unwrap_or_default();
                let slot = actor
                    .attributes
                    .and_then(|a| a.get("com.docker.swarm.task.name").cloned())
                    .and_then(|task| task.split('.').nth(1).map(str::to_string))
                    .unwrap_or_default();
                match event.action.as_deref() {
                    Some("die") => timeline.lock().await.exits.push((slot, at)),
                    Some("start") => {
                        timeline.lock().await.starts.push((id.clone(), slot, at));
                        let (fleet, timeline) = (fleet.clone(), timeline.clone());
                        tokio::spawn(async move {
                            let deadline = Instant::now() + PATIENCE;
                            while Instant::now() < deadline {
                                if fleet.exec(&id, &["unified-worker", "healthcheck"]).await == Some(0) {
                                    timeline.lock().await.ready(&id, now_ns());
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
            let (next, totals, mesh, timeline) = (next.clone(), totals.clone(), stack.mesh.clone(), timeline.clone());
            let control = fleet.control("");
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= JOBS {
                        break;
                    }
                    let mut attempts = Attempts::default();
                    let mut stream = execute_with_retry(&mesh, &job(&format!("tag=b{n}")), &mut attempts).await;
                    let accepted = now_ns();
                    let (name, data) = stream.terminal().await;
                    assert_eq!(name, "completed", "{data}");
                    let container = std::fs::read_to_string(control.join(format!("started-b{n}"))).expect("started");
                    timeline.lock().await.ready(container.trim(), accepted);
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

    // Every job's replica is replaced; wait until each replacement is ready.
    let deadline = Instant::now() + PATIENCE;
    let gaps = loop {
        if let Some(gaps) = timeline.lock().await.replacement_gaps(JOBS) {
            break gaps;
        }
        assert!(
            Instant::now() < deadline,
            "not every replica was replaced: {:?}",
            timeline.lock().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    watcher.abort();
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

/// What happened to the replicas, in the host's nanoseconds since the epoch.
#[derive(Default, Debug)]
struct Timeline {
    /// (task slot, exit)
    exits: Vec<(String, i64)>,
    /// (container, task slot, start)
    starts: Vec<(String, String, i64)>,
    /// container → first moment it was known to answer
    ready: HashMap<String, i64>,
}

impl Timeline {
    fn ready(&mut self, container: &str, at: i64) {
        let entry = self.ready.entry(container.to_string()).or_insert(at);
        *entry = (*entry).min(at);
    }

    /// Milliseconds from each exit to its slot's replacement being ready, sorted, once `count` are known.
    fn replacement_gaps(&self, count: usize) -> Option<Vec<f64>> {
        let mut gaps = Vec::new();
        for (container, slot, start) in &self.starts {
            let exit = self
                .exits
                .iter()
                .filter(|(s, at)| s == slot && at <= start)
                .map(|(_, at)| *at)
                .max();
            if let (Some(exit), Some(ready)) = (exit, self.ready.get(container)) {
                gaps.push((ready - exit) as f64 / 1e6);
            }
        }
        gaps.sort_by(f64::total_cmp);
        (gaps.len() >= count).then_some(gaps)
    }
}
