//! One container of the image, created through the engine's API: who the worker runs as, and that a grandchild the
//! CLI orphaned is reaped by the init instead of lingering as a zombie.

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptions;

use super::http::{Attempts, Mesh, execute_with_retry, job, wait_healthy};
use super::support::{Fleet, PATIENCE, canary_credentials, uuid_like};

const PORT: &str = "15083";
/// What the fake's orphaned grandchild runs; `ps` shows it in its command line.
const ORPHAN_MARK: &str = "while [ ! -e";

#[tokio::test]
async fn worker_runs_unprivileged_and_leaves_no_zombie() {
    let Some(fleet) = Fleet::connect("worker_runs_unprivileged_and_leaves_no_zombie").await else {
        return;
    };
    let (canary, credentials) = canary_credentials();
    let name = format!("fleet-single-{}", uuid_like());
    let body = ContainerCreateBody {
        image: Some(fleet.image.clone()),
        env: Some(vec![
            "CLAUDE_BIN=/fleet/fake-claude".into(),
            // Stays up after the job, so what the job left behind can be looked at.
            "EXIT_AFTER_JOB=false".into(),
            format!("CLAUDE_CODE_CREDENTIALS_JSON={credentials}"),
            // The entrypoint's own path: it writes the credentials file (the broker's is the compose and Swarm
            // tests').
            "BROKER=off".into(),
        ]),
        exposed_ports: Some(vec!["5000/tcp".into()]),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/fleet", fleet.dir())]),
            port_bindings: Some(HashMap::from([(
                "5000/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(PORT.into()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    let created = fleet
        .docker
        .create_container(Some(options), body)
        .await
        .expect("create");
    let id = created.id;
    let _remove = RemoveOnDrop(id.clone());
    fleet.docker.start_container(&id, None).await.expect("start");
    let base = format!("http://127.0.0.1:{PORT}");
    wait_healthy(&format!("{base}/health")).await;

    let mut stream = execute_with_retry(
        &Mesh::new(vec![base.clone()]),
        &job("tag=z1 orphan=z1-orphan-go"),
        &mut Attempts::default(),
    )
    .await;
    assert_eq!(stream.terminal().await.0, "completed");

    let processes = fleet.processes(&id).await;
    // The engine lists the processes by host PID, which says nothing of their order once PIDs wrap: PID 1 is
    // asked of the container itself.
    let pid1 = fleet.exec_output(&id, &["cat", "/proc/1/comm"]).await;
    assert_eq!(
        pid1.as_ref().map(|(code, comm)| (*code, comm.trim())),
        Some((0, "tini")),
        "PID 1 is the init: {processes:?}"
    );
    let (init_user, _, _) = processes
        .iter()
        .find(|(_, _, args)| args.contains("tini"))
        .unwrap_or_else(|| panic!("no init process: {processes:?}"));
    assert_ne!(
        init_user, "root",
        "even the init runs as the worker user: {processes:?}"
    );
    let worker = processes
        .iter()
        .find(|(_, _, args)| args.contains("unified-worker"))
        .unwrap_or_else(|| panic!("no worker process: {processes:?}"));
    assert!(
        worker.0 != "root" && worker.0 != "0",
        "the worker runs as non-root: {processes:?}"
    );
    assert!(
        processes.iter().any(|(_, _, args)| args.contains(ORPHAN_MARK)),
        "the CLI's orphan outlives it (else this test proves nothing): {processes:?}"
    );

    // The orphan exits now; with an init as PID 1 it is reaped, without one it would stay a zombie for good.
    fleet.release("z1-orphan-go");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let processes = fleet.processes(&id).await;
        let orphan_alive = processes.iter().any(|(_, _, args)| args.contains(ORPHAN_MARK));
        let zombies = fleet.zombies(&id).await;
        if !orphan_alive && zombies.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "a zombie remains: {zombies:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Without the broker, credentials given in the environment land in the CLI's private credentials file and not
    // its environment.
    assert!(fleet.wait_for_control("creds-z1").await.contains(&canary));
    assert_eq!(fleet.wait_for_control("mode-z1").await.trim(), "600 worker");
    assert!(
        !fleet.wait_for_control("env-z1").await.contains(&canary),
        "the CLI's environment holds the canary"
    );
}

/// Removes the container however the test ends, so its port is free for the next run.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}
