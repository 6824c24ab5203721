//! `docker:<service>` discovery (`unified_worker::gateway::discovery::docker`) against a real one-node swarm: the
//! addresses it publishes are the tasks' own, and replicas that die or replace others are seen through the engine's
//! events alone (the backstop poll is set to an hour).

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use unified_worker::gateway::discovery::docker;

use super::stack::{Layout, Stack};
use super::support::{Fleet, PATIENCE, canary_credentials};

const NO_POLL: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn docker_discovery_follows_overlay_tasks_through_events() {
    let Some(fleet) = Fleet::connect("docker_discovery_follows_overlay_tasks_through_events").await else {
        return;
    };
    let (_, credentials) = canary_credentials();
    let stack = Stack::deploy_as(&fleet, "fleetdisc", 3, Layout::Overlay { gateways: 0 }, &credentials).await;
    let (found, mut urls) = watch::channel(vec!["nothing published yet".to_string()]);
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(docker::watch_polling_every(
        stack.service.clone(),
        5000,
        NO_POLL,
        found,
        stop.clone(),
    ));

    // The three tasks, at their addresses on the stack's overlay network.
    let first = stack.running_containers(&fleet).await;
    let expected = stack.overlay_urls(&fleet, &first).await;
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(published(&mut urls, |u| u.len() == 3).await, expected);

    // A replica dies: it leaves the list at once, and its replacement joins once Swarm reports it running.
    let victim = first.iter().next().expect("a replica").clone();
    let victim_url = stack.overlay_urls(&fleet, &HashSet::from([victim.clone()])).await;
    fleet
        .docker
        .kill_container(&victim, None)
        .await
        .expect("kill a replica");
    let fewer = published(&mut urls, |u| u.len() == 2).await;
    assert!(
        !fewer.contains(&victim_url[0]),
        "{fewer:?} still has the dead {victim_url:?}"
    );
    let second = replaced(&fleet, &stack, &victim).await;
    let expected = stack.overlay_urls(&fleet, &second).await;
    assert_eq!(published(&mut urls, |u| *u == expected[..]).await, expected);

    stop.cancel();
    tokio::time::timeout(PATIENCE, watcher)
        .await
        .expect("watch ends when stopped")
        .expect("watch did not panic");
    stack.remove(&fleet).await;
}

#[tokio::test]
async fn docker_discovery_reaches_host_network_tasks_at_their_node_and_port() {
    let Some(fleet) = Fleet::connect("docker_discovery_reaches_host_network_tasks_at_their_node_and_port").await else {
        return;
    };
    let (_, credentials) = canary_credentials();
    let (found, mut urls) = watch::channel(vec!["nothing published yet".to_string()]);
    let stop = CancellationToken::new();
    // Started before the service exists: "no workers" is published, and the watch keeps going.
    let watcher = tokio::spawn(docker::watch_polling_every(
        "fleetdischost_worker".to_string(),
        5000,
        NO_POLL,
        found,
        stop.clone(),
    ));
    assert_eq!(published(&mut urls, |u| u.is_empty()).await, Vec::<String>::new());

    // Replica n listens on 127.0.0.1:1523n (`PORT` in its own environment, from a template in the spec).
    let stack = Stack::deploy(&fleet, "fleetdischost", 3, "1523", &credentials).await;
    let mut expected = stack.mesh.bases().to_vec();
    expected.sort();
    assert_eq!(published(&mut urls, |u| *u == expected[..]).await, expected);

    stop.cancel();
    tokio::time::timeout(PATIENCE, watcher)
        .await
        .expect("watch ends when stopped")
        .expect("watch did not panic");
    stack.remove(&fleet).await;
}

/// Waits until the published list satisfies `done` and returns it.
async fn published(urls: &mut watch::Receiver<Vec<String>>, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let wait = async {
        loop {
            {
                let current = urls.borrow_and_update();
                if done(&current) {
                    return current.clone();
                }
            }
            urls.changed().await.expect("watch keeps its sender");
        }
    };
    match tokio::time::timeout(PATIENCE, wait).await {
        Ok(list) => list,
        Err(_) => panic!("never published as expected; last: {:?}", *urls.borrow()),
    }
}

/// Waits until the service runs three replicas again, `gone` not among them, and returns them.
async fn replaced(fleet: &Fleet, stack: &Stack, gone: &str) -> HashSet<String> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let running = stack.running_containers(fleet).await;
        if running.len() == 3 && !running.contains(gone) {
            return running;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{gone} was not replaced: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
