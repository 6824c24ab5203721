//! `unified-worker exec` against real workers: rendering, JSON output, busy workers, dropped streams, Ctrl-C,
//! exit codes.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{
    FakeCli, INIT_LINE, PATIENCE, RESULT_LINE, TestWorker,
    cutting_proxy::CuttingProxy,
    mock_anthropic::{MockAnthropic, Reply},
    wait_for,
};

/// A running `exec` with its output collected as it comes.
struct Exec {
    child: tokio::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// Open when started with `start_talking`: what the person types.
    stdin: Option<tokio::process::ChildStdin>,
}

impl Exec {
    fn start(args: &[&str]) -> Exec {
        Self::spawn(args, Stdio::null())
    }

    /// With stdin kept open, for `--chat`.
    fn start_talking(args: &[&str]) -> Exec {
        let mut exec = Self::spawn(args, Stdio::piped());
        exec.stdin = exec.child.stdin.take();
        exec
    }

    async fn type_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("started with start_talking");
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    fn spawn(args: &[&str], stdin: Stdio) -> Exec {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_unified-worker"))
            .arg("exec")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start exec");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for (pipe, sink) in [
            (
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                stdout.clone(),
            ),
            (Box::new(child.stderr.take().expect("stderr")), stderr.clone()),
        ] {
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut sink = sink.lock().unwrap();
                    sink.push_str(&line);
                    sink.push('\n');
                }
            }));
        }
        Exec {
            child,
            stdout,
            stderr,
            readers,
            stdin: None,
        }
    }

    async fn wait_for_output(&self, needle: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let (out, err) = (self.stdout.lock().unwrap().clone(), self.stderr.lock().unwrap().clone());
            if out.contains(needle) || err.contains(needle) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "exec never printed {needle:?}:\n{out}\n{err}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn finish(mut self) -> (i32, String, String) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exec hung")
            .expect("wait");
        // The readers finish once the pipes close.
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), out, err)
    }

    fn interrupt(&self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGINT);
            }
        }
    }
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect()
}

fn assert_each_event_once(events: &[Value]) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64, "gap or duplicate at {i}: {events:#?}");
    }
    assert!(matches!(
        events.last().and_then(|e| e["type"].as_str()),
        Some("completed" | "error")
    ));
}

#[tokio::test]
async fn exec_renders_a_real_claude_job_for_a_person_and_as_json_lines() {
    let reply = Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hi\n".into(),
        final_text: "I wrote hello.txt.".into(),
    };
    let mock = MockAnthropic::start(reply.clone());
    let worker = crate::claude_code::claude_worker(&mock, &[("EXIT_AFTER_JOB", "false")]);

    let (code, out, err) = Exec::start(&["--url", &worker.base, "Create hello.txt"]).finish().await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("→ Write ") && out.contains("hello.txt"), "{out}");
    assert!(out.contains("I wrote hello.txt."), "{out}");
    let summary = out.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("✓ completed in ") && summary.contains(" · 2 turns · $"),
        "{summary}"
    );
    assert!(!out.contains('\x1b'), "no colour when stdout is not a terminal");

    mock.set_reply(reply);
    let (code, out, _) = Exec::start(&["--url", &worker.base, "--json", "Create hello.txt"])
        .finish()
        .await;
    assert_eq!(code, 0);
    let events = json_lines(&out);
    assert_each_event_once(&events);
    assert_eq!(events.last().unwrap()["type"], "completed");
    assert!(events.iter().any(|e| e["type"] == "tool_use" && e["name"] == "Write"));
}

/// `--chat --json`: messages are lines on stdin, SIGINT interrupts the running turn, end of input closes.
#[tokio::test]
async fn exec_chat_sends_each_line_as_a_message_interrupts_on_ctrl_c_and_closes_at_the_end_of_input() {
    let mock = MockAnthropic::start(Reply::Text("First answer.".into()));
    let worker = crate::claude_code::claude_worker(&mock, &[]);
    let mut exec = Exec::start_talking(&["--url", &worker.base, "--chat", "--json", "Hello."]);
    exec.wait_for_output("First answer.").await;
    exec.wait_for_output("\"turn_completed\"").await;

    mock.set_reply(Reply::Stall);
    let calls = mock.requests().len();
    exec.type_line("Think about it for a long while.").await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while mock.requests().len() == calls {
        assert!(std::time::Instant::now() < deadline, "turn 2 never reached the model");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    mock.set_reply(Reply::Text("Third answer.".into()));
    exec.interrupt();
    exec.wait_for_output("\"interrupted\"").await;
    exec.type_line("Then just answer.").await;
    exec.wait_for_output("Third answer.").await;
    drop(exec.stdin.take());

    let (code, out, err) = exec.finish().await;
    assert_eq!(code, 0, "{out}\n{err}");
    let events = json_lines(&out);
    assert_each_event_once(&events);
    let turns: Vec<(String, u64)> = events
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("turn_")))
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["turn"].as_u64().unwrap()))
        .collect();
    let expected = [
        ("turn_started", 1),
        ("turn_completed", 1),
        ("turn_started", 2),
        ("turn_failed", 2),
        ("turn_started", 3),
        ("turn_completed", 3),
    ]
    .map(|(k, n)| (k.to_string(), n));
    assert_eq!(turns, expected);
    let end = events.last().unwrap();
    assert_eq!(
        (end["type"].as_str(), end["result"].as_str()),
        (Some("completed"), Some("Third answer."))
    );
}

#[tokio::test]
async fn exec_waits_for_a_busy_worker_and_then_runs_its_job() {
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\n{}\necho '{RESULT_LINE}'",
        wait_for("release")
    ));
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("EXIT_AFTER_JOB", "false"),
        ("RETRY_AFTER_SECONDS", "1"),
    ]);
    let mut first = worker.execute(&crate::support::job("first")).await;
    first.until("session").await;

    let exec = Exec::start(&["--url", &worker.base, "--json", "second"]);
    exec.wait_for_output("worker busy; retrying on a new connection").await;
    cli.release("release");
    first.collect().await;

    let (code, out, err) = exec.finish().await;
    assert_eq!(code, 0, "{err}");
    assert_each_event_once(&json_lines(&out));
}

#[tokio::test]
async fn exec_through_a_gateway_shows_its_place_in_line_then_runs_the_job() {
    let fleet = crate::support::fleet::LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    crate::support::fleet::wait_idle_workers(&gw, 1).await;
    let mut first = gw.execute(&crate::support::fleet::named_job("first")).await;
    first.until("session").await;

    let exec = Exec::start(&["--url", &gw.base, "second"]);
    exec.wait_for_output("waiting for a worker: position 1 of 1").await;
    fleet.release("first");
    fleet.release("second");
    first.collect().await;

    let (code, _out, err) = exec.finish().await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn exec_reattaches_after_a_dropped_connection_and_prints_every_event_once() {
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\necho 'before the cut'\n{}\necho 'after the cut'\necho '{RESULT_LINE}'",
        wait_for("release")
    ));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("EXIT_AFTER_JOB", "false")]);
    let proxy = CuttingProxy::start(worker.port, "event: session").await;

    let exec = Exec::start(&["--url", &format!("http://127.0.0.1:{}", proxy.port), "--json", "go"]);
    proxy.wait_cut().await;
    cli.release("release");

    let (code, out, err) = exec.finish().await;
    assert_eq!(code, 0, "{err}");
    let events = json_lines(&out);
    assert_each_event_once(&events);
    let texts: Vec<&str> = events.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(texts, ["before the cut", "after the cut"]);
}

#[tokio::test]
async fn ctrl_c_leaves_the_job_running_unless_asked_to_cancel_it() {
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\n{}\necho '{RESULT_LINE}'",
        wait_for("release")
    ));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("EXIT_AFTER_JOB", "false")]);

    let exec = Exec::start(&["--url", &worker.base, "keep going"]);
    exec.wait_for_output("session fake-session").await;
    exec.interrupt();
    let (code, _, err) = exec.finish().await;
    assert_eq!(code, 130);
    assert!(err.contains("keeps running"), "{err}");
    assert_eq!(worker.status().await["status"], "busy");
    cli.release("release");
    crate::support::SseStream::new(worker.events_after(None).await)
        .collect()
        .await;

    std::fs::remove_file(cli.file("release")).expect("re-arm the fake");
    let exec = Exec::start(&["--url", &worker.base, "--cancel-on-exit", "stop soon"]);
    exec.wait_for_output("session fake-session").await;
    exec.interrupt();
    let (code, _, err) = exec.finish().await;
    assert_eq!(code, 130, "{err}");
    let events = crate::support::SseStream::new(worker.events_after(None).await)
        .collect()
        .await;
    assert_eq!(events.last().unwrap().data["code"], "cancelled");
}

#[test]
fn help_and_version_are_printed_and_exit_0() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_unified-worker"))
            .args(args)
            .output()
            .expect("run the binary");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("gateway") && out.contains("exec") && out.contains("healthcheck"),
        "{out}"
    );
    let (code, out) = run(&["exec", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--max-wait") && out.contains("WORKER_API_TOKEN"), "{out}");
    let (code, out) = run(&["--version"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), concat!("unified-worker ", env!("CARGO_PKG_VERSION")))
    );
    let (code, _) = run(&["no-such-command"]);
    assert_eq!(code, Some(2));
}

#[tokio::test]
async fn exit_codes_say_what_happened() {
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho 'no luck' >&2\nexit 3"));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("EXIT_AFTER_JOB", "false")]);

    let (code, out, _) = Exec::start(&["--url", &worker.base, "fail please"]).finish().await;
    assert_eq!(code, 1);
    assert!(
        out.contains("✗ provider_failed") && out.contains("(exit code 3)") && out.contains("no luck"),
        "{out}"
    );

    let (code, _, err) = Exec::start(&["--pr", "x"]).finish().await;
    assert_eq!(code, 2);
    assert!(err.contains("--push-branch"), "{err}");

    let (code, _, err) = Exec::start(&["--url", &worker.base, "--provider", "gpt", "x"])
        .finish()
        .await;
    assert_eq!(code, 2);
    assert!(err.contains("codingAssistantProvider"), "{err}");

    let (code, _, err) = Exec::start(&["--url", "http://127.0.0.1:9", "--max-wait", "0.5", "x"])
        .finish()
        .await;
    assert_eq!(code, 3);
    assert!(err.contains("no worker accepted the job"), "{err}");
}

#[tokio::test]
async fn exec_shows_the_clone_phases_and_the_changes_of_a_repo_job() {
    use crate::support::git_server::GitServer;
    let server = GitServer::start();
    server.create_repo("app", "main", &[vec![("README.md".to_string(), b"hello\n".to_vec())]]);
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\necho 'one line' > notes.txt\necho '{RESULT_LINE}'"
    ));
    let worker = crate::git::git_worker(&cli, &[]);

    let (code, out, err) = Exec::start(&["--url", &worker.base, "--repo", &server.url("app"), "take notes"])
        .finish()
        .await;

    assert_eq!(code, 0, "{out}\n{err}");
    // Not a terminal: one line per clone phase instead of a redrawn bar.
    let phases: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("clone: ")).collect();
    assert_eq!(phases.first(), Some(&"connecting"), "{out}");
    assert_eq!(phases.last(), Some(&"done"), "{out}");
    assert!(out.contains("changes: 1 file changed, +1 -0"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap_or_default()
            .contains("· 1 file changed, +1 -0"),
        "{out}"
    );
}
