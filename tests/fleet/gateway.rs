//! The gateway in front of real replicas: swarm.yml's own layout (two gateways finding three workers by
//! `dns:tasks.worker:5000` over the stack's overlay network), a gateway on the host finding host-network workers by
//! `docker:<service>` through the engine, and docker-compose.fleet.yml (one gateway, three workers in a fixed list). Clients never see a 429: jobs beyond the idle workers wait in the gateways' queues
//! with positions that only go down, and run on the replicas that replace the finished ones.

use std::collections::HashSet;

use serde_json::Value;
use tokio::sync::mpsc;

use super::http::{Sse, client, fleet_workers, job, wait_fleet, wait_healthy};
use super::stack::{Layout, Stack};
use super::support::{Fleet, PATIENCE, canary_credentials, run};

#[tokio::test]
async fn stack_gateways_serve_nine_clients_on_three_workers_without_a_429() {
    let Some(fleet) = Fleet::connect("stack_gateways_serve_nine_clients_on_three_workers_without_a_429").await else {
        return;
    };
    let (_, credentials) = canary_credentials();
    let stack = Stack::deploy_as(&fleet, "fleetgw", 3, Layout::Overlay { gateways: 2 }, &credentials).await;
    let gateways = stack.mesh.bases().to_vec();
    assert_eq!(gateways.len(), 2, "two gateways: {gateways:?}");
    let first = stack.running_containers(&fleet).await;
    let workers = stack.overlay_urls(&fleet, &first).await;
    for gateway in &gateways {
        wait_fleet(gateway, |f| all_idle(f, &workers)).await;
    }

    // Nine clients at once, alternating between the gateways; every job holds until released.
    let seen = clients(&gateways, 9, "g", "g-go").await;
    assert_eq!(
        count(&seen.firsts, "connected"),
        3,
        "one job per worker: {:?}",
        seen.firsts
    );
    assert_eq!(count(&seen.firsts, "queued"), 6, "the others wait: {:?}", seen.firsts);
    fleet.release("g-go");
    let outcomes = seen.finish().await;
    assert_eq!(outcomes.len(), 9);
    // Two gateways may both pick the same idle worker; the one that gets the 429 keeps its request where it was in
    // line (it left only once a worker took the job), so nobody's position goes up.
    assert!(
        !outcomes.iter().any(Outcome::position_rose),
        "a queued position went up: {:?}",
        outcomes.iter().map(|o| &o.positions).collect::<Vec<_>>()
    );

    // Every job ran on a replica of its own: the first three on the replicas there at the start, the six others on
    // replacements, which the gateways could only reach through discovery.
    let mut hosts = HashSet::new();
    for i in 0..9 {
        hosts.insert(
            fleet
                .wait_for_control(&format!("started-g{i}"))
                .await
                .trim()
                .to_string(),
        );
    }
    assert_eq!(hosts.len(), 9, "{hosts:?}");
    assert_eq!(hosts.intersection(&first).count(), 3, "{hosts:?} vs {first:?}");

    // And the gateways' view ends as the engine's: three idle workers, the fresh replicas running now.
    let now = stack.wait_replaced(&fleet, 3, &hosts).await;
    let workers = stack.overlay_urls(&fleet, &now).await;
    for gateway in &gateways {
        let view = wait_fleet(gateway, |f| all_idle(f, &workers)).await;
        eprintln!("{gateway}/fleet counters after nine jobs: {}", view["counters"]);
    }

    // The stack's store holds the fleet's jobs: both gateways list the nine newest (the store's volume outlives
    // stacks, so earlier runs may be there too), all completed, and each replays the jobs the other relayed, though
    // every worker that ran them has exited.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for gateway in &gateways {
        let health: serde_json::Value = client
            .get(format!("{gateway}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            health["store"],
            // Sealed: the stack's key secret reached every gateway.
            serde_json::json!({"kind": "redis", "up": true, "sealed": true}),
            "{health}"
        );
        let list: serde_json::Value = client
            .get(format!("{gateway}/jobs?state=finished&limit=9"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jobs = list["jobs"].as_array().expect("jobs");
        let codes: Vec<&str> = jobs.iter().filter_map(|j| j["terminalCode"].as_str()).collect();
        assert_eq!(codes, ["completed"; 9], "{list}");
        for id in jobs.iter().filter_map(|j| j["jobId"].as_str()) {
            let replay = client
                .get(format!("{gateway}/jobs/{id}/events"))
                .header("Last-Event-ID", "0")
                .send()
                .await
                .unwrap();
            assert_eq!(replay.status(), 200, "{id} through {gateway}");
            let text = replay.text().await.unwrap();
            assert!(text.contains("event: completed"), "{id} replayed to its end: {text}");
        }
    }
    stack.remove(&fleet).await;
}

#[tokio::test]
async fn gateway_with_docker_discovery_serves_host_network_workers() {
    let Some(fleet) = Fleet::connect("gateway_with_docker_discovery_serves_host_network_workers").await else {
        return;
    };
    let (_, credentials) = canary_credentials();
    let stack = Stack::deploy(&fleet, "fleetgwd", 3, "1524", &credentials).await;
    let first = stack.running_containers(&fleet).await;
    // The gateway as a process on the host, asking the engine for the service's tasks over its socket; each worker
    // is at 127.0.0.1 (the node's address) and the PORT of its own container.
    let gateway = GatewayProcess::start(&fleet, &format!("docker:{}", stack.service));
    let mut workers = stack.mesh.bases().to_vec();
    workers.sort();
    wait_healthy(&format!("{}/health", gateway.base)).await;
    wait_fleet(&gateway.base, |f| all_idle(f, &workers)).await;

    let seen = clients(std::slice::from_ref(&gateway.base), 6, "d", "d-go").await;
    assert_eq!(count(&seen.firsts, "connected"), 3, "{:?}", seen.firsts);
    assert_eq!(count(&seen.firsts, "queued"), 3, "{:?}", seen.firsts);
    fleet.release("d-go");
    let outcomes = seen.finish().await;
    assert_eq!(outcomes.len(), 6);
    assert!(
        !outcomes.iter().any(Outcome::position_rose),
        "{:?}",
        outcomes.iter().map(|o| &o.positions).collect::<Vec<_>>()
    );

    // Three jobs on the first replicas, three on their replacements (at the same ports: the task slot's).
    let mut hosts = HashSet::new();
    for i in 0..6 {
        hosts.insert(
            fleet
                .wait_for_control(&format!("started-d{i}"))
                .await
                .trim()
                .to_string(),
        );
    }
    assert_eq!(hosts.len(), 6, "{hosts:?}");
    assert_eq!(hosts.intersection(&first).count(), 3, "{hosts:?} vs {first:?}");
    stack.wait_replaced(&fleet, 3, &hosts).await;
    wait_fleet(&gateway.base, |f| all_idle(f, &workers)).await;
    drop(gateway);
    stack.remove(&fleet).await;
}

/// `unified-worker gateway` run from this build on 127.0.0.1:GATEWAY_PORT, killed when dropped; its log goes to
/// `gateway.log` in the fleet folder.
struct GatewayProcess {
    base: String,
    child: std::process::Child,
}

const GATEWAY_PORT: &str = "15249";

impl GatewayProcess {
    fn start(fleet: &Fleet, workers: &str) -> GatewayProcess {
        let log = std::fs::File::create(fleet.dir.path().join("gateway.log")).expect("gateway log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_unified-worker"))
            .arg("gateway")
            .env("HOST", "127.0.0.1")
            .env("PORT", GATEWAY_PORT)
            .env("GATEWAY_WORKERS", workers)
            .env("GATEWAY_POLL_MS", "100")
            .env("LOG_FORMAT", "json")
            .stdout(log.try_clone().expect("gateway log"))
            .stderr(log)
            .spawn()
            .expect("start the gateway");
        GatewayProcess {
            base: format!("http://127.0.0.1:{GATEWAY_PORT}"),
            child,
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const COMPOSE_PORT: &str = "15085";
const COMPOSE_PROJECT: &str = "fleetcomposegw";

fn compose(fleet: &Fleet, args: &[&str]) -> String {
    let mut all = vec![
        "-p",
        COMPOSE_PROJECT,
        "-f",
        "docker-compose.fleet.yml",
        "-f",
        "tests/fleet/compose-fleet.test.yml",
    ];
    all.extend_from_slice(args);
    let (_, credentials) = canary_credentials();
    let env = [
        ("WORKER_IMAGE", fleet.image.as_str()),
        ("STORE_IMAGE", fleet.store_image.as_str()),
        ("FLEET_DIR", fleet.dir()),
        ("HOST_PORT", COMPOSE_PORT),
        ("CLAUDE_CODE_CREDENTIALS_JSON", credentials.as_str()),
    ];
    run("docker-compose", &all, &env)
}

#[tokio::test]
async fn compose_fleet_serves_one_client_more_than_workers_through_its_gateway() {
    let Some(fleet) = Fleet::connect("compose_fleet_serves_one_client_more_than_workers_through_its_gateway").await
    else {
        return;
    };
    compose(&fleet, &["down", "--remove-orphans"]);
    compose(&fleet, &["up", "-d", "--no-build"]);
    let gateway = format!("http://127.0.0.1:{COMPOSE_PORT}");
    wait_healthy(&format!("{gateway}/health")).await;
    let workers: Vec<String> = (1..=3).map(|n| format!("http://worker-{n}:5000")).collect();
    wait_fleet(&gateway, |f| all_idle(f, &workers)).await;

    let seen = clients(std::slice::from_ref(&gateway), 4, "c", "c-go").await;
    assert_eq!(count(&seen.firsts, "connected"), 3, "{:?}", seen.firsts);
    assert_eq!(count(&seen.firsts, "queued"), 1, "{:?}", seen.firsts);
    fleet.release("c-go");
    let outcomes = seen.finish().await;
    assert_eq!(outcomes.len(), 4);
    // One gateway knows where it dispatched: nobody is ever sent back down the line.
    assert!(
        !outcomes.iter().any(Outcome::position_rose),
        "{:?}",
        outcomes.iter().map(|o| &o.positions).collect::<Vec<_>>()
    );
    // The fourth job ran on a worker that compose restarted after its first job, under the same name.
    wait_fleet(&gateway, |f| all_idle(f, &workers)).await;
    compose(&fleet, &["down", "--remove-orphans"]);
}

/// Whether a `/fleet` answer lists exactly `workers`, all idle.
fn all_idle(view: &Value, workers: &[String]) -> bool {
    fleet_workers(view, None) == workers && fleet_workers(view, Some("idle")) == workers
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

/// Clients whose streams are open and have each shown their first event.
struct Clients {
    firsts: Vec<String>,
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
}

/// What a client saw before its job's `completed`.
struct Outcome {
    /// The positions of its `queued` events, in order.
    positions: Vec<u64>,
}

impl Outcome {
    fn position_rose(&self) -> bool {
        self.positions.windows(2).any(|w| w[1] > w[0])
    }
}

impl Clients {
    /// Waits for every stream to end `completed`.
    async fn finish(self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for task in self.tasks {
            outcomes.push(task.await.expect("a client panicked"));
        }
        outcomes
    }
}

/// Starts `n` clients at once, client i posting `tag=<tag>i hold=<hold>` to gateway i mod the count, and returns
/// once each has its first event. A 429 or any other refusal fails the client: the gateway must absorb them.
async fn clients(gateways: &[String], n: usize, tag: &str, hold: &str) -> Clients {
    let (first_tx, mut first_rx) = mpsc::unbounded_channel();
    let tasks = (0..n)
        .map(|i| {
            let gateway = gateways[i % gateways.len()].clone();
            let body = job(&format!("tag={tag}{i} hold={hold}"));
            let first_tx = first_tx.clone();
            tokio::spawn(async move {
                let response = client()
                    .post(format!("{gateway}/execute"))
                    .json(&body)
                    .send()
                    .await
                    .expect("the gateway answers");
                assert_eq!(response.status(), 200, "client {i} through {gateway}");
                let mut stream = Sse::new(response);
                let mut positions: Vec<u64> = Vec::new();
                let mut first = true;
                loop {
                    let (name, data) = stream
                        .next_event()
                        .await
                        .expect("the stream ends with a terminal event");
                    if std::mem::take(&mut first) {
                        let _ = first_tx.send(name.clone());
                    }
                    match name.as_str() {
                        "queued" => positions.push(data["position"].as_u64().expect("a position")),
                        "completed" => return Outcome { positions },
                        "error" => panic!("client {i}: {data}"),
                        _ => {}
                    }
                }
            })
        })
        .collect();
    drop(first_tx);
    let mut firsts = Vec::new();
    while firsts.len() < n {
        let first = tokio::time::timeout(PATIENCE, first_rx.recv())
            .await
            .expect("every client sees a first event")
            .expect("a client ended before its first event");
        firsts.push(first);
    }
    Clients { firsts, tasks }
}
