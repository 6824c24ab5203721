//! A stack deployed with the repository's deploy-swarm.sh and swarm.yml (plus the fake CLI), watched and removed
//! through the engine's API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bollard::models::EventMessage;
use bollard::query_parameters::{EventsOptions, ListSecretsOptions, ListTasksOptions};
use futures_util::{Stream, StreamExt};

use super::http::Mesh;
use super::support::{Fleet, PATIENCE, events_since_now, run};

pub struct Stack {
    pub name: String,
    pub service: String,
    pub mesh: Arc<Mesh>,
}

impl Stack {
    /// Deploys `replicas` workers, replica n on 127.0.0.1:<port_prefix>n, with `credentials` as the swarm secret,
    /// and waits (through the script) until all of them are healthy.
    pub async fn deploy(fleet: &Fleet, name: &str, replicas: u32, port_prefix: &str, credentials: &str) -> Stack {
        fleet.ensure_swarm().await;
        let bases = (1..=replicas)
            .map(|slot| format!("http://127.0.0.1:{port_prefix}{slot}"))
            .collect();
        let stack = Stack {
            name: name.to_string(),
            service: format!("{name}_worker"),
            mesh: Arc::new(Mesh::new(bases)),
        };
        stack.remove(fleet).await;
        let stack_file = fleet.dir.path().join("swarm.yml");
        std::fs::write(&stack_file, without_ports(&read_swarm_yml())).expect("write stack file");
        let replicas = replicas.to_string();
        let override_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleet/swarm.test.yml");
        let env = [
            ("STACK_NAME", name),
            ("WORKER_IMAGE", fleet.image.as_str()),
            ("REPLICAS", replicas.as_str()),
            ("PORT_PREFIX", port_prefix),
            ("STACK_FILE", stack_file.to_str().expect("utf-8 path")),
            ("CLAUDE_CODE_CREDENTIALS_JSON", credentials),
            ("SKIP_BUILD", "1"),
            ("STACK_OVERRIDE", override_file),
            ("FLEET_DIR", fleet.dir()),
            ("HEALTH_INTERVAL", "1s"),
            ("RETRY_AFTER_SECONDS", "1"),
            // Small enough for three replicas on a two-core machine.
            ("CPU_LIMIT", "1"),
            ("MEMORY_LIMIT", "512M"),
            ("WAIT_SECONDS", "180"),
        ];
        let out = run("./deploy-swarm.sh", &[], &env);
        assert!(
            out.contains(&stack.service),
            "the script prints the service state: {out}"
        );
        stack
    }

    pub fn label(&self) -> String {
        format!("com.docker.swarm.service.name={}", self.service)
    }

    /// The service's container events from now on.
    pub fn events(&self, fleet: &Fleet) -> impl Stream<Item = EventMessage> + use<> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![self.label()]),
        ]);
        let options = EventsOptions {
            filters: Some(filters),
            since: events_since_now(),
            ..Default::default()
        };
        fleet.docker.events(Some(options)).filter_map(|e| async move { e.ok() })
    }

    /// Containers of tasks Swarm reports as running, which with a healthcheck means healthy.
    pub async fn running_containers(&self, fleet: &Fleet) -> HashSet<String> {
        let filters = HashMap::from([
            ("service".to_string(), vec![self.service.clone()]),
            ("desired-state".to_string(), vec!["running".to_string()]),
        ]);
        let options = ListTasksOptions { filters: Some(filters) };
        let tasks = fleet.docker.list_tasks(Some(options)).await.expect("tasks");
        tasks
            .into_iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .and_then(|s| s.state)
                    .map(|s| s.to_string())
                    .as_deref()
                    == Some("running")
            })
            .filter_map(|t| t.status?.container_status?.container_id)
            .collect()
    }

    /// Waits until `count` running replicas exist, none of them in `old`, and returns them.
    pub async fn wait_replaced(&self, fleet: &Fleet, count: usize, old: &HashSet<String>) -> HashSet<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let running = self.running_containers(fleet).await;
            if running.len() >= count && running.is_disjoint(old) {
                return running;
            }
            assert!(
                Instant::now() < deadline,
                "replicas were not replaced: {running:?} (old {old:?})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The container whose id a fake CLI reported, if it is one of this service's running containers.
    pub async fn container_of(&self, fleet: &Fleet, reported: &str) -> String {
        let reported = reported.trim();
        assert_eq!(reported.len(), 64, "the fake CLI reports a container id: {reported:?}");
        let all = fleet.containers(&self.label()).await;
        all.into_iter()
            .find(|id| id == reported)
            .unwrap_or_else(|| panic!("{reported} is not a running container of {}", self.service))
    }

    /// Removes the stack, waits for its containers to go, and deletes the secrets the script made for it.
    pub async fn remove(&self, fleet: &Fleet) {
        let _ = std::process::Command::new("docker")
            .args(["stack", "rm", &self.name])
            .output();
        let deadline = Instant::now() + PATIENCE;
        let namespace = format!("com.docker.stack.namespace={}", self.name);
        while !fleet.containers(&namespace).await.is_empty() {
            assert!(Instant::now() < deadline, "stack {} did not go away", self.name);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let filters = HashMap::from([("name".to_string(), vec![format!("{}_claude_credentials", self.name)])]);
        let secrets = fleet
            .docker
            .list_secrets(Some(ListSecretsOptions { filters: Some(filters) }))
            .await
            .unwrap_or_default();
        for secret in secrets.into_iter().filter_map(|s| s.id) {
            let _ = fleet.docker.delete_secret(&secret).await;
        }
    }
}

fn read_swarm_yml() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/swarm.yml")).expect("swarm.yml")
}

/// swarm.yml less the service's `ports:` block (see swarm.test.yml for why); everything else is deployed as is.
fn without_ports(yaml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut removed = false;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start() == "ports:" && indent == 4 {
            skipping = true;
            removed = true;
            continue;
        }
        if skipping && (indent > 4 || line.trim().is_empty()) {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    assert!(removed, "swarm.yml has no `ports:` block where expected");
    out
}

pub fn deploy_env_is_clean(stack_env: &[String], canary: &str) {
    assert!(
        !stack_env.iter().any(|v| v.contains(canary)),
        "the credentials are visible in the container's configuration"
    );
}

/// `run` for the service CLI commands the tests use to disturb a fleet.
pub fn docker(args: &[&str]) -> String {
    run("docker", args, &[])
}
