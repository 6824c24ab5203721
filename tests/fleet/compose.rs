//! docker-compose.yml as shipped: one worker on 127.0.0.1 that exits after its job and is restarted by compose.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use super::http::{Attempts, Mesh, execute_with_retry, job, wait_healthy};
use super::support::{Fleet, PATIENCE, assert_brokered_credentials, canary_credentials, events_since_now, run};

const PORT: &str = "15081";
const PROJECT: &str = "fleetcompose";

fn compose(fleet: &Fleet, args: &[&str], credentials: &str) -> String {
    let mut all = vec![
        "-p",
        PROJECT,
        "-f",
        "docker-compose.yml",
        "-f",
        "tests/fleet/compose.test.yml",
    ];
    all.extend_from_slice(args);
    let env = [
        ("WORKER_IMAGE", fleet.image.as_str()),
        ("FLEET_DIR", fleet.dir()),
        ("HOST_PORT", PORT),
        ("CLAUDE_CODE_CREDENTIALS_JSON", credentials),
    ];
    run("docker-compose", &all, &env)
}

#[tokio::test]
async fn compose_restarts_the_worker_after_each_job() {
    let Some(fleet) = Fleet::connect("compose_restarts_the_worker_after_each_job").await else {
        return;
    };
    let (canary, credentials) = canary_credentials();
    compose(&fleet, &["down", "--remove-orphans"], "");
    compose(&fleet, &["up", "-d", "--no-build"], &credentials);
    let base = format!("http://127.0.0.1:{PORT}");
    wait_healthy(&format!("{base}/health")).await;

    let label = format!("com.docker.compose.project={PROJECT}");
    let containers = fleet.containers(&label).await;
    assert_eq!(containers.len(), 1, "one worker: {containers:?}");
    let container = containers[0].clone();
    let restarts_before = restart_count(&fleet, &container).await;

    // Watch the container from before the job, so neither its exit nor its restart can be missed.
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("container".to_string(), vec![container.clone()]),
    ]);
    let mut events = fleet.docker.events(Some(EventsOptions {
        filters: Some(filters),
        since: events_since_now(),
        ..Default::default()
    }));

    let mut attempts = Attempts::default();
    let mut stream = execute_with_retry(&Mesh::new(vec![base.clone()]), &job("tag=c1"), &mut attempts).await;
    let (name, data) = stream.terminal().await;
    assert_eq!(name, "completed", "{data}");
    assert_brokered_credentials(&fleet, "c1", &canary).await;

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(seen.contains(&"die".to_string()) && seen.contains(&"start".to_string())) {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the worker neither exited nor restarted")
            .expect("event stream ended")
            .expect("event");
        let action = event.action.unwrap_or_default();
        if action == "die" {
            let exit = event
                .actor
                .and_then(|a| a.attributes)
                .and_then(|a| a.get("exitCode").cloned());
            assert_eq!(exit.as_deref(), Some("0"), "the worker exits 0 after its job");
        }
        seen.push(action);
    }
    wait_healthy(&format!("{base}/health")).await;
    assert_eq!(restart_count(&fleet, &container).await, restarts_before + 1);

    // A second job on the restarted worker: the restart really is a fresh, working worker.
    let mut stream = execute_with_retry(&Mesh::new(vec![base.clone()]), &job("tag=c2"), &mut attempts).await;
    assert_eq!(stream.terminal().await.0, "completed");
    compose(&fleet, &["down"], "");
}

async fn restart_count(fleet: &Fleet, container: &str) -> i64 {
    let inspect = fleet.docker.inspect_container(container, None).await.expect("inspect");
    inspect.restart_count.unwrap_or_default()
}
