//! Start-up configuration errors, the healthcheck subcommand, and the memory and size bounds on a job's output.

use std::process::Command;

use crate::support::{FakeCli, INIT_LINE, RESULT_LINE, SseStream, TestWorker, job, sse::assert_well_formed};

#[test]
fn a_bad_variable_stops_the_worker_at_start_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_unified-worker"))
        .env_clear()
        .env("PORT", "fifty")
        .output()
        .expect("run the worker");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PORT") && stderr.contains("fifty"), "{stderr}");
}

#[tokio::test]
async fn the_healthcheck_subcommand_follows_health() {
    let worker = TestWorker::spawn(&[]);
    let healthcheck = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_unified-worker"))
            .args(["healthcheck", &url])
            .output()
            .expect("healthcheck")
    };
    let up = healthcheck(worker.url("/health"));
    assert_eq!(up.status.code(), Some(0));
    drop(worker);
    let down = healthcheck("http://127.0.0.1:9/health".into());
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("healthcheck"));
}

#[tokio::test]
async fn a_replay_of_evicted_events_answers_410_and_what_is_held_replays_whole() {
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\ni=0; while [ $i -lt 300 ]; do echo \"line $i with some padding to make it longer\"; i=$((i+1)); done\necho '{RESULT_LINE}'"
    ));
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("EXIT_AFTER_JOB", "false"),
        ("EVENT_LOG_MAX_BYTES", "8192"),
    ]);
    // The client goes away at once, so the whole job runs into the 8 KiB bound with nobody reading.
    crate::support::execute_then_reset(worker.port, &job("x"), "event: connected").await;
    worker.wait_for_status("idle").await;

    let resp = worker.events_after(Some(0)).await;
    assert_eq!(resp.status(), 410);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "events_evicted");
    let first = body["error"]["firstAvailable"].as_u64().unwrap();
    assert!(first > 1 && first < 302, "{body}");

    let tail = SseStream::new(worker.events_after(Some(first - 1)).await)
        .collect()
        .await;
    assert_well_formed(&tail, first);
    assert_eq!(
        tail.last().unwrap().seq(),
        302,
        "connected, session, 300 lines, completed: seqs 0 to 302"
    );
}

#[tokio::test]
async fn long_lines_and_tool_outputs_are_cut_and_say_so() {
    let long_result = format!(
        r#"{{"type":"user","message":{{"content":[{{"type":"tool_result","tool_use_id":"t1","content":"{}"}}]}}}}"#,
        "r".repeat(5000)
    );
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\necho '{long_result}'\nprintf 'x%.0s' $(seq 1 9000); echo\necho after\necho '{RESULT_LINE}'"
    ));
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("TOOL_OUTPUT_MAX_BYTES", "1000"),
        ("MAX_LINE_BYTES", "6000"),
    ]);
    let events = worker.execute(&job("x")).await.collect().await;
    assert_well_formed(&events, 0);

    let output = events.iter().find(|e| e.kind() == "tool_result").unwrap().data["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        output.starts_with(&"r".repeat(1000)) && output.ends_with("[truncated: 5000 bytes in total]"),
        "{output}"
    );
    let warning = events
        .iter()
        .find(|e| e.kind() == "message")
        .expect("a warning about the cut line");
    assert_eq!(warning.data["level"], "warn");
    assert!(warning.data["text"].as_str().unwrap().contains("9000 bytes"));
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e.kind() == "log")
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    assert_eq!(
        logs,
        [&"x".repeat(6000) as &str, "after"],
        "the cut line is kept up to the cap, the next line is whole"
    );
}
