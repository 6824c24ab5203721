//! End to end with the real Copilot CLI in bring-your-own-key mode against the mock Anthropic API.

use serde_json::json;

use crate::support::{
    TestWorker, copilot_bin,
    mock_anthropic::{MockAnthropic, Reply},
    sse::assert_well_formed,
};

pub fn copilot_worker(mock: &MockAnthropic, extra: &[(&str, &str)]) -> TestWorker {
    let bin = copilot_bin();
    assert!(
        std::path::Path::new(&bin).exists(),
        "the Copilot CLI is not at {bin}; run scripts/install-clis.sh or set COPILOT_BIN"
    );
    let base_url = mock.base_url();
    let mut env = vec![
        ("COPILOT_BIN", bin.as_str()),
        ("COPILOT_OFFLINE", "true"),
        ("COPILOT_PROVIDER_TYPE", "anthropic"),
        ("COPILOT_PROVIDER_BASE_URL", base_url.as_str()),
        ("COPILOT_PROVIDER_API_KEY", "test"),
        ("COPILOT_MODEL", "claude-sonnet-4"),
        ("KEEP_WORKSPACE", "1"),
    ];
    env.extend_from_slice(extra);
    TestWorker::spawn(&env)
}

pub fn copilot_job(prompt: &str) -> serde_json::Value {
    json!({ "userRequest": prompt, "codingAssistantProvider": "copilot" })
}

#[tokio::test]
async fn the_real_copilot_cli_writes_a_file_and_the_stream_tells_the_whole_story() {
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from copilot\n".into(),
        final_text: "I wrote hello.txt.".into(),
    });
    let worker = copilot_worker(&mock, &[]);
    let mut body = copilot_job("Create hello.txt");
    body["workspace"] = json!("e2e");

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    crate::support::sse::assert_write_file_story(&events);
    let session = &events.iter().find(|e| e.kind() == "session").unwrap().data["sessionId"];
    let tool_use = events.iter().find(|e| e.kind() == "tool_use").unwrap();
    assert_eq!(tool_use.data["name"], "create");
    let tool_result = events.iter().find(|e| e.kind() == "tool_result").unwrap();
    assert_eq!(tool_result.data["toolUseId"], tool_use.data["id"]);
    assert_eq!(tool_result.data["isError"], false);
    let done = &events.last().unwrap().data;
    assert_eq!(&done["sessionId"], session);
    assert_eq!(done["result"], "I wrote hello.txt.");
    let written = std::fs::read_to_string(worker.workspace_dir.join("e2e/hello.txt")).expect("the CLI wrote the file");
    assert_eq!(written, "hello from copilot\n");
}

#[tokio::test]
async fn the_session_event_goes_out_before_the_first_model_call() {
    let mock = MockAnthropic::start(Reply::Text("Hi.".into()));
    let worker = copilot_worker(&mock, &[]);
    let mut stream = worker.execute(&copilot_job("hello")).await;

    let before = stream.until("session").await;

    assert!(!before.iter().any(|e| e.kind() == "assistant_message"));
    let session = before.last().unwrap().data["sessionId"].as_str().unwrap().to_string();
    assert!(uuid_like(&session), "{session}");
    let rest = stream.collect().await;
    assert_eq!(rest.last().unwrap().data["sessionId"], session.as_str());
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn a_classic_personal_access_token_is_refused_before_anything_starts() {
    let mock = MockAnthropic::start(Reply::Text("Hi.".into()));
    let worker = copilot_worker(&mock, &[]);
    let mut body = copilot_job("hello");
    body["codingAssistantAccessToken"] = json!("ghp_classicTokenCanary0123456789abcdef");

    let resp = worker.post_execute(&body).await;

    assert_eq!(resp.status(), 422);
    let text = resp.text().await.unwrap();
    assert!(text.contains("codingAssistantAccessToken"), "{text}");
    assert!(!text.contains("classicTokenCanary"), "{text}");
    assert_eq!(worker.status().await["status"], "idle");
}

#[tokio::test]
async fn options_copilot_cannot_honour_are_refused_by_name() {
    let mock = MockAnthropic::start(Reply::Text("Hi.".into()));
    let worker = copilot_worker(&mock, &[]);
    for option in ["maxTurns", "appendSystemPrompt", "permissionMode"] {
        let mut body = copilot_job("hello");
        body["providerOptions"] = match option {
            "maxTurns" => json!({ "maxTurns": 3 }),
            "appendSystemPrompt" => json!({ "appendSystemPrompt": "be brief" }),
            _ => json!({ "permissionMode": "plan" }),
        };
        let resp = worker.post_execute(&body).await;
        assert_eq!(resp.status(), 422, "{option}");
        let error: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["field"], format!("providerOptions.{option}"));
    }
}

#[tokio::test]
async fn health_reports_the_copilot_version_and_why_cursor_is_unavailable() {
    let mock = MockAnthropic::start(Reply::Text("Hi.".into()));
    let worker = copilot_worker(&mock, &[("CURSOR_BIN", "/nonexistent/cursor-agent")]);
    // The versions are probed in the background after start-up; wait until the probe has answered.
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let health = loop {
        let health: serde_json::Value = crate::support::client()
            .get(worker.url("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["providers"]["copilot"]["version"].is_string() {
            break health;
        }
        assert!(std::time::Instant::now() < deadline, "no Copilot version: {health}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let copilot = &health["providers"]["copilot"];
    assert_eq!(copilot["available"], true);
    let pinned = crate::support::pinned("COPILOT_VERSION");
    assert!(copilot["version"].as_str().unwrap().contains(&pinned), "{copilot}");
    let cursor = &health["providers"]["cursor"];
    assert_eq!(cursor["available"], false);
    assert!(
        cursor["reason"].as_str().unwrap().contains("/nonexistent/cursor-agent"),
        "{cursor}"
    );
}

#[tokio::test]
async fn copilot_gets_its_own_variables_and_the_request_token_but_not_the_repository_tokens() {
    let cli = crate::support::FakeCli::new(
        r#"env > "$DIR/env"
printf '%s\n' "$@" > "$DIR/args"
cat > "$DIR/prompt"
printf '%s\n' '{"type":"assistant.message","data":{"content":"ok","toolRequests":[]}}'
printf '%s\n' '{"type":"result","sessionId":"'"$(sed -n '/--session-id/{n;p}' "$DIR/args")"'","exitCode":0,"usage":{"sessionDurationMs":5}}'"#,
    );
    let worker = TestWorker::spawn(&[
        ("COPILOT_BIN", cli.bin()),
        ("COPILOT_PROVIDER_BASE_URL", "http://127.0.0.1:9"),
        ("COPILOT_MODEL", "claude-sonnet-4"),
        ("GH_TOKEN", "gh-token-canary-7d1e"),
        ("GITHUB_TOKEN", "github-token-canary-90ab"),
    ]);
    let mut body = copilot_job("secret plan");
    body["codingAssistantAccessToken"] = json!("github_pat_requestCanary42");

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().data["type"], "completed");
    let env = std::fs::read_to_string(cli.file("env")).unwrap();
    assert!(env.contains("COPILOT_GITHUB_TOKEN=github_pat_requestCanary42"));
    assert!(env.contains("COPILOT_PROVIDER_BASE_URL=http://127.0.0.1:9"));
    assert!(env.contains("COPILOT_MODEL=claude-sonnet-4"));
    assert!(!env.contains("canary-7d1e") && !env.contains("canary-90ab"), "{env}");
    let args = std::fs::read_to_string(cli.file("args")).unwrap();
    assert!(args.lines().any(|a| a == "--session-id"), "{args}");
    assert!(!args.contains("secret plan"));
    assert_eq!(std::fs::read_to_string(cli.file("prompt")).unwrap(), "secret plan");
    let all: String = events.iter().map(|e| e.data.to_string()).collect();
    assert!(!all.contains("requestCanary42"));
}
