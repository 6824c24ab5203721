//! Chaos on swarm.yml's own fleet (two gateways, the store, three one-job workers): thirty clients drop their
//! connections and reconnect by job id through either gateway while one gateway is killed with SIGKILL and the
//! store restarts. Every client must get every event of its job once, in order, ending with one terminal event,
//! and every job must run exactly once.

mod client;
mod disturb;
mod record;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::http::{Sse, fleet_workers, wait_fleet};
use super::stack::{Layout, Stack, docker};
use super::support::{Fleet, canary_credentials, uuid_like};
use client::{Board, Chaos, Dice, Seat, client, cuts};
use disturb::{Disturbed, disturb};
use record::{Record, ranges};

const CLIENTS: usize = 30;
const WORKERS: u32 = 3;
/// Messages each job streams after its first one, PACE seconds apart. With `connected`, `session`, the first
/// message and the terminal event a job's ids are 0..=LAST_ID, over about two seconds: long enough for a
/// disturbance to find jobs in the middle of their streams. No check depends on the pace.
const STEPS: u64 = 10;
const PACE: &str = "0.2";
const LAST_ID: u64 = STEPS + 3;
/// Every client must have its terminal event within this; a run takes well under it.
const RUN_LIMIT: Duration = Duration::from_secs(150);
/// Longer than the gateways' keep-alive interval (15 s): a stream that says nothing for this long is broken.
const SILENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_clients_get_every_event_once_through_a_gateway_kill_and_a_store_restart() {
    let Some(fleet) =
        Fleet::connect("thirty_clients_get_every_event_once_through_a_gateway_kill_and_a_store_restart").await
    else {
        return;
    };
    let deploy = Instant::now();
    let (_, credentials) = canary_credentials();
    let stack = Stack::deploy_as(
        &fleet,
        "fleetchaos",
        WORKERS,
        Layout::Overlay { gateways: 2 },
        &credentials,
    )
    .await;
    let gateways = stack.gateways(&fleet).await;
    assert_eq!(gateways.len(), 2, "two gateways: {gateways:?}");
    for (_, base) in &gateways {
        wait_fleet(base, |f| fleet_workers(f, Some("idle")).len() == WORKERS as usize).await;
    }
    let deploy = deploy.elapsed();

    // A seed to draw the same cuts again; the store's volume outlives stacks, so job ids are new on every run.
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from_str_radix(&uuid_like()[..16], 16).expect("hex"));
    let mut dice = Dice(seed);
    let run = uuid_like()[..8].to_string();
    let seats = (0..CLIENTS)
        .map(|i| Seat {
            via: i % 2,
            ..Default::default()
        })
        .collect();
    let chaos = Arc::new(Chaos {
        gateways: Mutex::new(gateways),
        store_epoch: AtomicU64::new(0),
        board: watch::Sender::new(Board(seats)),
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            // A killed gateway's address stops answering at all.
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("client"),
        started: Instant::now(),
        until: tokio::time::Instant::now() + RUN_LIMIT,
    });

    // Act: every client posts at once, alternating between the gateways, while the fleet is disturbed.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let cuts = cuts(&mut dice);
            let own = Dice(dice.next());
            tokio::spawn(client(chaos.clone(), i, format!("chaos-{run}-{i}"), cuts, own))
        })
        .collect();
    let disturbed = disturb(&fleet, &stack, &chaos).await;
    let mut records = Vec::new();
    for client in clients {
        records.push(client.await.expect("a client panicked"));
    }
    let elapsed = chaos.started.elapsed();

    // Assert: each client's stream, how often each job's CLI started, and the store's record of each job.
    let listed = listed_codes(&chaos, &run).await;
    let runs: Vec<Vec<String>> = records.iter().map(|r| runs(&fleet, &r.job)).collect();
    let failures: Vec<(&Record, Vec<String>)> = records
        .iter()
        .zip(&runs)
        .map(|(record, ran)| (record, record.faults(ran, listed.get(&record.job))))
        .filter(|(_, faults)| !faults.is_empty())
        .collect();
    eprintln!("chaos: seed {seed}, {CLIENTS} clients, 2 gateways, {WORKERS} one-job workers, ids 0..={LAST_ID} a job");
    print_counts(&records, &runs, &disturbed);
    eprintln!(
        "chaos: {:.1} s for the clients, {:.1} s to deploy",
        elapsed.as_secs_f64(),
        deploy.as_secs_f64()
    );
    if !failures.is_empty() {
        print_failures(&chaos, &stack, &failures).await;
    }
    stack.remove(&fleet).await;

    assert_eq!(
        (disturbed.gateway_kills, disturbed.store_restarts),
        (1, 1),
        "{:?}",
        disturbed.notes
    );
    let failed: Vec<String> = failures
        .iter()
        .map(|(record, faults)| format!("{}: {}", record.job, faults.join("; ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} jobs failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn print_counts(records: &[Record], runs: &[Vec<String>], disturbed: &Disturbed) {
    let sum = |f: fn(&Record) -> usize| records.iter().map(f).sum::<usize>();
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    for record in records {
        *codes
            .entry(record.terminals.first().map_or("(none)", |(_, code)| code.as_str()))
            .or_default() += 1;
    }
    let mut starts: BTreeMap<usize, usize> = BTreeMap::new();
    for ran in runs {
        *starts.entry(ran.len()).or_default() += 1;
    }
    eprintln!(
        "chaos: cuts {} ({} while queued), reconnects {}, attempts turned away {} (no connection, or 404/503 while \
         the store was away), empty streams instead of a 204 after the terminal event {}",
        sum(|r| r.cuts),
        sum(|r| r.queued_cuts),
        sum(|r| r.reconnects),
        sum(|r| r.refused),
        sum(|r| r.empty_after_terminal)
    );
    eprintln!(
        "chaos: events received {} with an id, {} `queued`",
        sum(|r| r.ids.len()),
        sum(|r| r.queued)
    );
    eprintln!(
        "chaos: jobs completed {} of {CLIENTS}; terminal codes {codes:?}; jobs by CLI starts {starts:?}",
        codes.get("completed").copied().unwrap_or_default()
    );
    eprintln!(
        "chaos: gateway kills {}, store restarts {}",
        disturbed.gateway_kills, disturbed.store_restarts
    );
    for note in &disturbed.notes {
        eprintln!("chaos:   {note}");
    }
}

/// Each failed job with its connections, what the store replays of it and what the gateways and workers logged
/// about it.
async fn print_failures(chaos: &Chaos, stack: &Stack, failures: &[(&Record, Vec<String>)]) {
    let logs: Vec<(&str, String)> = ["gateway", "worker"]
        .into_iter()
        .map(|service| {
            let name = format!("{}_{service}", stack.name);
            (service, docker(&["service", "logs", "--raw", "--no-trunc", &name]))
        })
        .collect();
    for (record, faults) in failures {
        eprintln!("chaos: FAILED {}: {}", record.job, faults.join("; "));
        eprintln!(
            "chaos:   ids {}; connections: {}",
            ranges(&record.ids),
            record.trail.join(", ")
        );
        eprintln!("chaos:   replayed from the store: {}", replay(chaos, &record.job).await);
        let quoted = format!("\"{}\"", record.job);
        for (service, log) in &logs {
            let (retries, lines): (Vec<&str>, Vec<&str>) = log
                .lines()
                .filter(|l| l.contains(&quoted))
                .partition(|l| l.contains("store write failed"));
            for line in lines.iter().take(8) {
                eprintln!("chaos:   {service} log: {line}");
            }
            if !retries.is_empty() {
                eprintln!("chaos:   {service} log: {} store writes retried", retries.len());
            }
        }
    }
}

/// The job as a gateway replays it from its first event: ids, and the terminal event it ends with.
async fn replay(chaos: &Chaos, job: &str) -> String {
    let (_, gateway) = chaos.gateways()[0].clone();
    let answer = match chaos.http.get(format!("{gateway}/jobs/{job}/events")).send().await {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => return format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
        Err(e) => return e.to_string(),
    };
    let mut stream = Sse::new(answer);
    let (mut ids, mut last) = (Vec::new(), String::from("no terminal event"));
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Some(frame) = stream.next_frame(SILENCE, until).await {
        ids.extend(frame.id);
        if matches!(frame.name.as_str(), "completed" | "error") {
            let code = frame.data["code"].as_str().unwrap_or(&frame.name).to_string();
            last = format!("`{code}` at {:?}", frame.id);
        }
    }
    format!("ids {}, ending {last}", ranges(&ids))
}

/// The containers each start of a job's CLI wrote a line for.
fn runs(fleet: &Fleet, job: &str) -> Vec<String> {
    std::fs::read_to_string(fleet.control(&format!("runs-{job}")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The terminal code of each of this run's jobs as the store lists them (once each, if all is well).
async fn listed_codes(chaos: &Chaos, run: &str) -> BTreeMap<String, Vec<Option<String>>> {
    let (_, gateway) = chaos.gateways()[0].clone();
    let list: Value = chaos
        .http
        .get(format!("{gateway}/jobs?limit=500"))
        .send()
        .await
        .expect("the job list")
        .json()
        .await
        .expect("the job list as JSON");
    let mut listed: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for job in list["jobs"].as_array().into_iter().flatten() {
        let Some(id) = job["jobId"]
            .as_str()
            .filter(|id| id.starts_with(&format!("chaos-{run}-")))
        else {
            continue;
        };
        let code = job["terminalCode"].as_str().map(str::to_string);
        listed.entry(id.to_string()).or_default().push(code);
    }
    listed
}
