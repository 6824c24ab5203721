//! Starts the release worker binary (or its gateway) with the fast fake CLI, on a free port, and stops it afterwards.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Binaries built next to this one (`target/release`); `BENCH_UNIFIED_WORKER` names another build of the worker
/// (a revision's, to measure before and after a change with the same benchmark).
pub fn bin_path(name: &str) -> PathBuf {
    if name == "unified-worker"
        && let Some(bin) = std::env::var_os("BENCH_UNIFIED_WORKER")
    {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("target dir").join(name)
}

/// `unified-worker <args>` on `port` (0 = any), with the bench's environment and `env` on top of it.
pub fn command(args: &[&str], port: u16, env: &[(&str, &str)]) -> Command {
    command_for(&bin_path("unified-worker"), args, port, env)
}

/// `command` for another build of the worker (`bench/run.sh compare`).
fn command_for(bin: &Path, args: &[&str], port: u16, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,unified_worker=info")
        .env("EXIT_AFTER_JOB", "false")
        .env("CLAUDE_BIN", bin_path("fake-claude"))
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-bench-key")
        .env("WORKSPACE_DIR", std::env::temp_dir().join("unified-worker-bench"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

pub struct Worker {
    child: Child,
    pub port: u16,
}

impl Worker {
    /// Spawns and waits for the `listening` log line that carries the port.
    pub async fn spawn() -> Worker {
        Self::spawn_with(&[], &[]).await
    }

    /// `unified-worker <args>` with extra variables (the gateway is `&["gateway"]`), on a free port.
    pub async fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Worker {
        Self::spawn_bin_with(&bin_path("unified-worker"), args, env).await
    }

    /// `spawn` for another build of the worker (`bench/run.sh compare`).
    pub async fn spawn_bin(bin: &Path) -> Worker {
        Self::spawn_bin_with(bin, &[], &[]).await
    }

    async fn spawn_bin_with(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut child = command_for(bin, args, 0, env)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the worker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to its end, so that a chatty process never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the worker did not start");
        Worker { child, port }
    }

    /// Spawns on a port chosen here and polls `/health` as fast as it can: start-up is measured from the outside.
    pub async fn spawn_and_poll_health() -> Worker {
        Self::spawn_and_poll_health_with(&[], &[]).await
    }

    pub async fn spawn_and_poll_health_with(args: &[&str], env: &[(&str, &str)]) -> Worker {
        let port = free_port();
        let child = command(args, port, env)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the worker");
        // Owned by `Worker` from here on, so that its Drop reaps the process on every path.
        let worker = Worker { child, port };
        wait_health(port, Duration::from_micros(200), Duration::from_secs(20)).await;
        worker
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /health` every `every` until it answers 200; returns when it did.
pub async fn wait_health(port: u16, every: Duration, patience: Duration) -> Instant {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(resp) = client.get(format!("http://127.0.0.1:{port}/health")).send().await
            && resp.status() == 200
        {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "nothing answered /health on port {port}");
        tokio::time::sleep(every).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
