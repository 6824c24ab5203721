//! End to end with the real Gemini CLI (0.61.0) against the mock Gemini API, and with a scripted CLI where the
//! worker's side of the bargain (environment, arguments, stdin, settings) is what is checked.

use std::path::Path;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    FakeCli, TestWorker, gemini_bin,
    mock_gemini::{ANSWER_TOKENS, CACHED_TOKENS, MockGemini, PROMPT_TOKENS, Reply, conversation_text},
    sse::{assert_well_formed, assert_write_file_story},
};

const MODEL: &str = "gemini-2.5-flash";

/// A worker running the real CLI against `mock`, with the worker's own API key and one try per model call (the
/// CLI's default retries a 429 for minutes).
pub fn gemini_worker(mock: &MockGemini, extra: &[(&str, &str)]) -> TestWorker {
    let bin = gemini_bin();
    assert!(
        Path::new(&bin).exists(),
        "the Gemini CLI is not at {bin}; run scripts/install-clis.sh or set GEMINI_BIN"
    );
    let base_url = mock.base_url();
    let mut env = vec![
        ("GEMINI_BIN", bin.as_str()),
        ("GEMINI_API_KEY", "test-gemini-key-0000"),
        ("GOOGLE_GEMINI_BASE_URL", base_url.as_str()),
        ("GEMINI_MAX_ATTEMPTS", "1"),
        ("KEEP_WORKSPACE", "1"),
    ];
    env.extend_from_slice(extra);
    TestWorker::spawn(&env)
}

/// Always with a model: without one the CLI first asks a classifier which model to use.
pub fn gemini_job(prompt: &str) -> Value {
    json!({
        "userRequest": prompt,
        "codingAssistantProvider": "gemini",
        "providerOptions": { "model": MODEL },
    })
}

#[tokio::test]
async fn the_real_gemini_cli_writes_a_file_and_the_stream_tells_the_whole_story() {
    let mock = MockGemini::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from gemini\n".into(),
        final_text: "I wrote hello.txt.".into(),
    });
    let worker = gemini_worker(&mock, &[]);
    let mut body = gemini_job("Create hello.txt");
    body["workspace"] = json!("e2e");

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    assert_write_file_story(&events);
    let session = &events.iter().find(|e| e.kind() == "session").unwrap().data["sessionId"];
    let said: Vec<&str> = events
        .iter()
        .filter(|e| e.kind() == "assistant_message")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        ["Writing hello.txt.", "I wrote hello.txt."],
        "deltas are joined per answer"
    );
    let tool_use = events.iter().find(|e| e.kind() == "tool_use").unwrap();
    assert_eq!(tool_use.data["name"], "write_file");
    assert!(
        tool_use.data["input"]["file_path"]
            .as_str()
            .unwrap()
            .ends_with("/e2e/hello.txt"),
        "{}",
        tool_use.data
    );
    let tool_result = events.iter().find(|e| e.kind() == "tool_result").unwrap();
    assert_eq!(tool_result.data["toolUseId"], tool_use.data["id"]);
    assert_eq!(tool_result.data["isError"], false);
    let done = &events.last().unwrap().data;
    assert_eq!(&done["sessionId"], session);
    assert_eq!(done["result"], "I wrote hello.txt.");
    assert_eq!(done["numTurns"], 2);
    assert_eq!(
        done["usage"],
        json!({
            "inputTokens": 2 * (PROMPT_TOKENS - CACHED_TOKENS),
            "outputTokens": 2 * ANSWER_TOKENS,
            "cacheReadTokens": 2 * CACHED_TOKENS,
            "cacheCreationTokens": 0,
            "metered": true,
            "modelCalls": 2,
        })
    );
    let written = std::fs::read_to_string(worker.workspace_dir.join("e2e/hello.txt")).expect("the CLI wrote the file");
    assert_eq!(written, "hello from gemini\n");
    let first = &mock.turns()[0];
    assert!(
        conversation_text(first).contains("Create hello.txt"),
        "the prompt came from stdin"
    );
}

#[tokio::test]
async fn a_request_key_reaches_only_the_gemini_cli() {
    const CANARY: &str = "AIzaSy-gemini-CANARY-request-4b7d";
    let store = TempDir::new().unwrap();
    let mock = MockGemini::start(Reply::Text("Hi.".into()));
    let worker = gemini_worker(
        &mock,
        &[
            ("SESSION_STORE_DIR", store.path().to_str().unwrap()),
            ("EXIT_AFTER_JOB", "false"),
        ],
    );
    let mut refused = gemini_job("hello");
    refused["codingAssistantAccessToken"] = json!(CANARY);
    refused["providerOptions"]["maxTurns"] = json!(3);
    let refusal = worker.post_execute(&refused).await;
    assert_eq!(refusal.status(), 422);
    let refusal = refusal.text().await.unwrap();
    let mut body = gemini_job("hello");
    body["codingAssistantAccessToken"] = json!(CANARY);

    let mut stream = worker.execute(&body).await;
    let events = stream.collect().await;

    assert_eq!(events.last().unwrap().kind(), "completed", "{:?}", events.last());
    let replay = worker.events_after(None).await.text().await.unwrap();
    let status = worker.status().await.to_string();
    let calls = mock.calls();
    assert!(!calls.is_empty());
    assert!(
        calls.iter().all(|c| c.api_key.as_deref() == Some(CANARY)),
        "the CLI used the request's key, not the worker's"
    );
    let streamed = String::from_utf8(stream.raw.clone()).unwrap();
    for (what, text) in [
        ("stream", &streamed),
        ("replay", &replay),
        ("status", &status),
        ("422 body", &refusal),
        ("logs", &worker.logs()),
    ] {
        assert!(!text.contains("CANARY"), "the key leaked in the {what}");
    }
    for dir in [&worker.home, &worker.workspace_dir, &store.path().to_path_buf()] {
        for file in files_under(dir) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("CANARY"),
                "{} holds the key",
                file.display()
            );
        }
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files.extend(files_under(&path)),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}

#[tokio::test]
async fn health_lists_gemini_with_its_version() {
    let mock = MockGemini::start(Reply::Text("Hi.".into()));
    let worker = gemini_worker(&mock, &[]);
    // The versions are probed in the background after start-up; wait until the probe has answered.
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let gemini = loop {
        let health: Value = crate::support::client()
            .get(worker.url("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["providers"]["gemini"]["version"].is_string() {
            break health["providers"]["gemini"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no Gemini version: {health}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(gemini["available"], true);
    assert_eq!(gemini["version"], crate::support::pinned("GEMINI_VERSION"));
}

#[tokio::test]
async fn gemini_gets_its_variables_settings_and_the_prompt_on_stdin_and_nothing_else() {
    let cli = FakeCli::new(
        r#"env > "$DIR/env"
printf '%s\n' "$@" > "$DIR/args"
cat > "$DIR/prompt"
cp "$GEMINI_CLI_HOME/.gemini/settings.json" "$DIR/settings"
cp "$GEMINI_CLI_HOME/.gemini/tmp/workspace/.project_root" "$DIR/project_root"
echo '{"type":"init","session_id":"fake-gemini-session","model":"m"}'
echo '{"type":"message","role":"assistant","content":"o","delta":true}'
echo '{"type":"message","role":"assistant","content":"k","delta":true}'
echo '{"type":"result","status":"success","stats":{"input_tokens":3,"output_tokens":1,"cached":0,"input":3,"duration_ms":5}}'"#,
    );
    let worker = TestWorker::spawn(&[
        ("GEMINI_BIN", cli.bin()),
        ("GEMINI_API_KEY", "worker-gemini-CANARY-key-1c9e"),
        ("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9"),
        ("GEMINI_MODEL", "gemini-from-the-worker"),
        ("GEMINI_MAX_ATTEMPTS", "2"),
        ("GH_TOKEN", "gh-token-CANARY-7d1e"),
        ("GITHUB_TOKEN", "github-token-CANARY-90ab"),
        // The key and the endpoint as they reach a CLI that holds its key; through the broker the CLI has a
        // placeholder and the broker's address instead (tests/api/broker.rs).
        ("BROKER", "off"),
    ]);
    let mut body = gemini_job("secret plan");
    body["workspace"] = json!("plan");
    body["codingAssistantAccessToken"] = json!("AIzaSy-request-key-3f8a");

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    let done = &events.last().unwrap().data;
    assert_eq!(done["type"], "completed", "{done}");
    assert_eq!(done["sessionId"], "fake-gemini-session");
    assert_eq!(done["result"], "ok");
    let env = std::fs::read_to_string(cli.file("env")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(String::from)
    };
    assert_eq!(var("GEMINI_API_KEY").as_deref(), Some("AIzaSy-request-key-3f8a"));
    assert_eq!(
        env.matches("AIzaSy-request-key-3f8a").count(),
        1,
        "only in its own variable"
    );
    assert_eq!(var("GOOGLE_GEMINI_BASE_URL").as_deref(), Some("http://127.0.0.1:9"));
    assert_eq!(var("GEMINI_MODEL").as_deref(), Some("gemini-from-the-worker"));
    assert_eq!(var("HTTPS_PROXY").as_deref(), Some("http://127.0.0.1:9"));
    assert_eq!(var("NO_PROXY").as_deref(), Some("127.0.0.1,localhost"));
    assert!(
        !env.contains("CANARY"),
        "neither the worker's key nor the GitHub tokens: {env}"
    );
    assert!(
        var("GEMINI_MAX_ATTEMPTS").is_none() && var("ANTHROPIC_API_KEY").is_none(),
        "{env}"
    );
    let cli_home = var("GEMINI_CLI_HOME").unwrap();
    assert!(
        Path::new(&cli_home).starts_with(worker.home.join(".unified-worker/jobs")),
        "{cli_home}"
    );
    assert_eq!(var("TMPDIR").unwrap(), format!("{cli_home}/tmp"));
    assert_eq!(var("HOME").unwrap(), worker.home.display().to_string());
    assert!(!Path::new(&cli_home).exists(), "the private home goes with the job");

    let args = std::fs::read_to_string(cli.file("args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-o",
            "stream-json",
            "--approval-mode",
            "yolo",
            "--skip-trust",
            "-m",
            MODEL
        ]
    );
    assert_eq!(std::fs::read_to_string(cli.file("prompt")).unwrap(), "secret plan");
    let settings: Value = serde_json::from_str(&std::fs::read_to_string(cli.file("settings")).unwrap()).unwrap();
    assert_eq!(settings["security"]["auth"]["selectedType"], "gemini-api-key");
    assert_eq!(settings["privacy"]["usageStatisticsEnabled"], false);
    assert_eq!(settings["telemetry"]["enabled"], false);
    assert_eq!(settings["general"]["maxAttempts"], 2);
    let project_root = std::fs::read_to_string(cli.file("project_root")).unwrap();
    assert_eq!(
        Path::new(&project_root),
        worker.workspace_dir.canonicalize().unwrap().join("plan")
    );
}

#[tokio::test]
async fn without_any_gemini_key_the_job_ends_auth_failed_before_the_cli_starts() {
    let cli = FakeCli::new(r#"touch "$DIR/started""#);
    let worker = TestWorker::spawn(&[("GEMINI_BIN", cli.bin())]);

    let events = worker.execute(&gemini_job("hello")).await.collect().await;

    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "auth_failed", "{end}");
    assert!(end["message"].as_str().unwrap().contains("GEMINI_API_KEY"), "{end}");
    assert!(!cli.file("started").exists());
}
