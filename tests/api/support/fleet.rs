//! A fleet on loopback for the gateway tests: real worker processes with a fake CLI that holds each job until the
//! test releases it by name (its prompt), and `unified-worker gateway` in front of them.

use std::time::Duration;

use serde_json::{Value, json};

use super::{FakeCli, INIT_LINE, PATIENCE, RESULT_LINE, SseStream, TestWorker, client};

/// Says it started (`started-<prompt>`), emits a session and a text, waits for `release-<prompt>`, completes.
pub fn holding_cli() -> FakeCli {
    FakeCli::new(&format!(
        "read -r PROMPT\n\
         echo '{INIT_LINE}'\n\
         echo '{{\"type\":\"assistant\",\"message\":{{\"id\":\"m1\",\"content\":[{{\"type\":\"text\",\"text\":\"working on '\"$PROMPT\"'\"}}]}}}}'\n\
         echo \"$$\" > \"$DIR/started-$PROMPT\"\n\
         while [ ! -f \"$DIR/release-$PROMPT\" ]; do sleep 0.02; done\n\
         echo '{RESULT_LINE}'"
    ))
}

pub struct LocalFleet {
    pub workers: Vec<TestWorker>,
    pub cli: FakeCli,
    /// With `TEST_GATEWAY_STORE=redis` (scripts/test.sh runs the gateway tests a second time so), a real
    /// `redis-server` of this fleet's own, which every gateway of the fleet shares: the same tests prove the same
    /// behaviour with the fleet's state in Redis.
    pub store: Option<super::redis::RedisServer>,
}

impl LocalFleet {
    /// `n` workers that return to idle after each job (so a loopback fleet needs no restarts).
    pub fn start(n: usize, env: &[(&str, &str)]) -> LocalFleet {
        Self::with_cli(holding_cli(), n, env)
    }

    /// The same with another fake CLI, which must honour `started-<prompt>` / `release-<prompt>` likewise.
    pub fn with_cli(cli: FakeCli, n: usize, env: &[(&str, &str)]) -> LocalFleet {
        let mut vars = vec![("CLAUDE_BIN", cli.bin()), ("EXIT_AFTER_JOB", "false")];
        vars.extend_from_slice(env);
        // Each named after its place (`worker-1` …), as a replica would be, unless the test names them.
        let workers = (1..=n)
            .map(|i| {
                let id = format!("worker-{i}");
                let mut vars = vars.clone();
                if !env.iter().any(|(k, _)| *k == "WORKER_ID") {
                    vars.push(("WORKER_ID", &id));
                }
                TestWorker::spawn(&vars)
            })
            .collect();
        let store = match std::env::var("TEST_GATEWAY_STORE").as_deref() {
            Ok("redis") => super::redis::RedisServer::start(),
            _ => None,
        };
        LocalFleet { workers, cli, store }
    }

    pub fn addresses(&self) -> String {
        self.workers
            .iter()
            .map(|w| w.base.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn gateway(&self, env: &[(&str, &str)]) -> TestWorker {
        let url = self.store.as_ref().map(|s| s.url());
        let mut env = env.to_vec();
        if let Some(url) = &url
            && !env.iter().any(|(k, _)| *k == "GATEWAY_STORE")
        {
            env.push(("GATEWAY_STORE", url));
            // The requests of waiting jobs are sealed in the store, as the Swarm stack has them.
            if !env.iter().any(|(k, _)| k.starts_with("GATEWAY_STORE_KEY")) {
                env.push(("GATEWAY_STORE_KEY", STORE_KEY));
            }
        }
        gateway(&self.addresses(), &env)
    }

    pub async fn wait_started(&self, prompt: &str) {
        self.cli.wait_for_file(&format!("started-{prompt}")).await;
    }

    pub fn release(&self, prompt: &str) {
        self.cli.release(&format!("release-{prompt}"));
    }
}

pub fn gateway(workers: &str, env: &[(&str, &str)]) -> TestWorker {
    let mut vars = vec![("GATEWAY_WORKERS", workers), ("GATEWAY_POLL_MS", "100")];
    for (k, v) in env {
        vars.retain(|(key, _)| key != k);
        vars.push((k, v));
    }
    TestWorker::spawn_with_args(&["gateway"], &vars)
}

/// What the gateways of a fleet with a Redis store seal the waiting requests with.
pub const STORE_KEY: &str = "the-test-fleets-store-key-of-40-characters";

pub fn named_job(prompt: &str) -> Value {
    json!({ "userRequest": prompt, "codingAssistantProvider": "claude-code", "jobId": prompt })
}

pub async fn fleet_view(gateway: &TestWorker) -> Value {
    fleet_view_as(gateway, None).await
}

/// `/fleet` with the bearer token of a gateway that has one.
pub async fn fleet_view_as(gateway: &TestWorker, token: Option<&str>) -> Value {
    let mut req = client().get(gateway.url("/fleet"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("GET /fleet").json().await.expect("fleet JSON")
}

/// Waits until the gateway sees `n` idle workers (they were just started).
pub async fn wait_idle_workers(gateway: &TestWorker, n: usize) {
    wait_idle_workers_as(gateway, n, None).await
}

pub async fn wait_idle_workers_as(gateway: &TestWorker, n: usize, token: Option<&str>) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let fleet = fleet_view_as(gateway, token).await;
        let idle = fleet["workers"]
            .as_array()
            .map_or(0, |w| w.iter().filter(|w| w["state"] == "idle").count());
        if idle >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "workers never idle: {fleet}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the first `queued` event or the job's `connected`; returns it.
pub async fn first_news(stream: &mut SseStream) -> super::sse::SseEvent {
    stream.next_event().await.expect("an event")
}
