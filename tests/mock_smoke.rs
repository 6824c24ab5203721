//! Temporary proof that `tests/api/support/mock_anthropic.rs` drives the real Claude Code CLI.
//! Runs the CLI directly (no worker): `CLAUDE_BIN`, defaulting to the cached 2.1.329 binary.

#[path = "api/support/mock_anthropic.rs"]
mod mock_anthropic;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mock_anthropic::{MockAnthropic, Reply};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const DEFAULT_CLAUDE_BIN: &str = "/root/.cache/unified-worker/claude-2.1.329/claude";

struct Run {
    code: Option<i32>,
    lines: Vec<Value>,
    stderr: String,
}

impl Run {
    fn result(&self) -> &Value {
        self.lines
            .iter()
            .find(|line| line["type"] == "result")
            .unwrap_or_else(|| panic!("no result line; stdout: {:?}; stderr: {}", self.lines, self.stderr))
    }
}

async fn run_claude(mock: &MockAnthropic, home: &Path, cwd: &Path, prompt: &str, extra: &[&str]) -> Run {
    let bin = std::env::var("CLAUDE_BIN").unwrap_or_else(|_| DEFAULT_CLAUDE_BIN.to_string());
    let mut child = Command::new(bin)
        .args([
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "bypassPermissions",
        ])
        .args(extra)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("IS_SANDBOX", "1")
        .env("ANTHROPIC_BASE_URL", mock.base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "1")
        // A closed loopback port: any attempt to reach the internet fails instead of leaving the machine.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn claude");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(prompt.as_bytes()).await.expect("write prompt");
    // Claude Code waits for EOF before it starts.
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("claude did not finish within 120 s")
        .expect("wait for claude");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}")))
        .collect();
    Run {
        code: output.status.code(),
        lines,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn write_file_creates_the_file_and_succeeds() {
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from the mock\n".into(),
        final_text: "All done.".into(),
    });
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let run = run_claude(&mock, home.path(), cwd.path(), "Create hello.txt", &[]).await;

    let written = std::fs::read_to_string(cwd.path().join("hello.txt")).expect("hello.txt was written");
    assert_eq!(written, "hello from the mock\n");
    let result = run.result();
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], "All done.");
    assert_eq!(run.code, Some(0));
    assert!(
        run.lines
            .iter()
            .any(|l| l["type"] == "user" && l["message"]["content"][0]["type"] == "tool_result")
    );

    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "tool_use turn + tool_result turn");
    let last = requests[1]["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["content"][0]["type"], "tool_result");

    // Same session, new behaviour: resume answers with plain text and the history carries the first exchange.
    mock.set_reply(Reply::Text("Resumed.".into()));
    let session_id = result["session_id"].as_str().expect("session_id").to_string();
    let resumed = run_claude(&mock, home.path(), cwd.path(), "Again", &["--resume", &session_id]).await;
    assert_eq!(resumed.result()["result"], "Resumed.");
    assert_eq!(resumed.result()["session_id"], session_id.as_str());
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn status_401_is_an_error_result() {
    let mock = MockAnthropic::start(Reply::Status(401));
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let run = run_claude(&mock, home.path(), cwd.path(), "hi", &[]).await;
    let result = run.result();
    assert_eq!(result["is_error"], true, "{result}");
    assert_eq!(result["api_error_status"], 401);
    assert_eq!(run.code, Some(1));
    assert!(!mock.requests().is_empty());
}

#[tokio::test]
async fn status_429_is_an_error_result() {
    let mock = MockAnthropic::start(Reply::Status(429));
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let run = run_claude(&mock, home.path(), cwd.path(), "hi", &[]).await;
    let result = run.result();
    assert_eq!(result["is_error"], true, "{result}");
    assert_eq!(result["api_error_status"], 429);
    assert_eq!(run.code, Some(1));
}

#[tokio::test]
async fn thinking_shows_as_a_thinking_block() {
    let mock = MockAnthropic::start(Reply::ThinkingThenText {
        thinking: "Hmm.".into(),
        text: "Answer.".into(),
    });
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let run = run_claude(&mock, home.path(), cwd.path(), "think", &[]).await;
    assert!(
        run.lines.iter().any(|l| l["type"] == "assistant"
            && l["message"]["content"][0]["type"] == "thinking"
            && l["message"]["content"][0]["thinking"] == "Hmm."),
        "{:?}",
        run.lines
    );
    assert_eq!(run.result()["result"], "Answer.");
    assert_eq!(run.result()["is_error"], false);
}

#[tokio::test]
async fn odd_requests_get_error_statuses_and_the_server_survives() {
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "x.txt".into(),
        content: "x".into(),
        final_text: "done".into(),
    });
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages?beta=true", mock.base_url());
    let post = |body: Vec<u8>| client.post(&url).body(body).send();

    assert_eq!(post(b"not json".to_vec()).await.unwrap().status(), 400);
    assert_eq!(post(b"[1,2]".to_vec()).await.unwrap().status(), 400);
    // Main turn (has tools) without a working-directory line: the mock cannot build the Write path.
    let no_pwd = serde_json::json!({"tools": [{"name": "Write"}], "messages": [{"role": "user", "content": 5}]});
    assert_eq!(post(no_pwd.to_string().into_bytes()).await.unwrap().status(), 400);
    // Larger than actix-web's default payload limit, non-streaming, auxiliary (no tools).
    let big = serde_json::json!({"messages": [{"role": "user", "content": "y".repeat(3 << 20)}]});
    let response = post(big.to_string().into_bytes()).await.unwrap();
    assert_eq!(response.status(), 200);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], "OK");
    // Main turn after a resume from another directory: the newest line wins, "(was …)" dropped.
    let resumed = serde_json::json!({"tools": [{"name": "Write"}], "stream": true, "messages": [
        {"role": "system", "content": "x\n - Primary working directory: /old\n - Is a git repository: false"},
        {"role": "system", "content": [{"type": "text", "text": "# Environment update\n - Primary working directory: /new dir (was /old)"}]}
    ]});
    let sse = post(resumed.to_string().into_bytes())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse.contains(r#"\"file_path\":\"/new dir/x.txt\""#), "{sse}");
    let unknown = client
        .get(format!("{}/v1/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let counted = client
        .post(format!("{}/v1/messages/count_tokens", mock.base_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);
    // Only well-formed bodies are recorded.
    assert_eq!(mock.requests().len(), 3);
}
