//! `unified-worker exec` answering a job's permission questions (docs/approvals.md): typed at a real terminal, read as lines
//! next to `--json`, given automatically, refused when nobody could answer, and a late answer (409) taken in stride.
//! The worker side is a stand-in (`support/approval_server.rs`) speaking the wire contract.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

use crate::support::PATIENCE;

use crate::support::{
    approval_server::{ApprovalServer, REQUEST_ID},
    pty::PtyChild,
};

fn exec_command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_unified-worker"));
    command
        .arg("exec")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .kill_on_drop(true);
    command
}

/// `exec` on pipes, its output collected as it comes.
struct Piped {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Piped {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Piped {
        let mut child = exec_command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start exec");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipes: [(Box<dyn AsyncRead + Send + Unpin>, _); 2] = [
            (Box::new(child.stdout.take().expect("stdout")), stdout.clone()),
            (Box::new(child.stderr.take().expect("stderr")), stderr.clone()),
        ];
        let readers = pipes
            .into_iter()
            .map(|(pipe, sink)| {
                tokio::spawn(async move {
                    let mut lines = BufReader::new(pipe).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let mut sink = sink.lock().unwrap();
                        sink.push_str(&line);
                        sink.push('\n');
                    }
                })
            })
            .collect();
        Piped {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    async fn wait_for_stdout(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = self.stdout.lock().unwrap().clone();
            if out.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "exec never printed {needle:?}:\n{out}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Closes stdin, waits for the exit and the rest of the output: (exit code, stdout, stderr).
    async fn finish(mut self) -> (i32, String, String) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exec hung")
            .expect("wait");
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), out, err)
    }
}

fn events(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

#[tokio::test]
async fn a_person_at_the_terminal_answers_the_question() {
    let server = ApprovalServer::start(200);
    let mut term = PtyChild::spawn(exec_command(
        &[
            "--url",
            &server.base,
            "--provider",
            "copilot",
            "--approvals",
            "write hello",
        ],
        &[("NO_COLOR", "1")],
    ));

    term.wait_for("answer 1-3 (number or option id): ").await;
    let shown = term.output();
    assert!(shown.contains("? permission: Write hello.txt (edit)"), "{shown}");
    assert!(
        shown.contains("diff: /w/hello.txt (+1 -0)") && shown.contains("+ hi"),
        "{shown}"
    );
    assert!(
        shown.contains("1) Allow once [allow_once]") && shown.contains("3) Reject [reject_once]"),
        "{shown}"
    );
    assert_eq!(server.executed()[0]["approvals"]["mode"], "client");

    term.type_line("9");
    term.wait_for("\"9\" is not one of the options").await;
    term.wait_for_nth("answer 1-3", 1).await;
    term.type_line("2");

    let answer = server.answer().await;
    assert_eq!(answer.body["optionId"], "allow_always");
    assert_eq!(answer.request_id, REQUEST_ID);
    assert_eq!(Some(answer.job_id.as_str()), server.executed()[0]["jobId"].as_str());
    assert_eq!(answer.authorization, None);
    assert_eq!(term.exit_code().await, 0, "{}", term.output());
    term.wait_for("✓ completed in 1.2s").await;
    assert!(
        term.output()
            .contains("✓ allowed \"Write hello.txt\": Always allow (by client)"),
        "{}",
        term.output()
    );
    assert_eq!(server.answers().len(), 1);
}

#[tokio::test]
async fn a_question_the_worker_settles_first_is_no_longer_asked() {
    let server = ApprovalServer::start(200);
    let mut term = PtyChild::spawn(exec_command(
        &["--url", &server.base, "--approvals", "write hello"],
        &[("NO_COLOR", "1")],
    ));
    term.wait_for("answer 1-3").await;

    server.resolve_by_timeout();
    term.wait_for("no longer asking: \"Write hello.txt\" was decided by timeout")
        .await;
    assert_eq!(term.exit_code().await, 0, "{}", term.output());
    term.wait_for("✗ rejected \"Write hello.txt\": Reject (by timeout)")
        .await;
    assert!(server.answers().is_empty());
}

#[tokio::test]
async fn json_with_approve_all_answers_allow_once_without_a_terminal() {
    let server = ApprovalServer::start(200);
    let token = "test-token-0123";
    let (code, out, err) = Piped::start(
        &[
            "--url",
            &server.base,
            "--json",
            "--approve-all",
            "--approval-timeout",
            "60",
            "go",
        ],
        &[("WORKER_API_TOKEN", token)],
    )
    .finish()
    .await;

    assert_eq!(code, 0, "{out}\n{err}");
    let events = events(&out);
    assert_eq!(
        types(&events),
        ["connected", "permission_request", "permission_resolved", "completed"]
    );
    assert_eq!(events[2]["optionId"], "allow_once");
    let answer = server.answer().await;
    assert_eq!(answer.body, serde_json::json!({"optionId": "allow_once"}));
    assert_eq!(answer.authorization, Some(format!("Bearer {token}")));
    assert_eq!(
        server.executed()[0]["approvals"],
        serde_json::json!({"mode": "client", "timeoutSeconds": 60})
    );
}

#[tokio::test]
async fn json_answers_are_read_from_stdin_as_option_ids_or_objects() {
    let server = ApprovalServer::start(200);
    let mut exec = Piped::start(&["--url", &server.base, "--json", "--approvals", "go"], &[]);
    exec.wait_for_stdout("\"permission_request\"").await;
    exec.write_line("no-such-option").await;
    exec.write_line("reject_once").await;
    let (code, out, err) = exec.finish().await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("\"no-such-option\" is not an option of \"Write hello.txt\""),
        "{err}"
    );
    assert_eq!(server.answers().len(), 1);
    assert_eq!(server.answer().await.body["optionId"], "reject_once");
    assert_eq!(events(&out)[2]["optionId"], "reject_once");

    // An answer given before the question is asked waits for it.
    let server = ApprovalServer::start(200);
    let mut exec = Piped::start(&["--url", &server.base, "--json", "--approvals", "go"], &[]);
    exec.write_line(&format!(r#"{{"requestId":"{REQUEST_ID}","optionId":"allow_once"}}"#))
        .await;
    let (code, out, err) = exec.finish().await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(server.answer().await.body["optionId"], "allow_once");
}

#[tokio::test]
async fn a_run_nobody_could_answer_is_refused_at_the_start() {
    let server = ApprovalServer::start(200);
    let (code, out, err) = Piped::start(&["--url", &server.base, "--approvals", "go"], &[])
        .finish()
        .await;
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("not a terminal") && err.contains("--approve-all") && err.contains("--json"),
        "{err}"
    );

    // With --json, stdin carries the answers, so it cannot carry the prompt too.
    let (code, _, err) = Piped::start(&["--url", &server.base, "--json", "--approvals"], &[])
        .finish()
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("give the prompt as an argument"), "{err}");
    assert!(server.executed().is_empty(), "nothing was started");
}

#[tokio::test]
async fn an_answer_that_comes_too_late_is_reported_and_the_job_goes_on() {
    let server = ApprovalServer::start(409);
    let (code, out, err) = Piped::start(&["--url", &server.base, "--approve-all", "go"], &[])
        .finish()
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("answering \"Write hello.txt\": Allow once (--approve-all)"),
        "{err}"
    );
    assert!(
        err.contains("\"Write hello.txt\" was already answered elsewhere (409); going on"),
        "{err}"
    );
    assert!(
        out.contains("✗ rejected \"Write hello.txt\": Reject (by client)"),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap_or_default().starts_with("✓ completed"),
        "{out}"
    );
}
