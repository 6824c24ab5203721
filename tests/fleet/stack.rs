//! A stack deployed with the repository's deploy-swarm.sh and swarm.yml (plus the fake CLI), watched and removed
//! through the engine's API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bollard::models::EventMessage;
use bollard::query_parameters::{EventsOptions, ListNetworksOptions, ListSecretsOptions, ListTasksOptions};
use futures_util::{Stream, StreamExt};

use super::http::Mesh;
use super::support::{Fleet, PATIENCE, events_since_now, run};

pub struct Stack {
    pub name: String,
    pub service: String,
    pub mesh: Arc<Mesh>,
}

/// Where the stack's services run and how the tests reach them.
pub enum Layout {
    /// swarm.test.yml: the workers on the host's network, replica n on 127.0.0.1:<port_prefix>n, and no gateway.
    HostNetwork { port_prefix: &'static str },
    /// gateway.test.yml: swarm.yml's own layout, workers and `gateways` gateways on the stack's overlay network;
    /// the tests reach the gateways at their addresses on the engine's bridge to the overlay (see that file).
    Overlay { gateways: u32 },
}

impl Stack {
    /// Deploys `replicas` workers, replica n on 127.0.0.1:<port_prefix>n, with `credentials` as the swarm secret,
    /// and waits (through the script) until all of them are healthy.
    pub async fn deploy(
        fleet: &Fleet,
        name: &str,
        replicas: u32,
        port_prefix: &'static str,
        credentials: &str,
    ) -> Stack {
        Stack::deploy_as(fleet, name, replicas, Layout::HostNetwork { port_prefix }, credentials).await
    }

    /// Deploys swarm.yml through deploy-swarm.sh with `replicas` workers laid out as `layout`, with `credentials` as
    /// the swarm secret, and waits (through the script) until every worker and gateway is healthy.
    pub async fn deploy_as(fleet: &Fleet, name: &str, replicas: u32, layout: Layout, credentials: &str) -> Stack {
        fleet.ensure_swarm().await;
        let service = format!("{name}_worker");
        let removed = Stack {
            name: name.to_string(),
            service: service.clone(),
            mesh: Arc::new(Mesh::new(Vec::new())),
        };
        removed.remove(fleet).await;
        let stack_file = fleet.dir.path().join("swarm.yml");
        std::fs::write(&stack_file, without_ports(&read_swarm_yml())).expect("write stack file");
        let replicas_text = replicas.to_string();
        let (override_file, port_prefix, gateways) = match layout {
            Layout::HostNetwork { port_prefix } => ("swarm.test.yml", port_prefix, 0),
            Layout::Overlay { gateways } => ("gateway.test.yml", "", gateways),
        };
        let override_file = format!("{}/tests/fleet/{override_file}", env!("CARGO_MANIFEST_DIR"));
        let gateways_text = gateways.to_string();
        let env = [
            ("STACK_NAME", name),
            ("WORKER_IMAGE", fleet.image.as_str()),
            ("STORE_IMAGE", fleet.store_image.as_str()),
            ("REPLICAS", replicas_text.as_str()),
            ("GATEWAY_REPLICAS", gateways_text.as_str()),
            ("PORT_PREFIX", port_prefix),
            ("STACK_FILE", stack_file.to_str().expect("utf-8 path")),
            ("CLAUDE_CODE_CREDENTIALS_JSON", credentials),
            ("SKIP_BUILD", "1"),
            ("STACK_OVERRIDE", override_file.as_str()),
            ("FLEET_DIR", fleet.dir()),
            ("HEALTH_INTERVAL", "1s"),
            ("RETRY_AFTER_SECONDS", "1"),
            // Small enough for three replicas on a two-core machine.
            ("CPU_LIMIT", "1"),
            ("MEMORY_LIMIT", "512M"),
            ("WAIT_SECONDS", "180"),
        ];
        let out = run("./deploy-swarm.sh", &[], &env);
        assert!(out.contains(&service), "the script prints the service state: {out}");
        let bases = match layout {
            Layout::HostNetwork { port_prefix } => (1..=replicas)
                .map(|slot| format!("http://127.0.0.1:{port_prefix}{slot}"))
                .collect(),
            Layout::Overlay { .. } => gateway_bases(fleet, name).await,
        };
        Stack {
            name: name.to_string(),
            service,
            mesh: Arc::new(Mesh::new(bases)),
        }
    }

    /// The networks the stack made (its overlay, `<stack>_default`), by id.
    pub async fn networks(&self, fleet: &Fleet) -> Vec<String> {
        let label = format!("com.docker.stack.namespace={}", self.name);
        let filters = HashMap::from([("label".to_string(), vec![label])]);
        let options = ListNetworksOptions { filters: Some(filters) };
        let networks = fleet.docker.list_networks(Some(options)).await.expect("networks");
        networks.into_iter().filter_map(|n| n.id).collect()
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

    /// `http://<address on the stack's overlay network>:5000` of each container, sorted: where the gateways and
    /// docker discovery reach them.
    pub async fn overlay_urls(&self, fleet: &Fleet, containers: &HashSet<String>) -> Vec<String> {
        let network = format!("{}_default", self.name);
        let mut urls = Vec::new();
        for container in containers {
            let inspect = fleet.docker.inspect_container(container, None).await.expect("inspect");
            let networks = inspect.network_settings.and_then(|n| n.networks).unwrap_or_default();
            let ip = networks
                .get(&network)
                .and_then(|n| n.ip_address.clone())
                .unwrap_or_else(|| panic!("{container} is not on {network}"));
            urls.push(format!("http://{ip}:5000"));
        }
        urls.sort();
        urls
    }

    /// The running gateways as (container, base URL), those that have an address yet: a gateway that Swarm
    /// restarted is a new container, whose address shows once it is attached to the bridge.
    pub async fn gateways(&self, fleet: &Fleet) -> Vec<(String, String)> {
        gateway_endpoints(fleet, &self.name)
            .await
            .into_iter()
            .filter_map(|(id, base)| Some((id, base?)))
            .collect()
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

    /// Removes the stack, waits for its containers and its network to go, and deletes the secrets the script made
    /// for it.
    pub async fn remove(&self, fleet: &Fleet) {
        let _ = std::process::Command::new("docker")
            .args(["stack", "rm", &self.name])
            .output();
        let deadline = Instant::now() + PATIENCE;
        let namespace = format!("com.docker.stack.namespace={}", self.name);
        loop {
            let containers = fleet.containers(&namespace).await;
            let networks = self.networks(fleet).await;
            if containers.is_empty() && networks.is_empty() {
                break;
            }
            // `docker stack rm` tries the network once, right after the services, and gives up on it while their
            // tasks still hold it: remove what it left once the containers are gone.
            if containers.is_empty() {
                for network in &networks {
                    let _ = fleet.docker.remove_network(network).await;
                }
            }
            assert!(Instant::now() < deadline, "stack {} did not go away", self.name);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let filters = HashMap::from([(
            "name".to_string(),
            vec![
                format!("{}_claude_credentials", self.name),
                format!("{}_store_password", self.name),
                format!("{}_store_key", self.name),
            ],
        )]);
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

/// Base URLs of the stack's running gateways at their addresses on `docker_gwbridge`, the engine's bridge that gives
/// every container on an overlay network its way out; the host is on that bridge too.
async fn gateway_bases(fleet: &Fleet, stack: &str) -> Vec<String> {
    gateway_endpoints(fleet, stack)
        .await
        .into_iter()
        .map(|(id, base)| base.unwrap_or_else(|| panic!("gateway {id} has no address on docker_gwbridge")))
        .collect()
}

/// Each running gateway container with its base URL on `docker_gwbridge`, or `None` while it has no address there
/// yet (a container that is starting).
async fn gateway_endpoints(fleet: &Fleet, stack: &str) -> Vec<(String, Option<String>)> {
    let gateways = fleet
        .containers(&format!("com.docker.swarm.service.name={stack}_gateway"))
        .await;
    let bridge = fleet
        .docker
        .inspect_network("docker_gwbridge", None)
        .await
        .expect("the engine's gateway bridge");
    let endpoints = bridge.containers.unwrap_or_default();
    gateways
        .into_iter()
        .map(|id| {
            let base = endpoints
                .get(&id)
                .and_then(|e| e.ipv4_address.as_deref())
                .map(|address| {
                    let ip = address.split('/').next().unwrap_or(address);
                    format!("http://{ip}:5000")
                });
            (id, base)
        })
        .collect()
}

/// swarm.yml less its services' `ports:` blocks (see swarm.test.yml and gateway.test.yml for why); everything else
/// is deployed as is.
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
