//! Test support: the worker binary spawned on port 0, an SSE client, scripted fake CLIs.

#![allow(dead_code)]

pub mod approval_server;
pub mod cutting_proxy;
pub mod fake_github;
pub mod fleet;
pub mod git_server;
pub mod http;
pub mod mock_anthropic;
pub mod mock_chat;
pub mod mock_gemini;
pub mod mock_openai;
pub mod mock_server;
pub mod pty;
pub mod recorder;
pub mod redis;
pub mod reply;
pub mod required;
pub mod sse;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

pub use required::required;
use serde_json::Value;
pub use sse::SseStream;
use tempfile::TempDir;

/// A safety net against a hung test, never a way to wait for something to happen.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub struct TestWorker {
    pub base: String,
    pub port: u16,
    pub workspace_dir: PathBuf,
    pub home: PathBuf,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    _dirs: Vec<TempDir>,
}

/// Variables every test worker gets; a test's own variables override them.
fn base_env(home: &Path, workspace: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), home.display().to_string()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("LOG_FORMAT".into(), "json".into()),
        (
            "RUST_LOG".into(),
            "debug,actix_server=warn,actix_http=warn,h2=warn,hyper=warn,reqwest=warn".into(),
        ),
        ("WORKSPACE_DIR".into(), workspace.display().to_string()),
        ("LINGER_SECONDS".into(), "30".into()),
        ("KILL_GRACE_SECONDS".into(), "2".into()),
        ("ANTHROPIC_API_KEY".into(), "sk-ant-api03-test-key".into()),
        // Proves nothing leaves the machine: any connection not to loopback fails.
        ("HTTPS_PROXY".into(), "http://127.0.0.1:9".into()),
        ("HTTP_PROXY".into(), "http://127.0.0.1:9".into()),
        ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
    ];
    if let Ok(user) = std::env::var("USER") {
        env.push(("USER".into(), user));
    }
    env
}

impl TestWorker {
    pub fn spawn(env: &[(&str, &str)]) -> TestWorker {
        Self::spawn_with_args(&[], env)
    }

    /// The binary with arguments (`gateway`), or none for the worker.
    pub fn spawn_with_args(args: &[&str], env: &[(&str, &str)]) -> TestWorker {
        let home = TempDir::new().expect("home");
        let workspace = TempDir::new().expect("workspace");
        let mut vars = base_env(home.path(), workspace.path());
        for (k, v) in env {
            vars.retain(|(key, _)| key != k);
            vars.push((k.to_string(), v.to_string()));
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_unified-worker"))
            .args(args)
            .env_clear()
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the worker");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = logs.clone();
            let port_tx = port_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["message"] == "listening"
                        && let Some(port) = v["port"].as_u64()
                    {
                        let _ = port_tx.send(port as u16);
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let port = match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("worker did not start:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        TestWorker {
            base: format!("http://127.0.0.1:{port}"),
            port,
            workspace_dir: workspace.path().to_path_buf(),
            home: home.path().to_path_buf(),
            child,
            logs,
            _dirs: vec![home, workspace],
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits for the process to exit by itself.
    pub async fn exit_status(&mut self) -> ExitStatus {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "worker did not exit:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }

    pub async fn post_execute(&self, body: &Value) -> reqwest::Response {
        client()
            .post(self.url("/execute"))
            .json(body)
            .send()
            .await
            .expect("POST /execute")
    }

    /// Starts a job and returns its stream, asserting it was accepted.
    pub async fn execute(&self, body: &Value) -> SseStream {
        let resp = self.post_execute(body).await;
        let status = resp.status();
        if status != 200 {
            panic!("expected 200, got {status}: {}", resp.text().await.unwrap_or_default());
        }
        SseStream::new(resp)
    }

    pub async fn status(&self) -> Value {
        client()
            .get(self.url("/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// Waits until `/status` reports `phase` (idle, busy, draining).
    pub async fn wait_for_status(&self, phase: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while self.status().await["status"] != phase {
            assert!(std::time::Instant::now() < deadline, "the worker never became {phase}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn cancel(&self) -> reqwest::Response {
        client()
            .post(self.url("/cancel"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cancel: {e}\n{}", self.logs()))
    }

    pub async fn events_after(&self, last_event_id: Option<u64>) -> reqwest::Response {
        let mut req = client().get(self.url("/events"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        req.send().await.expect("GET /events")
    }

    /// `GET /jobs/{jobId}/events` with `Last-Event-ID`.
    pub async fn job_events_after(&self, job_id: &str, last_event_id: u64) -> reqwest::Response {
        client()
            .get(self.url(&format!("/jobs/{job_id}/events")))
            .header("Last-Event-ID", last_event_id.to_string())
            .send()
            .await
            .expect("GET /jobs/{jobId}/events")
    }

    /// A GET answered with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = client().get(self.url(path)).send().await.expect("GET");
        resp.json().await.expect("a JSON answer")
    }
}

impl Drop for TestWorker {
    /// Ends the worker and whatever it runs. A test that ends (or fails) while a job is held leaves the job's CLI
    /// in a process group of its own, which killing the worker alone would orphan: a gated fake CLI would wait for
    /// its release file forever. The worker is stopped first so that it starts nothing while its children go.
    fn drop(&mut self) {
        // Once reaped, its pid may be another process's.
        if let Ok(None) = self.child.try_wait() {
            let pid = self.pid();
            // SAFETY: a signal to our own child process, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGSTOP);
            }
            for child in processes(|_, stat| stat.ppid == pid) {
                kill_with_group(child);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/proc/<pid>/stat` says about a process that the helpers below need.
struct Stat {
    ppid: i32,
    zombie: bool,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it do not.
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat {
        ppid,
        zombie: state == "Z",
    })
}

/// The live processes other than this one for which `matches` holds.
fn processes(matches: impl Fn(i32, &Stat) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| stat(pid).is_some_and(|s| !s.zombie && matches(pid, &s)))
        .collect()
}

/// Kills `pid` and, when it leads a process group of its own (as the worker starts every CLI), the whole group:
/// a CLI's own children (a gated script's `sleep`, an MCP server) go with it. Never this test process's group.
fn kill_with_group(pid: i32) {
    // SAFETY: plain syscalls on process ids; at worst they fail with ESRCH.
    unsafe {
        let group = libc::getpgid(pid);
        if group == pid && group != libc::getpgrp() {
            libc::kill(-group, libc::SIGKILL);
        } else {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

pub fn job(prompt: &str) -> Value {
    serde_json::json!({ "userRequest": prompt, "codingAssistantProvider": "claude-code" })
}

/// A fake CLI: a shell script in its own temp folder. Scripts wait for files or signals, never for time.
pub struct FakeCli {
    pub path: PathBuf,
    pub dir: TempDir,
}

impl FakeCli {
    pub fn new(script: &str) -> FakeCli {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new().expect("fake cli dir");
        let path = dir.path().join("fake-cli");
        // `--version` is what the worker's health probe runs; it must not run the scenario.
        let body = format!(
            "#!/bin/sh\nDIR='{}'\nif [ \"$1\" = --version ]; then echo 'fake-cli 1.0'; exit 0; fi\n{script}\n",
            dir.path().display()
        );
        std::fs::write(&path, body).expect("write fake cli");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeCli { path, dir }
    }

    pub fn bin(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits until the script has written `name` (its way of saying "I got here").
    pub async fn wait_for_file(&self, name: &str) -> String {
        let path = self.file(name);
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && text.ends_with('\n')
            {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "fake CLI never wrote {name}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn release(&self, name: &str) {
        std::fs::write(self.file(name), "go\n").expect("release file");
    }
}

impl Drop for FakeCli {
    /// Ends every process still running this script, wherever its worker went: one held at a gate waits for a file
    /// in a folder that is about to go, forever, and a worker killed mid-job (as some tests do on purpose) no
    /// longer ends it.
    fn drop(&mut self) {
        let script = self.path.as_os_str().as_encoded_bytes().to_vec();
        let runs_script = |pid: i32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == script.as_slice()))
        };
        for pid in processes(|pid, _| runs_script(pid)) {
            kill_with_group(pid);
        }
    }
}

pub const INIT_LINE: &str = r#"{"type":"system","subtype":"init","session_id":"fake-session"}"#;
pub const RESULT_LINE: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","num_turns":1,"duration_ms":3,"total_cost_usd":0.5,"session_id":"fake-session","usage":{"input_tokens":1,"output_tokens":1}}"#;

/// Script fragment: block until the test creates `$DIR/<name>`.
pub fn wait_for(name: &str) -> String {
    format!("while [ ! -f \"$DIR/{name}\" ]; do sleep 0.02; done")
}

/// Whether a process is gone (or only a zombie waiting for a reaper that is not ours).
pub fn process_is_dead(pid: i32) -> bool {
    stat(pid).is_none_or(|s| s.zombie)
}

pub async fn wait_until_dead(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if process_is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The pinned version `name` (`COPILOT_VERSION`, …) from `scripts/cli-versions.env`, the file the installer and
/// the image read too.
pub fn pinned(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cli-versions.env");
    let pins = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    pins.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {path}"))
        .trim()
        .to_string()
}

/// A CLI's path: `var` as `scripts/test.sh` sets it from `scripts/install-clis.sh`, or else where that script puts
/// it, `<cache>/<folder>-<pinned version>/<inside>`.
fn installed(var: &str, folder: &str, version: &str, inside: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/unified-worker/{folder}-{}/{inside}", pinned(version))
    })
}

pub fn claude_bin() -> String {
    installed("CLAUDE_BIN", "claude", "CLAUDE_CODE_VERSION", "claude")
}

pub fn copilot_bin() -> String {
    installed(
        "COPILOT_BIN",
        "copilot",
        "COPILOT_VERSION",
        "node_modules/@github/copilot-linux-x64/copilot",
    )
}

/// Claude Code's ACP adapter.
pub fn claude_acp_bin() -> String {
    installed(
        "CLAUDE_ACP_BIN",
        "claude-agent-acp",
        "CLAUDE_ACP_VERSION",
        "node_modules/.bin/claude-agent-acp",
    )
}

/// Codex's ACP adapter (a native binary that embeds Codex).
pub fn codex_acp_bin() -> String {
    installed(
        "CODEX_ACP_BIN",
        "codex-acp",
        "CODEX_ACP_VERSION",
        "node_modules/@zed-industries/codex-acp-linux-x64/bin/codex-acp",
    )
}

pub fn codex_bin() -> String {
    installed(
        "CODEX_BIN",
        "codex",
        "CODEX_VERSION",
        "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
    )
}

pub fn gemini_bin() -> String {
    installed("GEMINI_BIN", "gemini", "GEMINI_VERSION", "node_modules/.bin/gemini")
}

pub fn opencode_bin() -> String {
    installed(
        "OPENCODE_BIN",
        "opencode",
        "OPENCODE_VERSION",
        "node_modules/opencode-linux-x64/bin/opencode",
    )
}

/// Every string inside `value`, one per line: a request's conversation flattened, to look for what an earlier
/// turn said in it.
pub fn all_text(value: &Value) -> String {
    fn collect(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            Value::Object(map) => map.values().for_each(|item| collect(item, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    collect(value, &mut out);
    out
}

/// The texts of every message the mock API received in `request` (Anthropic's and the chat API's `messages`).
pub fn conversation_text(request: &Value) -> String {
    all_text(&request["messages"])
}

/// The resume story's last model request, flattened: it holds job 1's prompt (with `code_word`) and answer
/// ("Noted.") before job 2's own question.
pub fn assert_the_conversation_goes_on(conversation: &str, code_word: &str) {
    assert!(
        conversation.contains(code_word),
        "job 1's prompt is not in job 2's request"
    );
    assert!(
        conversation.contains("Noted."),
        "job 1's answer is not in job 2's request"
    );
    assert!(
        conversation.contains("Which code word"),
        "job 2's own prompt is missing"
    );
}

/// Runs `body` resuming a session nobody has and returns its terminal event, asserting that the job ends once,
/// as `provider_failed`, with the CLI's reason (`says`) in its message.
pub async fn resume_unknown_session(worker: &TestWorker, mut body: Value, session_id: &str, says: &str) -> Value {
    body["resumeSessionId"] = Value::String(session_id.into());
    let events = worker.execute(&body).await.collect().await;
    sse::assert_well_formed(&events, 0);
    let end = events.last().unwrap().data.clone();
    assert_eq!(end["code"], "provider_failed", "{end}");
    let message = end["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    end
}

/// Starts a job over a raw connection, reads until `marker` has arrived, then resets the connection (SO_LINGER 0),
/// so the worker's next write fails at once, as it would for a client that crashed.
pub async fn execute_then_reset(port: u16, body: &Value, marker: &str) {
    use std::{
        io::{Read, Write},
        os::fd::AsRawFd,
    };
    let body = body.to_string();
    let marker = marker.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let request = format!(
            "POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).expect("send");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(&marker) {
            let n = conn.read(&mut buf).expect("read");
            assert!(n > 0, "stream ended before {marker:?}");
            seen.extend_from_slice(&buf[..n]);
        }
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt on a socket we own, with a correctly sized value.
        unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(conn);
    })
    .await
    .expect("raw client");
}
