//! The fleet tests' access to the engine: whether to run at all, the image, the shared folder with the fake CLI,
//! and the engine queries (containers, events, exec, processes) they watch through bollard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ExecConfig, SwarmInitRequest};
use bollard::query_parameters::{ListContainersOptions, TopOptions};
use futures_util::StreamExt;
use tempfile::TempDir;

/// Upper bound for anything the engine must do (start a replica, pass a healthcheck); a failure, never a pacing.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The tests share one engine, its ports and its two cores: they run one at a time.
static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Fleet {
    pub docker: Docker,
    pub image: String,
    /// The store's image (`STORE_IMAGE`), for the stacks whose gateways keep fleet state in it.
    pub store_image: String,
    /// Bind-mounted at /fleet in the containers: `fake-claude` and the `control` folder it shares with the test.
    pub dir: TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Fleet {
    /// The engine and the image, or `None` (after saying why) when they are missing and not required.
    pub async fn connect(test: &str) -> Option<Fleet> {
        let turn = ENGINE.lock().await;
        let required = crate::required::required();
        let switch = crate::required::SWITCH;
        let skip = |why: String| {
            assert!(!required, "{switch} but {why}");
            eprintln!("fleet test {test} skipped: {why} (with {switch} this is a failure)");
        };
        let docker = match Docker::connect_with_local_defaults() {
            Ok(d) => d,
            Err(e) => {
                skip(format!("no Docker engine: {e}"));
                return None;
            }
        };
        let docker = match docker.negotiate_version().await {
            Ok(d) => d,
            Err(e) => {
                skip(format!("no Docker engine answers: {e}"));
                return None;
            }
        };
        let image = std::env::var("FLEET_IMAGE").unwrap_or_else(|_| "unified-worker:latest".into());
        if let Err(e) = docker.inspect_image(&image).await {
            skip(format!(
                "image {image} is not built ({e}); build it from the Dockerfile, name it in FLEET_IMAGE"
            ));
            return None;
        }
        let store_image = std::env::var("STORE_IMAGE").unwrap_or_else(|_| "unified-worker-store:latest".into());
        if let Err(e) = docker.inspect_image(&store_image).await {
            skip(format!(
                "image {store_image} is not built ({e}); build it from deploy/store, name it in STORE_IMAGE"
            ));
            return None;
        }
        let dir = tempfile::Builder::new().prefix("fleet-").tempdir().expect("fleet dir");
        let fake = dir.path().join("fake-claude");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/fake-claude"),
            &fake,
        )
        .expect("copy fake");
        std::fs::create_dir(dir.path().join("control")).expect("control dir");
        // The worker runs as its own non-root user and must read the fake and write to the control folder.
        chmod(dir.path(), 0o755);
        chmod(&fake, 0o755);
        chmod(&dir.path().join("control"), 0o777);
        Some(Fleet {
            docker,
            image,
            store_image,
            dir,
            _turn: turn,
        })
    }

    pub fn dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    pub fn control(&self, name: &str) -> PathBuf {
        self.dir.path().join("control").join(name)
    }

    /// Lets every fake CLI waiting on `name` finish.
    pub fn release(&self, name: &str) {
        std::fs::write(self.control(name), "go\n").expect("release file");
    }

    /// Waits until a fake CLI has written `name` in full and returns it.
    pub async fn wait_for_control(&self, name: &str) -> String {
        let path = self.control(name);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && text.ends_with('\n')
            {
                return text;
            }
            assert!(Instant::now() < deadline, "the fake CLI never wrote {name}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Makes this engine a one-node swarm unless it is one already.
    pub async fn ensure_swarm(&self) {
        let info = self.docker.info().await.expect("docker info");
        let state = info.swarm.and_then(|s| s.local_node_state).map(|s| s.to_string());
        if state.as_deref() != Some("active") {
            let request = SwarmInitRequest {
                listen_addr: Some("127.0.0.1:2377".into()),
                advertise_addr: Some("127.0.0.1".into()),
                ..Default::default()
            };
            self.docker.init_swarm(request).await.expect("docker swarm init");
        }
    }

    /// Running containers carrying `label` (`key=value`).
    pub async fn containers(&self, label: &str) -> Vec<String> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let options = ListContainersOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .expect("list containers");
        list.into_iter().filter_map(|c| c.id).collect()
    }

    /// The processes of a container as (user, state, command line), from the engine's view of it.
    pub async fn processes(&self, container: &str) -> Vec<(String, String, String)> {
        let options = TopOptions {
            // The engine needs the PID column to pick the container's processes out of the host's.
            ps_args: "-o pid,user,stat,args".into(),
        };
        let top = self.docker.top_processes(container, Some(options)).await.expect("top");
        top.processes
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let mut p = p.into_iter().skip(1);
                let mut next = || p.next().unwrap_or_default();
                (next(), next(), next())
            })
            .collect()
    }

    /// Runs `cmd` in the container and returns its exit code.
    pub async fn exec(&self, container: &str, cmd: &[&str]) -> Option<i64> {
        self.exec_output(container, cmd).await.map(|(code, _)| code)
    }

    /// Runs `cmd` in the container and returns its exit code and what it printed.
    pub async fn exec_output(&self, container: &str, cmd: &[&str]) -> Option<(i64, String)> {
        let config = ExecConfig {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self.docker.create_exec(container, config).await.ok()?;
        let mut text = String::new();
        if let Ok(bollard::exec::StartExecResults::Attached { mut output, .. }) =
            self.docker.start_exec(&exec.id, None).await
        {
            while let Some(Ok(chunk)) = output.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        Some((self.docker.inspect_exec(&exec.id).await.ok()?.exit_code?, text))
    }

    /// The zombies in a container, read from its own /proc: the engine's process list comes from the cgroup, which
    /// a process leaves when it exits, so zombies never show there.
    pub async fn zombies(&self, container: &str) -> Vec<String> {
        let scan = r#"for f in /proc/[0-9]*/stat; do read -r line < "$f" && echo "$line"; done"#;
        let (code, text) = self.exec_output(container, &["sh", "-c", scan]).await.expect("exec");
        assert_eq!(code, 0, "{text}");
        // `pid (comm) state …`: the state follows the last `)`.
        text.lines()
            .filter(|l| l.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
            .map(str::to_string)
            .collect()
    }

    /// The environment a container was created with, as `docker inspect` shows it.
    pub async fn inspected_env(&self, container: &str) -> Vec<String> {
        let inspect = self.docker.inspect_container(container, None).await.expect("inspect");
        inspect.config.and_then(|c| c.env).unwrap_or_default()
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs a command line tool (the compose and stack front ends have no API) and insists that it succeeds.
pub fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A canary credentials object: it must reach the CLI's credentials file and nowhere else.
pub fn canary_credentials() -> (String, String) {
    let canary = format!("sk-ant-oat01-fleetcanary{}", uuid_like());
    let json =
        format!(r#"{{"claudeAiOauth":{{"accessToken":"{canary}","refreshToken":"r","expiresAt":4102444800000}}}}"#);
    (canary, json)
}

/// With the broker on, credentials given to the worker as a `claudeAiOauth` object whose token outlives the job
/// reach the fake CLI of job `tag` only as the broker's placeholder: no credentials file, no token in its
/// environment.
pub async fn assert_brokered_credentials(fleet: &Fleet, tag: &str, canary: &str) {
    let file = fleet.wait_for_control(&format!("creds-{tag}")).await;
    assert!(!file.contains(canary), "a credentials file holds the token: {file}");
    let env = fleet.wait_for_control(&format!("env-{tag}")).await;
    assert!(env.contains("CLAUDE_CODE_OAUTH_TOKEN=uwb-"), "{env}");
    assert!(!env.contains(canary), "the CLI's environment holds the canary");
}

pub fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// "Now" as the engine's event filter takes it: the events stream is only requested when first polled, so a test
/// that subscribes before acting asks for everything since then.
pub fn events_since_now() -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{}.{:09}", now.as_secs(), now.subsec_nanos()))
}
