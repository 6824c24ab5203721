//! The life of a job (docs/architecture.md): disconnects, cancel, timeouts, signals, draining, exit — and no process survives.

use serde_json::json;

use crate::support::{
    FakeCli, INIT_LINE, RESULT_LINE, SseStream, TestWorker, job, sse::assert_well_formed, wait_for, wait_until_dead,
};

/// A CLI that announces its session, records its pid and a TERM-ignoring grandchild's pid, then blocks.
fn stubborn_cli() -> FakeCli {
    FakeCli::new(&format!(
        "echo \"$$\" > \"$DIR/cli.pid\"\n\
         sh -c 'trap \"\" TERM; echo \"$$\" > \"$0/grandchild.pid\"; exec sleep 600' \"$DIR\" &\n\
         echo '{INIT_LINE}'\n\
         exec sleep 600"
    ))
}

async fn pids(cli: &FakeCli) -> (i32, i32) {
    let parse = |s: String| s.trim().parse::<i32>().expect("pid");
    (
        parse(cli.wait_for_file("cli.pid").await),
        parse(cli.wait_for_file("grandchild.pid").await),
    )
}

#[tokio::test]
async fn cancel_ends_the_job_and_kills_the_whole_process_group() {
    let cli = stubborn_cli();
    let mut worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("KILL_GRACE_SECONDS", "0.5")]);
    let mut stream = worker.execute(&job("wait")).await;
    stream.until("session").await;
    let (cli_pid, grandchild) = pids(&cli).await;

    let resp = worker.cancel().await;
    assert_eq!(resp.status(), 202);

    let rest = stream.collect().await;
    let end = rest.last().expect("terminal event");
    assert_eq!(end.data["code"], "cancelled");
    assert_eq!(end.data["sessionId"], "fake-session");
    assert!(wait_until_dead(cli_pid).await, "the CLI survived the cancel");
    assert!(
        wait_until_dead(grandchild).await,
        "a grandchild that ignores SIGTERM survived the cancel: {}\n{}",
        std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default(),
        worker.logs()
    );
    assert!(worker.exit_status().await.success());
}

#[tokio::test]
async fn a_client_that_disconnects_does_not_stop_the_job_and_can_read_the_rest_later() {
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\n{}\necho '{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"text\",\"text\":\"after\"}}]}}}}'\necho '{RESULT_LINE}'",
        wait_for("release")
    ));
    let mut worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin())]);
    // Gone for certain (reset): a politely closed connection can still swallow the worker's last writes, which
    // would count as delivered and let the worker exit before the replay below.
    crate::support::execute_then_reset(worker.port, &job("go"), "event: session").await;
    let last_id = 1; // connected, session

    cli.release("release");
    let mut replay = SseStream::new(worker.events_after(Some(last_id)).await);
    let rest = replay.collect().await;
    assert_well_formed(&rest, last_id + 1);
    assert_eq!(crate::support::sse::kinds(&rest), ["assistant_message", "completed"]);
    assert!(worker.exit_status().await.success(), "the worker exits 0 after the job");
}

#[tokio::test]
async fn cancel_on_disconnect_stops_the_job_when_the_client_goes() {
    let cli = stubborn_cli();
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("EXIT_AFTER_JOB", "false"),
        ("KILL_GRACE_SECONDS", "0.5"),
        // Writes are how a vanished peer is noticed; keep-alives make them happen.
        ("SSE_KEEPALIVE_SECONDS", "0.1"),
    ]);
    let mut body = job("wait");
    body["cancelOnDisconnect"] = json!(true);
    let mut stream = worker.execute(&body).await;
    stream.until("session").await;
    let (cli_pid, grandchild) = pids(&cli).await;
    drop(stream);

    worker.wait_for_status("idle").await;
    let events = SseStream::new(worker.events_after(None).await).collect().await;
    assert_eq!(events.last().unwrap().data["code"], "cancelled");
    assert!(wait_until_dead(cli_pid).await && wait_until_dead(grandchild).await);
}

#[tokio::test]
async fn idle_timeout_ends_a_silent_provider() {
    let cli = stubborn_cli();
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("IDLE_TIMEOUT_SECONDS", "0.5"),
        ("KILL_GRACE_SECONDS", "0.5"),
    ]);
    let events = worker.execute(&job("x")).await.collect().await;
    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().data["code"], "idle_timeout");
    let (cli_pid, grandchild) = pids(&cli).await;
    assert!(wait_until_dead(cli_pid).await && wait_until_dead(grandchild).await);
}

#[tokio::test]
async fn the_total_timeout_ends_a_chatty_provider() {
    // Output keeps coming, so only the total limit can end this job.
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\nwhile true; do echo tick; sleep 0.05; done"
    ));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("IDLE_TIMEOUT_SECONDS", "30")]);
    let mut body = job("x");
    body["timeoutSeconds"] = json!(1);
    let events = worker.execute(&body).await.collect().await;
    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().data["code"], "timeout");
}

#[tokio::test]
async fn sigterm_while_busy_ends_the_stream_with_shutdown_and_exits_zero() {
    let cli = stubborn_cli();
    let mut worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("KILL_GRACE_SECONDS", "0.5")]);
    let mut stream = worker.execute(&job("x")).await;
    stream.until("session").await;
    let (cli_pid, grandchild) = pids(&cli).await;

    worker.signal(libc::SIGTERM);
    let rest = stream.collect().await;
    let end = rest.last().expect("terminal");
    assert_eq!(end.data["code"], "shutdown");
    assert_eq!(end.data["retryable"], true);
    assert!(worker.exit_status().await.success());
    assert!(wait_until_dead(cli_pid).await && wait_until_dead(grandchild).await);
}

#[tokio::test]
async fn sigterm_while_idle_exits_zero_at_once() {
    let mut worker = TestWorker::spawn(&[]);
    worker.signal(libc::SIGTERM);
    assert!(worker.exit_status().await.success());
}

#[tokio::test]
async fn the_worker_exits_zero_by_itself_after_a_job() {
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho '{RESULT_LINE}'"));
    let mut worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin())]);
    let events = worker.execute(&job("x")).await.collect().await;
    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert!(worker.exit_status().await.success());
}

#[tokio::test]
async fn with_exit_after_job_false_the_worker_takes_the_next_job() {
    let cli = FakeCli::new(&format!(
        "ls \"$PWD\" > \"$DIR/listing-$$\"\ntouch mine\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let mut worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("EXIT_AFTER_JOB", "false")]);
    for _ in 0..2 {
        let mut body = job("x");
        body["workspace"] = json!("shared-name");
        let events = worker.execute(&body).await.collect().await;
        assert_eq!(events.last().unwrap().kind(), "completed");
        worker.wait_for_status("idle").await;
    }
    assert!(!worker.has_exited());
    // The second job did not see the file the first one left.
    for entry in std::fs::read_dir(cli.dir.path()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("listing-") {
            assert_eq!(std::fs::read_to_string(entry.path()).unwrap(), "");
        }
    }
    assert!(
        !worker.workspace_dir.join("shared-name").exists(),
        "the workspace is removed after a job"
    );
}

#[tokio::test]
async fn a_finished_job_lingers_for_a_late_reader_and_refuses_new_work_while_draining() {
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\n{}\necho '{RESULT_LINE}'",
        wait_for("release")
    ));
    let mut worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("LINGER_SECONDS", "60")]);
    // A client that vanishes for certain: reset, not a polite close the worker could still write into.
    crate::support::execute_then_reset(worker.port, &job("x"), "event: session").await;
    cli.release("release");

    worker.wait_for_status("draining").await;
    let resp = worker.post_execute(&job("another")).await;
    assert_eq!(resp.status(), 429);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "draining");

    let events = SseStream::new(worker.events_after(None).await).collect().await;
    assert_well_formed(&events, 0);
    assert!(
        worker.exit_status().await.success(),
        "reading the terminal event ends the linger"
    );
}

#[tokio::test]
async fn a_missing_cli_is_provider_not_installed() {
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", "/nonexistent/claude")]);
    let events = worker.execute(&job("x")).await.collect().await;
    assert_well_formed(&events, 0);
    assert_eq!(crate::support::sse::kinds(&events), ["connected", "error"]);
    assert_eq!(events[1].data["code"], "provider_not_installed");
}

#[tokio::test]
async fn no_credentials_at_all_fails_before_the_cli_starts() {
    let cli = FakeCli::new("touch \"$DIR/started\"");
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("ANTHROPIC_API_KEY", "")]);
    let events = worker.execute(&job("x")).await.collect().await;
    assert_eq!(events.last().unwrap().data["code"], "auth_failed");
    assert!(!cli.file("started").exists());
}

#[tokio::test]
async fn a_cli_that_dies_without_a_result_is_provider_failed_with_exit_code_and_stderr() {
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho 'fatal: out of cheese' >&2\nexit 3"));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin())]);
    let events = worker.execute(&job("x")).await.collect().await;
    assert_well_formed(&events, 0);
    let end = events.last().unwrap();
    assert_eq!(end.data["code"], "provider_failed");
    assert_eq!(end.data["exitCode"], 3);
    assert!(end.data["stderrTail"].as_str().unwrap().contains("out of cheese"));
    assert!(events.iter().any(|e| e.kind() == "log" && e.data["stream"] == "stderr"));
}
