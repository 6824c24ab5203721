//! End to end with the real Codex CLI (0.169.0) against the mock OpenAI Responses API of the test suite.
//! The worker finds the operator's Codex config at `$HOME/.codex/config.toml`, which makes the mock its model
//! provider; the request's token reaches the CLI as `OPENAI_API_KEY`, the variable that provider names.

use std::{path::Path, time::Duration};

use serde_json::{Value, json};

use crate::support::{
    SseStream, TestWorker, codex_bin,
    mock_openai::{MockOpenAi, Reply},
    sse::{SseEvent, assert_well_formed, assert_write_file_story},
};

const KEY: &str = "sk-codex-CANARY-request-4e1b7d";

pub fn codex_worker(mock: &MockOpenAi, extra: &[(&str, &str)]) -> TestWorker {
    let bin = codex_bin();
    assert!(
        Path::new(&bin).exists(),
        "the Codex CLI is not at {bin}; run scripts/install-clis.sh or set CODEX_BIN"
    );
    let mut env = vec![("CODEX_BIN", bin.as_str()), ("KEEP_WORKSPACE", "1")];
    env.extend_from_slice(extra);
    let worker = TestWorker::spawn(&env);
    // Read by the worker when a job starts, so writing it after start-up is in time.
    let config_dir = worker.home.join(".codex");
    std::fs::create_dir_all(&config_dir).expect("operator's codex home");
    std::fs::write(config_dir.join("config.toml"), mock.config_toml()).expect("config.toml");
    worker
}

pub fn codex_job(prompt: &str) -> Value {
    json!({ "userRequest": prompt, "codingAssistantProvider": "codex", "codingAssistantAccessToken": KEY })
}

fn find<'a>(events: &'a [SseEvent], kind: &str) -> &'a SseEvent {
    events
        .iter()
        .find(|e| e.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
}

#[tokio::test]
async fn the_real_codex_cli_writes_a_file_and_the_stream_tells_the_whole_story() {
    let mock = MockOpenAi::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from codex\n".into(),
        final_text: "I wrote hello.txt.".into(),
    });
    let worker = codex_worker(&mock, &[]);
    let mut body = codex_job("Create hello.txt");
    body["workspace"] = json!("e2e");

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    assert_write_file_story(&events);
    let session = &find(&events, "session").data["sessionId"];
    let tool_use = find(&events, "tool_use");
    assert_eq!(tool_use.data["name"], "file_change");
    assert_eq!(tool_use.data["input"]["changes"][0]["kind"], "add");
    let tool_result = find(&events, "tool_result");
    assert_eq!(tool_result.data["toolUseId"], tool_use.data["id"]);
    assert_eq!(tool_result.data["isError"], false);
    let done = &events.last().unwrap().data;
    assert_eq!(&done["sessionId"], session);
    assert_eq!(done["result"], "I wrote hello.txt.");
    assert_eq!(
        done["usage"],
        json!({"inputTokens": 160, "outputTokens": 20, "cacheReadTokens": 40, "cacheCreationTokens": 0,
            "metered": true, "modelCalls": 2}),
        "two model calls of 100 input tokens (20 cached) and 10 output tokens each"
    );
    let written = std::fs::read_to_string(worker.workspace_dir.join("e2e/hello.txt")).expect("the CLI wrote the file");
    assert_eq!(written, "hello from codex\n");
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if meta.is_file()
            && std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn the_request_token_reaches_the_codex_cli_and_nothing_else() {
    let mock = MockOpenAi::start(Reply::Text("Hi.".into()));
    let mut worker = codex_worker(&mock, &[]);
    let mut body = codex_job("hello");
    body["jobId"] = json!("codex-canary-job");

    let mut stream: SseStream = worker.execute(&body).await;
    let events = stream.collect().await;
    assert_eq!(
        events.last().unwrap().kind(),
        "completed",
        "{:?}",
        events.last().unwrap().data
    );
    assert!(worker.exit_status().await.success());

    assert!(!mock.authorizations().is_empty());
    for authorization in mock.authorizations() {
        assert_eq!(
            authorization,
            format!("Bearer {KEY}"),
            "the CLI authenticated with the request's token"
        );
    }
    let streamed = String::from_utf8(stream.raw.clone()).unwrap();
    assert!(!streamed.contains("CANARY"), "the token leaked into the stream");
    assert!(!worker.logs().contains("CANARY"), "the token leaked into the logs");
    assert_eq!(files_containing(&worker.home, "CANARY"), Vec::<String>::new());
    assert_eq!(files_containing(&worker.workspace_dir, "CANARY"), Vec::<String>::new());
    assert!(
        !worker.home.join(".unified-worker/jobs/codex-canary-job").exists(),
        "the job's private folder (its CODEX_HOME) is removed after the job"
    );
}

#[tokio::test]
async fn health_lists_codex_with_its_version() {
    let mock = MockOpenAi::start(Reply::Text("Hi.".into()));
    let worker = codex_worker(&mock, &[]);
    // The versions are probed in the background after start-up; wait until the probe has answered.
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let codex = loop {
        let health: Value = crate::support::client()
            .get(worker.url("/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["providers"]["codex"]["version"].is_string() {
            break health["providers"]["codex"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no codex version: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(codex["available"], true);
    assert_eq!(
        codex["version"],
        format!("codex-cli {}", crate::support::pinned("CODEX_VERSION"))
    );
}
