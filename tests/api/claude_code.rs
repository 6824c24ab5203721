//! End to end with the real Claude Code CLI against the mock Anthropic API of the test suite.

use serde_json::json;

use crate::support::{
    TestWorker, claude_bin, job,
    mock_anthropic::{MockAnthropic, Reply},
    sse::assert_well_formed,
};

pub fn claude_worker(mock: &MockAnthropic, extra: &[(&str, &str)]) -> TestWorker {
    let bin = claude_bin();
    assert!(
        std::path::Path::new(&bin).exists(),
        "the Claude Code CLI is not at {bin}; run scripts/install-clis.sh or set CLAUDE_BIN"
    );
    let base_url = mock.base_url();
    let mut env = vec![
        ("CLAUDE_BIN", bin.as_str()),
        ("ANTHROPIC_BASE_URL", base_url.as_str()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_TELEMETRY", "1"),
        // Without it a refused request is retried for minutes.
        ("CLAUDE_CODE_MAX_RETRIES", "0"),
        // Tests run as root, where the CLI refuses bypassPermissions unless told it is sandboxed.
        ("IS_SANDBOX", "1"),
        ("KEEP_WORKSPACE", "1"),
    ];
    env.extend_from_slice(extra);
    TestWorker::spawn(&env)
}

#[tokio::test]
async fn the_real_cli_writes_a_file_and_the_stream_tells_the_whole_story() {
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from the agent\n".into(),
        final_text: "I wrote hello.txt.".into(),
    });
    let worker = claude_worker(&mock, &[]);
    let mut body = job("Create hello.txt");
    body["workspace"] = json!("e2e");

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    crate::support::sse::assert_write_file_story(&events);
    let session = events.iter().find(|e| e.kind() == "session").unwrap().data["sessionId"].clone();
    let tool_use = events.iter().find(|e| e.kind() == "tool_use").unwrap();
    assert_eq!(tool_use.data["name"], "Write");
    let tool_result = events.iter().find(|e| e.kind() == "tool_result").unwrap();
    assert_eq!(tool_result.data["toolUseId"], tool_use.data["id"]);
    assert_eq!(tool_result.data["isError"], false);
    let done = &events.last().unwrap().data;
    assert_eq!(done["sessionId"], session);
    assert!(done["costUsd"].as_f64().is_some_and(|c| c > 0.0), "{done}");
    assert_eq!(done["numTurns"], 2);
    assert_eq!(done["result"], "I wrote hello.txt.");
    let written = std::fs::read_to_string(worker.workspace_dir.join("e2e/hello.txt")).expect("the CLI wrote the file");
    assert_eq!(written, "hello from the agent\n");
}
