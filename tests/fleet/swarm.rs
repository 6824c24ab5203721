//! swarm.yml on a one-node swarm: one job per replica, 429 when all are busy, replicas replaced after every job
//! for as long as jobs come, `shutdown` on SIGTERM, and credentials only through the secret.

use std::collections::HashSet;

use futures_util::StreamExt;

use super::http::{Attempts, client, execute_with_retry, job};
use super::stack::{Stack, deploy_env_is_clean, docker};
use super::support::{Fleet, PATIENCE, assert_brokered_credentials, canary_credentials};

#[tokio::test]
async fn swarm_of_three_serves_one_job_per_replica_and_replaces_them() {
    let Some(fleet) = Fleet::connect("swarm_of_three_serves_one_job_per_replica_and_replaces_them").await else {
        return;
    };
    let (canary, credentials) = canary_credentials();
    let stack = Stack::deploy(&fleet, "fleet3", 3, "1520", &credentials).await;

    // The secret is the only way in: neither the service nor its containers show the credentials.
    let service = fleet
        .docker
        .inspect_service(&stack.service, None)
        .await
        .expect("service");
    assert!(!serde_json::to_string(&service).expect("json").contains(&canary));
    let first = stack.running_containers(&fleet).await;
    assert_eq!(first.len(), 3);
    for container in &first {
        deploy_env_is_clean(&fleet.inspected_env(container).await, &canary);
    }

    // Three long jobs, each on its own replica (a busy one answers 429 and the client tries a new connection).
    let mut streams = Vec::new();
    let mut hosts = HashSet::new();
    let mut attempts = Attempts::default();
    for i in 1..=3 {
        let mut stream = execute_with_retry(&stack.mesh, &job(&format!("tag=s{i} hold=s-go")), &mut attempts).await;
        let (name, _) = stream.next_event().await.expect("a first event");
        assert_eq!(name, "connected");
        hosts.insert(fleet.wait_for_control(&format!("started-s{i}")).await);
        streams.push(stream);
    }
    assert_eq!(hosts.len(), 3, "three replicas run the three jobs: {hosts:?}");

    // All busy: a fourth request is turned away with Retry-After and a new connection is needed.
    let response = client()
        .post(format!("{}/execute", stack.mesh.pick()))
        .json(&job("tag=s4"))
        .send()
        .await
        .expect("fourth request");
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );

    // While busy: the worker process in a replica is not root.
    let busy = stack.container_of(&fleet, hosts.iter().next().expect("a host")).await;
    let processes = fleet.processes(&busy).await;
    let worker = processes
        .iter()
        .find(|(_, _, args)| args.contains("unified-worker"))
        .expect("worker process");
    assert!(worker.0 != "root" && worker.0 != "0", "{processes:?}");

    // The Docker secret reached the worker, and the CLI only as the broker's placeholder.
    for i in 1..=3 {
        assert_brokered_credentials(&fleet, &format!("s{i}"), &canary).await;
    }

    let mut events = Box::pin(stack.events(&fleet));
    fleet.release("s-go");
    for stream in &mut streams {
        let (name, data) = stream.terminal().await;
        assert_eq!(name, "completed", "{data}");
    }
    let mut exited = HashSet::new();
    // Healthchecks are container events too (exec_*), so the bound is on the whole wait, not on each event.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while exited.len() < 3 {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("no exit")
            .expect("events");
        if event.action.as_deref() == Some("die") {
            let actor = event.actor.expect("actor");
            let exit = actor.attributes.and_then(|a| a.get("exitCode").cloned());
            assert_eq!(exit.as_deref(), Some("0"), "a replica exits 0 after its job");
            exited.insert(actor.id.expect("container id"));
        }
    }
    assert_eq!(exited, first, "each replica exited after its job");
    let second = stack.wait_replaced(&fleet, 3, &first).await;

    // SIGTERM to a busy replica (a forced update stops every task): its stream ends with `shutdown`, and the
    // container exits 0 by itself, i.e. before the stop grace period would have had it killed.
    let mut stream = execute_with_retry(&stack.mesh, &job("tag=t1 hold=t-never"), &mut attempts).await;
    let host = fleet.wait_for_control("started-t1").await;
    let busy = stack.container_of(&fleet, &host).await;
    let started = std::time::Instant::now();
    docker(&["service", "update", "--force", "--detach", &stack.service]);
    let (name, data) = stream.terminal().await;
    assert_eq!(
        (name.as_str(), data["code"].as_str()),
        ("error", Some("shutdown")),
        "{data}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "after the stop grace period"
    );
    let exit = wait_exit(&fleet, &busy).await;
    assert_eq!(exit, 0, "the busy replica exited on its own, not killed");
    stack.wait_replaced(&fleet, 3, &second).await;
    stack.remove(&fleet).await;
}

#[tokio::test]
async fn one_replica_takes_more_jobs_in_a_row_than_max_attempts_would_allow() {
    let Some(fleet) = Fleet::connect("one_replica_takes_more_jobs_in_a_row_than_max_attempts_would_allow").await else {
        return;
    };
    let (_, credentials) = canary_credentials();
    let stack = Stack::deploy(&fleet, "fleet1", 1, "1521", &credentials).await;
    // Any max_attempts up to this would have left the service with no replica after that many clean exits.
    const JOBS: usize = 6;
    let mut hosts = HashSet::new();
    let mut attempts = Attempts::default();
    for i in 0..JOBS {
        let mut stream = execute_with_retry(&stack.mesh, &job(&format!("tag=r{i}")), &mut attempts).await;
        let (name, data) = stream.terminal().await;
        assert_eq!(name, "completed", "job {i}: {data}");
        hosts.insert(fleet.wait_for_control(&format!("started-r{i}")).await);
    }
    assert_eq!(hosts.len(), JOBS, "every job ran on a fresh replica: {hosts:?}");
    stack.remove(&fleet).await;
}

/// Waits for a container to stop and returns its exit code.
async fn wait_exit(fleet: &Fleet, container: &str) -> i64 {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let inspect = fleet.docker.inspect_container(container, None).await.expect("inspect");
        let state = inspect.state.expect("state");
        if state.running != Some(true) {
            return state.exit_code.expect("exit code");
        }
        assert!(std::time::Instant::now() < deadline, "{container} kept running");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
