//! End to end with the real opencode CLI against the mock chat-completions API, and with a scripted one where
//! only the worker's side is under test (its environment, its refusals).

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    FakeCli, SseStream, TestWorker, client,
    mock_chat::{self, MockChat, Reply},
    opencode_bin,
    sse::{assert_well_formed, assert_write_file_story},
};

/// The key the worker holds for the mock provider, in opencode's own credential format.
const WORKER_KEY: &str = "worker-mock-key-5c1d0e";

/// The operator's configuration: one OpenAI-compatible provider, the mock, and its model as the default.
fn config(mock: &MockChat) -> String {
    json!({
        "provider": { "mock": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Mock",
            "options": { "baseURL": mock.base_url() },
            "models": { "mock-model": { "name": "Mock", "tool_call": true } },
        }},
        "model": "mock/mock-model",
    })
    .to_string()
}

pub fn opencode_worker(mock: &MockChat, extra: &[(&str, &str)]) -> TestWorker {
    let bin = opencode_bin();
    assert!(
        std::path::Path::new(&bin).exists(),
        "opencode is not at {bin}; run scripts/install-clis.sh or set OPENCODE_BIN"
    );
    let config = config(mock);
    let auth = json!({ "mock": { "type": "api", "key": WORKER_KEY } }).to_string();
    let mut env = vec![
        ("OPENCODE_BIN", bin.as_str()),
        ("OPENCODE_CONFIG_CONTENT", config.as_str()),
        ("OPENCODE_AUTH_CONTENT", auth.as_str()),
        // Packages opencode would install at run time have nowhere to come from.
        ("npm_config_registry", "http://127.0.0.1:9"),
        ("KEEP_WORKSPACE", "1"),
    ];
    env.extend_from_slice(extra);
    TestWorker::spawn(&env)
}

pub fn opencode_job(prompt: &str) -> Value {
    json!({ "userRequest": prompt, "codingAssistantProvider": "opencode" })
}

/// A loopback port that accepts connections into its backlog but never answers: pointed at as the proxy and
/// the package registry, it shows afterwards whether anything tried to leave the machine.
struct SilentPort(TcpListener);

impl SilentPort {
    fn open() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        SilentPort(listener)
    }

    fn url(&self) -> String {
        format!("http://{}", self.0.local_addr().expect("addr"))
    }

    /// Whether a connection is waiting: the kernel completes the handshake without an accept.
    fn was_called(&self) -> bool {
        self.0.accept().is_ok()
    }
}

#[tokio::test]
async fn the_real_opencode_cli_writes_a_file_with_the_request_key_and_talks_to_nothing_else() {
    let mock = MockChat::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from opencode\n".into(),
        final_text: "I wrote hello.txt.".into(),
    });
    let outside = SilentPort::open();
    let outside_url = outside.url();
    let worker = opencode_worker(
        &mock,
        &[
            ("HTTPS_PROXY", &outside_url),
            ("HTTP_PROXY", &outside_url),
            ("npm_config_registry", &outside_url),
        ],
    );
    let mut body = opencode_job("Create hello.txt");
    body["workspace"] = json!("e2e");
    body["codingAssistantAccessToken"] = json!("request-key-CANARY-8e41f0");

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    assert_write_file_story(&events);
    let session = &events.iter().find(|e| e.kind() == "session").unwrap().data["sessionId"];
    assert!(session.as_str().unwrap().starts_with("ses_"), "{session}");
    let tool_use = events.iter().find(|e| e.kind() == "tool_use").unwrap();
    assert_eq!(tool_use.data["name"], "write");
    let tool_result = events.iter().find(|e| e.kind() == "tool_result").unwrap();
    assert_eq!(tool_result.data["toolUseId"], tool_use.data["id"]);
    assert_eq!(tool_result.data["isError"], false);
    let done = &events.last().unwrap().data;
    assert_eq!(done["type"], "completed", "{done}");
    assert_eq!(&done["sessionId"], session);
    assert_eq!(done["result"], "I wrote hello.txt.");
    assert_eq!(done["numTurns"], 2);
    // The worker's meter counts every call that reached the model API: the two of the conversation and opencode's
    // title request, which the CLI's own figures leave out. Cached prompt tokens are counted apart.
    let uncached = mock_chat::PROMPT_TOKENS - mock_chat::CACHED_TOKENS;
    let calls = mock.requests().len() as u64;
    assert_eq!(calls, 3, "a title request and two turns of the conversation");
    assert_eq!(
        done["usage"],
        json!({"inputTokens": calls * uncached, "outputTokens": calls * mock_chat::COMPLETION_TOKENS,
            "cacheReadTokens": calls * mock_chat::CACHED_TOKENS, "cacheCreationTokens": 0,
            "metered": true, "modelCalls": calls})
    );
    let written = std::fs::read_to_string(worker.workspace_dir.join("e2e/hello.txt")).expect("the CLI wrote the file");
    assert_eq!(written, "hello from opencode\n");
    let keys = mock.authorizations();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k == "Bearer request-key-CANARY-8e41f0"),
        "{keys:?}"
    );
    let all: String = events.iter().map(|e| e.data.to_string()).collect();
    assert!(!all.contains("CANARY") && !worker.logs().contains("CANARY"));
    assert!(
        !outside.was_called(),
        "opencode tried to reach something other than the model API"
    );
}

#[tokio::test]
async fn health_reports_the_opencode_version() {
    let mock = MockChat::start(Reply::Text("Hi.".into()));
    let worker = opencode_worker(&mock, &[]);
    // The versions are probed in the background after start-up; wait until the probe has answered.
    let deadline = Instant::now() + crate::support::PATIENCE;
    let opencode = loop {
        let health: Value = client()
            .get(worker.url("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["providers"]["opencode"]["version"].is_string() {
            break health["providers"]["opencode"].clone();
        }
        assert!(Instant::now() < deadline, "no opencode version: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(opencode["available"], true);
    let pinned = crate::support::pinned("OPENCODE_VERSION");
    assert!(opencode["version"].as_str().unwrap().contains(&pinned), "{opencode}");
}

/// A scripted opencode: records what it was given, then prints recorded-format lines that echo its key.
fn scripted_opencode() -> FakeCli {
    FakeCli::new(
        r#"env > "$DIR/env"
printf '%s\n' "$@" > "$DIR/args"
cat > "$DIR/prompt"
cat "$XDG_CONFIG_HOME/opencode/opencode.json" > "$DIR/config"
key=$(printf '%s' "$OPENCODE_AUTH_CONTENT" | sed 's/.*"key":"\([^"]*\)".*/\1/')
printf '{"type":"text","sessionID":"ses_fake","part":{"type":"text","text":"my key is %s"}}\n' "$key"
echo "stderr with $key" >&2
printf '%s\n' '{"type":"step_finish","sessionID":"ses_fake","part":{"type":"step-finish","reason":"stop","tokens":{"input":1,"output":1,"reasoning":0,"cache":{"read":0,"write":0}},"cost":0.25}}'"#,
    )
}

#[tokio::test]
async fn the_request_key_reaches_only_the_cli_as_its_models_provider_credential() {
    let cli = scripted_opencode();
    let worker = TestWorker::spawn(&[
        ("OPENCODE_BIN", cli.bin()),
        (
            "OPENCODE_AUTH_CONTENT",
            r#"{"mock":{"type":"api","key":"worker-own-key-77ab"}}"#,
        ),
        ("GH_TOKEN", "gh-token-canary-3c9d"),
        ("WORKER_API_TOKEN", "worker-api-canary-19fe"),
        // The path without the broker, where the CLI holds the key and the stream must be redacted; with it, the
        // CLI gets the placeholder (tests/api/broker.rs).
        ("BROKER", "off"),
    ]);
    let mut body = opencode_job("secret plan");
    body["codingAssistantAccessToken"] = json!("sk-request-CANARY-b7e2");
    body["providerOptions"] = json!({ "model": "anthropic/claude-sonnet-4-5" });

    let resp = client()
        .post(worker.url("/execute"))
        .bearer_auth("worker-api-canary-19fe")
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = SseStream::new(resp);
    let events = stream.collect().await;

    assert_well_formed(&events, 0);
    let done = &events.last().unwrap().data;
    assert_eq!(done["type"], "completed", "{done}");
    assert_eq!(
        (done["sessionId"].as_str(), done["costUsd"].as_f64()),
        (Some("ses_fake"), Some(0.25))
    );
    let env = std::fs::read_to_string(cli.file("env")).unwrap();
    let auth = env
        .lines()
        .find_map(|l| l.strip_prefix("OPENCODE_AUTH_CONTENT="))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(auth).unwrap(),
        json!({ "anthropic": { "type": "api", "key": "sk-request-CANARY-b7e2" } })
    );
    assert_eq!(env.matches("CANARY").count(), 1, "only in its own variable: {env}");
    assert!(
        !env.contains("worker-own-key") && !env.contains("ANTHROPIC_API_KEY="),
        "the worker's keys are replaced"
    );
    assert!(!env.contains("canary-3c9d") && !env.contains("canary-19fe"), "{env}");
    for switch in [
        "OPENCODE_DISABLE_AUTOUPDATE=1",
        "OPENCODE_DISABLE_MODELS_FETCH=1",
        "OPENCODE_DISABLE_SHARE=1",
    ] {
        assert!(env.lines().any(|l| l == switch), "{switch} missing: {env}");
    }
    let home = env.lines().find_map(|l| l.strip_prefix("HOME=")).unwrap();
    assert!(
        home.starts_with(&worker.home.display().to_string()) && home.contains("/jobs/"),
        "{home}"
    );
    assert!(!std::path::Path::new(home).exists(), "the job's home goes with the job");
    let args = std::fs::read_to_string(cli.file("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "run",
            "--format",
            "json",
            "--thinking",
            "--auto",
            "-m",
            "anthropic/claude-sonnet-4-5"
        ]
    );
    assert_eq!(std::fs::read_to_string(cli.file("prompt")).unwrap(), "secret plan");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(cli.file("config")).unwrap()).unwrap();
    assert_eq!(config, json!({ "autoupdate": false, "share": "disabled" }));
    let streamed = String::from_utf8(stream.raw.clone()).unwrap();
    assert!(!streamed.contains("CANARY") && !worker.logs().contains("CANARY"));
    assert_eq!(
        streamed.matches("[REDACTED]").count(),
        3,
        "assistant text, result and stderr are redacted"
    );
}

#[tokio::test]
async fn without_any_credentials_opencode_is_not_started() {
    let cli = FakeCli::new(r#"touch "$DIR/started""#);
    let worker = TestWorker::spawn(&[("OPENCODE_BIN", cli.bin()), ("ANTHROPIC_API_KEY", "")]);

    let events = worker.execute(&opencode_job("hello")).await.collect().await;

    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().data["code"], "auth_failed");
    assert!(!cli.file("started").exists());
}

#[tokio::test]
async fn a_token_without_a_provider_and_options_opencode_cannot_honour_are_refused_by_name() {
    let cli = FakeCli::new(r#"touch "$DIR/started""#);
    let worker = TestWorker::spawn(&[("OPENCODE_BIN", cli.bin())]);
    for (token, options, field) in [
        (Some("sk-no-provider-0a1b"), None, "codingAssistantAccessToken"),
        (
            None,
            Some(json!({ "model": "claude-sonnet-4-5" })),
            "providerOptions.model",
        ),
        (None, Some(json!({ "model": "/claude" })), "providerOptions.model"),
        (None, Some(json!({ "maxTurns": 3 })), "providerOptions.maxTurns"),
    ] {
        let mut body = opencode_job("hello");
        if let Some(token) = token {
            body["codingAssistantAccessToken"] = json!(token);
        }
        if let Some(options) = options {
            body["providerOptions"] = options;
        }

        let resp = worker.post_execute(&body).await;

        assert_eq!(resp.status(), 422, "{field}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["field"], field);
        assert!(!error.to_string().contains("sk-no-provider"), "{error}");
    }
    assert!(!cli.file("started").exists());
}

#[tokio::test]
async fn opencode_calls_the_jobs_stdio_mcp_server() {
    const MARKER_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp/marker_server.py");
    let mock = MockChat::start(Reply::CallMcpTool {
        server: "marker".into(),
        tool: "write_marker".into(),
        input: json!({ "text": "written through MCP" }),
        final_text: "The marker is written.".into(),
    });
    let worker = opencode_worker(&mock, &[]);
    let dir = TempDir::new().unwrap();
    let marker = dir.path().join("marker");
    let mut body = opencode_job("Write the marker through the MCP tool");
    body["providerOptions"] = json!({ "mcpServers": { "marker": {
        "command": "python3",
        "args": [MARKER_SERVER, marker],
        "env": { "MARKER_SECRET": "mcp-env-CANARY-41d07e" },
    }}});

    let mut stream = worker.execute(&body).await;
    let events = stream.collect().await;

    assert_well_formed(&events, 0);
    let tool_use = events
        .iter()
        .find(|e| e.kind() == "tool_use" && e.data["name"] == "marker_write_marker")
        .unwrap_or_else(|| panic!("{:#?}", events.iter().map(|e| &e.data).collect::<Vec<_>>()));
    assert_eq!(tool_use.data["input"]["text"], "written through MCP");
    let tool_result = events
        .iter()
        .find(|e| e.kind() == "tool_result" && e.data["toolUseId"] == tool_use.data["id"])
        .expect("the tool's result");
    assert_eq!(tool_result.data["isError"], false, "{}", tool_result.data);
    assert!(
        tool_result.data.to_string().contains("marker written with [REDACTED]"),
        "{}",
        tool_result.data
    );
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "written through MCP\n");
    let streamed = String::from_utf8_lossy(&stream.raw).to_string();
    assert!(!streamed.contains("CANARY") && !worker.logs().contains("CANARY"));
}
