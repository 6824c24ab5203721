//! Per-job MCP servers (`providerOptions.mcpServers`) with the real CLIs: each starts the test suite's stdio MCP
//! server (`tests/fixtures/mcp/marker_server.py`), the mock API asks for its tool, the tool writes a marker file,
//! and the stream shows the call. The server's env holds a canary that its tool's result repeats: the worker
//! must redact it like any request secret.

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    claude_code::claude_worker,
    codex::{codex_job, codex_worker},
    copilot::{copilot_job, copilot_worker},
    gemini::{gemini_job, gemini_worker},
    support::{
        FakeCli, INIT_LINE, RESULT_LINE, TestWorker, job,
        mock_anthropic::{MockAnthropic, Reply},
        mock_gemini::{self, MockGemini},
        mock_openai::{self, MockOpenAi},
        recorder::Recorder,
        sse::{SseEvent, assert_well_formed},
    },
};

pub const MARKER_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp/marker_server.py");
pub const ENV_CANARY: &str = "mcp-env-CANARY-5b7e91d3";
const HEADER_CANARY: &str = "mcp-header-CANARY-0c44a2e8";
pub const MARKER_TEXT: &str = "written through MCP";

/// `{"marker": …}`: the marker server, writing to `marker`, with the env canary.
pub fn marker_servers(marker: &Path) -> Value {
    json!({ "marker": {
        "command": "python3",
        "args": [MARKER_SERVER, marker],
        "env": { "MARKER_SECRET": ENV_CANARY },
    }})
}

pub fn call_the_marker_tool() -> Reply {
    Reply::CallMcpTool {
        server: "marker".into(),
        tool: "write_marker".into(),
        input: json!({ "text": MARKER_TEXT }),
        final_text: "The marker is written.".into(),
    }
}

/// The call of the MCP tool under the name the CLI gave it, and its result: asserts both are in the stream,
/// paired, successful, and the canary the tool repeated redacted.
fn assert_the_call_is_shown(events: &[SseEvent], tool_name: &str) {
    let tool_use = events
        .iter()
        .find(|e| e.kind() == "tool_use" && e.data["name"] == tool_name)
        .unwrap_or_else(|| {
            panic!(
                "no tool_use {tool_name}: {:#?}",
                events.iter().map(|e| &e.data).collect::<Vec<_>>()
            )
        });
    assert_eq!(tool_use.data["input"]["text"], MARKER_TEXT, "{}", tool_use.data);
    let tool_result = events
        .iter()
        .find(|e| e.kind() == "tool_result" && e.data["toolUseId"] == tool_use.data["id"])
        .unwrap_or_else(|| panic!("no tool_result for {}", tool_use.data));
    assert_eq!(tool_result.data["isError"], false, "{}", tool_result.data);
    let output = tool_result.data.to_string();
    assert!(output.contains("marker written with [REDACTED]"), "{output}");
    assert_eq!(
        events.last().unwrap().kind(),
        "completed",
        "{}",
        events.last().unwrap().data
    );
}

fn assert_no_canary(worker: &TestWorker, streamed: &[u8]) {
    let streamed = String::from_utf8_lossy(streamed);
    for (what, text) in [("stream", streamed.as_ref()), ("logs", &worker.logs())] {
        assert!(!text.contains("CANARY"), "a canary leaked in the {what}");
    }
}

/// Runs `body` with the marker server added to its options and asserts the whole story: the tool call under
/// `tool_name` in the stream, the marker written, no canary anywhere.
async fn assert_the_marker_server_is_called(worker: &TestWorker, mut body: Value, tool_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    // Next to any option the job already has.
    body["providerOptions"]["mcpServers"] = marker_servers(&marker);

    let mut stream = worker.execute(&body).await;
    let events = stream.collect().await;

    assert_well_formed(&events, 0);
    assert_the_call_is_shown(&events, tool_name);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), format!("{MARKER_TEXT}\n"));
    assert_no_canary(worker, &stream.raw);
}

#[tokio::test]
async fn claude_code_calls_the_jobs_stdio_mcp_server_in_default_permission_mode() {
    let mock = MockAnthropic::start(call_the_marker_tool());
    let worker = claude_worker(&mock, &[]);
    let mut body = job("Write the marker through the MCP tool");
    // Outside bypassPermissions only the worker's allow rule lets the tool run.
    body["providerOptions"] = json!({ "permissionMode": "default" });
    assert_the_marker_server_is_called(&worker, body, "mcp__marker__write_marker").await;
}

#[tokio::test]
async fn copilot_calls_the_jobs_stdio_mcp_server() {
    let mock = MockAnthropic::start(call_the_marker_tool());
    let worker = copilot_worker(&mock, &[]);
    assert_the_marker_server_is_called(
        &worker,
        copilot_job("Write the marker through the MCP tool"),
        "marker-write_marker",
    )
    .await;
}

#[tokio::test]
async fn codex_calls_the_jobs_stdio_mcp_server() {
    let mock = MockOpenAi::start(call_the_marker_tool());
    let worker = codex_worker(&mock, &[]);
    assert_the_marker_server_is_called(
        &worker,
        codex_job("Write the marker through the MCP tool"),
        "mcp__marker__write_marker",
    )
    .await;
}

#[tokio::test]
async fn gemini_calls_the_jobs_stdio_mcp_server() {
    let mock = MockGemini::start(call_the_marker_tool());
    let worker = gemini_worker(&mock, &[]);
    assert_the_marker_server_is_called(
        &worker,
        gemini_job("Write the marker through the MCP tool"),
        "mcp_marker_write_marker",
    )
    .await;
}

/// Lets http MCP servers on loopback through the callback URL policy.
const LOOPBACK_HTTP: [(&str, &str); 2] = [
    ("CALLBACK_ALLOWED_HOSTS", "127.0.0.1"),
    ("CALLBACK_ALLOW_INSECURE", "1"),
];

/// Runs `body` with an http MCP server at a recorder (which speaks no MCP: the CLI connects, fails and goes on)
/// and asserts that the header reached it and shows nowhere else.
async fn assert_http_headers_reach_the_server(worker: &TestWorker, mut body: Value) {
    let server = Recorder::start();
    // Next to any option the job already has (Gemini's model).
    body["providerOptions"]["mcpServers"] = json!({ "remote": {
        "type": "http",
        "url": format!("{}/mcp", server.base()),
        "headers": { "Authorization": format!("Bearer {HEADER_CANARY}") },
    }});

    let mut stream = worker.execute(&body).await;
    let events = stream.collect().await;
    server.wait_until(|state| !state.requests.is_empty()).await;

    assert_well_formed(&events, 0);
    let first = &server.requests()[0];
    assert_eq!(first.path, "/mcp");
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {HEADER_CANARY}").as_str())
    );
    assert_no_canary(worker, &stream.raw);
}

#[tokio::test]
async fn claude_code_sends_an_http_mcp_servers_headers_and_nothing_shows_them() {
    let mock = MockAnthropic::start(Reply::Text("Hi.".into()));
    let worker = claude_worker(&mock, &LOOPBACK_HTTP);
    assert_http_headers_reach_the_server(&worker, job("hello")).await;
}

#[tokio::test]
async fn copilot_sends_an_http_mcp_servers_headers_and_nothing_shows_them() {
    let mock = MockAnthropic::start(Reply::Text("Hi.".into()));
    let worker = copilot_worker(&mock, &LOOPBACK_HTTP);
    assert_http_headers_reach_the_server(&worker, copilot_job("hello")).await;
}

#[tokio::test]
async fn gemini_sends_an_http_mcp_servers_headers_and_nothing_shows_them() {
    let mock = MockGemini::start(mock_gemini::Reply::Text("Hi.".into()));
    let worker = gemini_worker(&mock, &LOOPBACK_HTTP);
    assert_http_headers_reach_the_server(&worker, gemini_job("hello")).await;
}

#[tokio::test]
async fn codex_sends_an_http_mcp_servers_headers_and_nothing_shows_them() {
    let mock = MockOpenAi::start(mock_openai::Reply::Text("Hi.".into()));
    let worker = codex_worker(&mock, &LOOPBACK_HTTP);
    assert_http_headers_reach_the_server(&worker, codex_job("hello")).await;
}

#[tokio::test]
async fn a_command_outside_mcp_allowed_commands_is_refused_naming_the_field() {
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho '{RESULT_LINE}'"));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("MCP_ALLOWED_COMMANDS", "node,npx")]);
    let mut body = job("hello");
    body["providerOptions"] = json!({ "mcpServers": marker_servers(Path::new("/tmp/never-written")) });

    let resp = worker.post_execute(&body).await;

    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap();
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["field"], "providerOptions.mcpServers.marker.command");
    assert!(!text.contains("CANARY"), "{text}");
    assert_eq!(worker.status().await["status"], "idle");
    assert!(!worker.logs().contains("CANARY"));
}

#[tokio::test]
async fn a_provider_without_mcp_support_refuses_the_option_by_name() {
    let worker = TestWorker::spawn(&[("CURSOR_API_KEY", "cursor-key-123")]);
    let mut body = json!({ "userRequest": "hello", "codingAssistantProvider": "cursor" });
    body["providerOptions"] = json!({ "mcpServers": marker_servers(Path::new("/tmp/never-written")) });

    let resp = worker.post_execute(&body).await;

    assert_eq!(resp.status(), 422);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["field"], "providerOptions.mcpServers");
}
