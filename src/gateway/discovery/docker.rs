//! `docker:<service>` discovery: the base URLs of a Swarm service's running tasks, read through bollard on the
//! engine's socket (the gateway must run on a manager node with the socket mounted) and refreshed from the engine's
//! container events, with a slow poll as a backstop.
//!
//! Which tasks: those Swarm wants running and reports running. With a healthcheck (the worker has one) a task only
//! becomes `running` once healthy, so a published worker is one that answered `/health` at least once.
//!
//! Where a task is reached, per network of the task (the first one that yields an address wins):
//! * a swarm-scoped network (overlay): the task's address on it, from the engine's verbose view of the network
//!   (`EndpointIP`; a `/prefix` is stripped), at `port`. The ingress network is skipped: it only carries the routing
//!   mesh. That view comes from this node's share of the network, which it has when it is attached to the network —
//!   as a gateway that means to reach the workers over it must be.
//! * the host network, where a task has no address of its own: the node's address as the swarm knows it (its
//!   advertise address; `127.0.0.1` on the one-node swarm of the fleet tests) at the port the worker listens on:
//!   `PORT` from the container's own environment when the container runs on this engine (a template such as
//!   `150{{.Task.Slot}}` is only expanded there), else a literal `PORT` in the task's spec, else `port`.
//!
//! Events: an engine reports the container events of its own node only. A container of the service that starts or
//! turns healthy here makes the task list read again at once and then every [`SETTLE_EVERY`] until its task shows as
//! running; one that dies is dropped at once, before Swarm has updated its task. Tasks on other nodes are seen by the
//! poll ([`POLL`]); a worker that vanishes in between is also dropped by the gateway's own `/status` polling.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::IpAddr,
    time::{Duration, SystemTime},
};

use bollard::{
    Docker,
    errors::Error,
    models::{EventMessage, Task, TaskState},
    query_parameters::{EventsOptions, InspectNetworkOptions, ListTasksOptions},
};
use futures_util::StreamExt;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::outbound::Backoff;

/// The backstop for events that were missed (another node's tasks, an event stream that broke and reconnected).
pub const POLL: Duration = Duration::from_secs(3);
/// How often the task list is read while a container that started is not yet listed as a running task.
pub const SETTLE_EVERY: Duration = Duration::from_millis(200);
/// How long a started container is waited for at that pace; after that the poll takes over. Covers a healthcheck
/// interval of a few seconds; a `health_status: healthy` event restarts the wait anyway.
const SETTLE_FOR: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Publishes the base URLs (`http://<addr>:<port>`, sorted, deduplicated) of the Swarm service's running tasks
/// into `found` at start and whenever they change, until `stop` is cancelled. Never returns early: engine errors
/// are logged (no secrets) and retried with backoff.
pub async fn watch(service: String, port: u16, found: watch::Sender<Vec<String>>, stop: CancellationToken) {
    watch_polling_every(service, port, POLL, found, stop).await
}

/// [`watch`] with its backstop poll set to `poll`: a test that sets it to hours proves the events alone suffice.
pub async fn watch_polling_every(
    service: String,
    port: u16,
    poll: Duration,
    found: watch::Sender<Vec<String>>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
    let mut first = true;
    while !stop.is_cancelled() {
        let mut watcher = Watcher {
            service: &service,
            port,
            poll,
            found: &found,
            first: &mut first,
            backoff: &mut backoff,
            known: Known::default(),
        };
        // Raced with `stop` as a whole: an engine that does not answer must not hold up the gateway's shutdown.
        let failure = tokio::select! {
            outcome = watcher.run() => outcome.err(),
            _ = stop.cancelled() => None,
        };
        if let Some(e) = failure {
            // bollard's errors carry the engine's message and the socket's path, never a credential.
            tracing::warn!(service = %service, error = %e, "docker discovery: trying again");
        }
        let pause = backoff.delay(None);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Why a connection's worth of watching ended.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the engine failed: {0}")]
    Engine(#[from] Error),
    #[error("the engine ended its event stream")]
    EventsEnded,
}

/// One connection's worth of watching: ends with a [`Failure`] (stopping drops it).
struct Watcher<'a> {
    service: &'a str,
    port: u16,
    poll: Duration,
    found: &'a watch::Sender<Vec<String>>,
    /// The first listing is published even when it equals the sender's initial value: "the engine says none".
    first: &'a mut bool,
    backoff: &'a mut Backoff,
    known: Known,
}

/// What the engine told us that does not change while a container lives, and what events told us before Swarm did.
#[derive(Default)]
struct Known {
    /// Containers that died here; their tasks may still be listed as running for a moment.
    dead: HashSet<String>,
    /// Containers that started here and whose tasks are not yet listed as running, with when to stop waiting.
    awaited: HashMap<String, Instant>,
    /// Node id → its address.
    nodes: HashMap<String, Option<IpAddr>>,
    /// Container id → the port in its environment (`None`: not on this engine, or no usable `PORT`).
    ports: HashMap<String, Option<u16>>,
    /// The tasks of the last listing, with their addresses.
    last: Vec<(RunningTask, Option<String>)>,
}

impl Watcher<'_> {
    async fn run(&mut self) -> Result<Infallible, Failure> {
        let docker = Docker::connect_with_local_defaults()?.negotiate_version().await?;
        // Asked from before the first listing, so that nothing that happens in between is missed; the stream is
        // only requested when first polled.
        let options = EventsOptions {
            since: unix_now(),
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "label".to_string(),
                    vec![format!("com.docker.swarm.service.name={}", self.service)],
                ),
                // Healthcheck runs are container events too (exec_*): only these three change the list.
                (
                    "event".to_string(),
                    vec!["start".to_string(), "die".to_string(), "health_status".to_string()],
                ),
            ])),
            ..Default::default()
        };
        let mut events = docker.events(Some(options));
        self.refresh(&docker).await?;
        // A connection that lists tasks is a healthy one: the next failure starts the backoff afresh.
        *self.backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
        loop {
            let now = Instant::now();
            self.known.awaited.retain(|_, until| *until > now);
            let pace = if self.known.awaited.is_empty() {
                self.poll
            } else {
                SETTLE_EVERY
            };
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => self.note(event),
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(Failure::EventsEnded),
                },
                _ = tokio::time::sleep(pace) => {}
            }
            self.refresh(&docker).await?;
        }
    }

    /// Takes an event in; a death is published at once, without asking the engine.
    fn note(&mut self, event: EventMessage) {
        let Some(container) = event.actor.and_then(|a| a.id) else {
            return;
        };
        match event.action.as_deref().and_then(container_change) {
            Some(Change::Died) => {
                self.known.awaited.remove(&container);
                self.known.dead.insert(container);
                self.publish();
            }
            Some(Change::Started) => {
                self.known.awaited.insert(container, Instant::now() + SETTLE_FOR);
            }
            None => {}
        }
    }

    async fn refresh(&mut self, docker: &Docker) -> Result<(), Error> {
        let tasks = match self.list_tasks(docker).await {
            Ok(tasks) => tasks,
            // The service is not there (yet, or any more): no workers, which is an answer, not a failure.
            Err(Error::DockerResponseServerError { status_code: 404, .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let running = running_tasks(tasks);
        let listed: HashSet<&str> = running.iter().filter_map(|t| t.container.as_deref()).collect();
        self.known.awaited.retain(|c, _| !listed.contains(c.as_str()));
        // A dead container no longer listed as running will not come back: forget it, and what it told us.
        self.known.dead.retain(|c| listed.contains(c.as_str()));
        self.known.ports.retain(|c, _| listed.contains(c.as_str()));

        let mut reach = HashMap::new();
        for network in running.iter().flat_map(|t| &t.networks) {
            if !reach.contains_key(network) {
                reach.insert(network.clone(), self.network_reach(docker, network).await?);
            }
        }
        let mut last = Vec::with_capacity(running.len());
        for task in running {
            let url = self.task_url(docker, &task, &reach).await?;
            if url.is_none() {
                tracing::debug!(task = %task.id, "docker discovery: task has no address this gateway can reach");
            }
            last.push((task, url));
        }
        self.known.last = last;
        self.publish();
        Ok(())
    }

    async fn list_tasks(&self, docker: &Docker) -> Result<Vec<Task>, Error> {
        let filters = HashMap::from([
            ("service".to_string(), vec![self.service.to_string()]),
            ("desired-state".to_string(), vec!["running".to_string()]),
        ]);
        docker
            .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
            .await
    }

    async fn network_reach(&self, docker: &Docker, network: &str) -> Result<Reach, Error> {
        let options = InspectNetworkOptions {
            verbose: true,
            scope: None,
        };
        match docker.inspect_network(network, Some(options)).await {
            Ok(inspect) if inspect.driver.as_deref() == Some("host") => Ok(Reach::Host),
            Ok(inspect) if inspect.ingress == Some(true) => Ok(Reach::Nowhere),
            Ok(inspect) => Ok(Reach::Endpoints(endpoint_addresses(inspect.services.as_ref()))),
            // Removed under our feet, or not known on this node: nothing to reach through it.
            Err(Error::DockerResponseServerError { status_code: 404, .. }) => Ok(Reach::Nowhere),
            Err(e) => Err(e),
        }
    }

    async fn task_url(
        &mut self,
        docker: &Docker,
        task: &RunningTask,
        reach: &HashMap<String, Reach>,
    ) -> Result<Option<String>, Error> {
        for network in &task.networks {
            match reach.get(network) {
                Some(Reach::Endpoints(addresses)) => {
                    if let Some(ip) = addresses.get(&task.id) {
                        return Ok(Some(base_url(*ip, self.port)));
                    }
                }
                Some(Reach::Host) => {
                    let Some(ip) = self.node_address(docker, task.node.as_deref()).await? else {
                        continue;
                    };
                    let local = self.container_port(docker, task.container.as_deref()).await?;
                    let port = local.or(task.spec_port).unwrap_or(self.port);
                    return Ok(Some(base_url(ip, port)));
                }
                Some(Reach::Nowhere) | None => {}
            }
        }
        Ok(None)
    }

    async fn node_address(&mut self, docker: &Docker, node: Option<&str>) -> Result<Option<IpAddr>, Error> {
        let Some(node) = node else { return Ok(None) };
        if let Some(known) = self.known.nodes.get(node) {
            return Ok(*known);
        }
        let address = match docker.inspect_node(node).await {
            Ok(n) => n.status.and_then(|s| s.addr).and_then(|a| attachment_ip(&a)),
            Err(Error::DockerResponseServerError { status_code: 404, .. }) => None,
            Err(e) => return Err(e),
        };
        self.known.nodes.insert(node.to_string(), address);
        Ok(address)
    }

    async fn container_port(&mut self, docker: &Docker, container: Option<&str>) -> Result<Option<u16>, Error> {
        let Some(container) = container else { return Ok(None) };
        if let Some(known) = self.known.ports.get(container) {
            return Ok(*known);
        }
        let port = match docker.inspect_container(container, None).await {
            Ok(c) => c.config.and_then(|c| c.env).as_deref().and_then(port_from_env),
            // On another node: its environment cannot be read from here.
            Err(Error::DockerResponseServerError { status_code: 404, .. }) => None,
            Err(e) => return Err(e),
        };
        self.known.ports.insert(container.to_string(), port);
        Ok(port)
    }

    fn publish(&mut self) {
        let urls = base_urls(&self.known.last, &self.known.dead);
        if std::mem::take(self.first) {
            self.found.send_replace(urls);
        } else {
            self.found.send_if_modified(|current| {
                let changed = *current != urls;
                if changed {
                    *current = urls;
                }
                changed
            });
        }
    }
}

/// How the tasks on one network are reached.
enum Reach {
    /// Task id → its address on the network.
    Endpoints(HashMap<String, IpAddr>),
    /// The host's network: the node's address.
    Host,
    /// Not at all from here (ingress, or a network this node does not know).
    Nowhere,
}

/// What discovery needs of a task Swarm wants running and reports running.
#[derive(Debug, Clone, PartialEq)]
struct RunningTask {
    id: String,
    container: Option<String>,
    node: Option<String>,
    /// Network ids, in the order of the service's spec.
    networks: Vec<String>,
    /// `PORT` in the task's spec, when it is a literal port.
    spec_port: Option<u16>,
}

fn running_tasks(tasks: Vec<Task>) -> Vec<RunningTask> {
    tasks
        .into_iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .filter_map(|t| {
            let spec = t.spec.unwrap_or_default();
            let networks = spec
                .networks
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| n.target)
                .collect();
            let spec_port = spec
                .container_spec
                .and_then(|c| c.env)
                .as_deref()
                .and_then(port_from_env);
            Some(RunningTask {
                id: t.id?,
                container: t.status.and_then(|s| s.container_status).and_then(|c| c.container_id),
                node: t.node_id,
                networks,
                spec_port,
            })
        })
        .collect()
}

/// Task id → address, from a verbose network inspection's `Services` (`{"<service>": {"Tasks": [{"Name":
/// "<service>.<slot>.<task id>", "EndpointIP": "10.0.1.5"}]}}`). Every service's tasks are taken: task ids are
/// unique across the swarm, and the key may be a name where the caller gave an id.
fn endpoint_addresses(services: Option<&HashMap<String, serde_json::Value>>) -> HashMap<String, IpAddr> {
    let tasks = services
        .into_iter()
        .flat_map(|s| s.values())
        .flat_map(|service| service["Tasks"].as_array().map(|a| a.as_slice()).unwrap_or_default());
    tasks
        .filter_map(|task| {
            let id = task["Name"].as_str()?.rsplit('.').next()?;
            let ip = attachment_ip(task["EndpointIP"].as_str()?)?;
            Some((id.to_string(), ip))
        })
        .collect()
}

/// `10.0.1.5/24` or `10.0.1.5` → the address; an unspecified address reaches nothing.
fn attachment_ip(text: &str) -> Option<IpAddr> {
    let address = text.split_once('/').map_or(text, |(a, _)| a);
    address.parse().ok().filter(|ip: &IpAddr| !ip.is_unspecified())
}

/// The worker's listening port from an environment (`PORT=5001`); a template, `0` or garbage is no port.
fn port_from_env(env: &[String]) -> Option<u16> {
    env.iter()
        .rev() // the last definition wins, as in a shell
        .find_map(|var| var.strip_prefix("PORT="))
        .and_then(|port| port.parse().ok())
        .filter(|port| *port != 0)
}

fn base_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(ip) => format!("http://{ip}:{port}"),
        IpAddr::V6(ip) => format!("http://[{ip}]:{port}"),
    }
}

/// The published list: every task with an address whose container is not known dead, sorted, without repeats.
fn base_urls(tasks: &[(RunningTask, Option<String>)], dead: &HashSet<String>) -> Vec<String> {
    let mut urls: Vec<String> = tasks
        .iter()
        .filter(|(task, _)| task.container.as_ref().is_none_or(|c| !dead.contains(c)))
        .filter_map(|(_, url)| url.clone())
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

#[derive(Debug, PartialEq)]
enum Change {
    Started,
    Died,
}

/// The container events that change the list; `health_status: unhealthy` does not (Swarm will stop the task, which
/// is a `die`).
fn container_change(action: &str) -> Option<Change> {
    match action {
        "start" | "health_status: healthy" => Some(Change::Started),
        "die" => Some(Change::Died),
        _ => None,
    }
}

/// "Now" as the engine's `since` takes it.
fn unix_now() -> Option<String> {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task as the engine lists it (only the fields discovery reads).
    fn task(id: &str, state: &str, networks: &[&str], env: &[&str]) -> Task {
        serde_json::from_value(serde_json::json!({
            "ID": id,
            "NodeID": "node1",
            "DesiredState": "running",
            "Status": {"State": state, "ContainerStatus": {"ContainerID": format!("c-{id}")}},
            "Spec": {
                "ContainerSpec": {"Image": "unified-worker", "Env": env},
                "Networks": networks.iter().map(|n| serde_json::json!({"Target": n})).collect::<Vec<_>>(),
            },
        }))
        .expect("a task")
    }

    #[test]
    fn only_tasks_that_are_running_count() {
        let tasks = vec![
            task("t1", "running", &["net1"], &[]),
            task("t2", "starting", &["net1"], &[]),
            task("t3", "shutdown", &["net1"], &[]),
        ];
        let running = running_tasks(tasks);
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].id, "t1");
        assert_eq!(running[0].container.as_deref(), Some("c-t1"));
        assert_eq!(running[0].node.as_deref(), Some("node1"));
        assert_eq!(running[0].networks, vec!["net1".to_string()]);
    }

    #[test]
    fn a_task_swarm_is_stopping_does_not_count() {
        let mut stopping = task("t1", "running", &["net1"], &[]);
        stopping.desired_state = Some(TaskState::SHUTDOWN);
        assert!(running_tasks(vec![stopping]).is_empty());
    }

    #[test]
    fn a_literal_port_in_the_task_spec_is_kept_and_a_template_is_not() {
        let literal = task("t1", "running", &[], &["HOST=127.0.0.1", "PORT=15001"]);
        let template = task("t2", "running", &[], &["PORT=1500{{.Task.Slot}}"]);
        let running = running_tasks(vec![literal, template]);
        assert_eq!(running[0].spec_port, Some(15001));
        assert_eq!(running[1].spec_port, None);
    }

    #[test]
    fn attachment_addresses_lose_their_prefix() {
        assert_eq!(attachment_ip("10.0.1.5/24"), Some("10.0.1.5".parse().expect("ip")));
        assert_eq!(attachment_ip("10.0.1.5"), Some("10.0.1.5".parse().expect("ip")));
        assert_eq!(attachment_ip("fd00::5/64"), Some("fd00::5".parse().expect("ip")));
        assert_eq!(attachment_ip("0.0.0.0"), None);
        assert_eq!(attachment_ip(""), None);
        assert_eq!(attachment_ip("not-an-address/24"), None);
    }

    #[test]
    fn base_urls_bracket_ipv6() {
        assert_eq!(base_url("10.0.1.5".parse().expect("ip"), 5000), "http://10.0.1.5:5000");
        assert_eq!(base_url("fd00::5".parse().expect("ip"), 5000), "http://[fd00::5]:5000");
    }

    #[test]
    fn the_port_comes_from_the_last_port_variable() {
        let env = |vars: &[&str]| vars.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert_eq!(port_from_env(&env(&["PATH=/bin", "PORT=15001"])), Some(15001));
        assert_eq!(port_from_env(&env(&["PORT=5000", "PORT=15002"])), Some(15002));
        assert_eq!(port_from_env(&env(&["PORT=0"])), None);
        assert_eq!(port_from_env(&env(&["PORT=", "SUPPORT=1"])), None);
        assert_eq!(port_from_env(&env(&["EXPORT=15003"])), None);
        assert_eq!(port_from_env(&[]), None);
    }

    #[test]
    fn endpoint_addresses_are_keyed_by_task_id() {
        let services: HashMap<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "fleet_worker": {"VIP": "", "Tasks": [
                {"Name": "fleet_worker.1.abc", "EndpointIP": "10.0.1.5", "Info": {"Host IP": "127.0.0.1"}},
                {"Name": "fleet_worker.2.def", "EndpointIP": "10.0.1.6/24"},
                {"Name": "fleet_worker.3.ghi", "EndpointIP": ""},
            ]},
            "fleet_gateway": {"Tasks": [{"Name": "fleet_gateway.1.jkl", "EndpointIP": "10.0.1.9"}]},
            "odd": {"Tasks": "not a list"},
        }))
        .expect("services");
        let addresses = endpoint_addresses(Some(&services));
        assert_eq!(addresses.len(), 3);
        assert_eq!(addresses["abc"], "10.0.1.5".parse::<IpAddr>().expect("ip"));
        assert_eq!(addresses["def"], "10.0.1.6".parse::<IpAddr>().expect("ip"));
        assert_eq!(addresses["jkl"], "10.0.1.9".parse::<IpAddr>().expect("ip"));
        assert!(endpoint_addresses(None).is_empty());
    }

    #[test]
    fn published_urls_are_sorted_unique_and_leave_out_the_dead() {
        let running = |id: &str| RunningTask {
            id: id.to_string(),
            container: Some(format!("c-{id}")),
            node: None,
            networks: vec![],
            spec_port: None,
        };
        let tasks = vec![
            (running("t1"), Some("http://10.0.1.7:5000".to_string())),
            (running("t2"), Some("http://10.0.1.5:5000".to_string())),
            (running("t3"), Some("http://10.0.1.5:5000".to_string())),
            (running("t4"), None),
            (running("t5"), Some("http://10.0.1.6:5000".to_string())),
        ];
        let dead = HashSet::from(["c-t5".to_string()]);
        assert_eq!(
            base_urls(&tasks, &dead),
            vec!["http://10.0.1.5:5000".to_string(), "http://10.0.1.7:5000".to_string()]
        );
    }

    #[test]
    fn starts_health_and_deaths_are_the_events_that_matter() {
        assert_eq!(container_change("start"), Some(Change::Started));
        assert_eq!(container_change("health_status: healthy"), Some(Change::Started));
        assert_eq!(container_change("die"), Some(Change::Died));
        assert_eq!(container_change("health_status: unhealthy"), None);
        assert_eq!(container_change("exec_start: unified-worker healthcheck"), None);
    }
}
