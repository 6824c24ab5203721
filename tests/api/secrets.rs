//! Canary tokens: request and worker secrets never leave the worker, except the one variable the CLI needs (docs/git.md).

use serde_json::json;

use crate::support::{FakeCli, INIT_LINE, RESULT_LINE, SseStream, TestWorker, client, job};

const REQUEST_TOKEN: &str = "sk-ant-api03-CANARY-request-7f3a9c";
const API_TOKEN: &str = "worker-api-CANARY-token-51d2e8";

#[tokio::test]
async fn canary_tokens_appear_nowhere_but_in_the_one_variable_that_needs_them() {
    let cli = FakeCli::new(&format!(
        r#"env > "$DIR/env.txt"
echo '{INIT_LINE}'
printf '{{"type":"assistant","message":{{"content":[{{"type":"text","text":"my key is %s"}}]}}}}\n' "$ANTHROPIC_API_KEY"
echo "raw line with $ANTHROPIC_API_KEY"
echo "stderr with $ANTHROPIC_API_KEY" >&2
echo '{RESULT_LINE}'"#
    ));
    // The path of a CLI that holds its key (`BROKER=off`, or a provider the broker cannot serve): what it prints
    // of the key is redacted. With the broker the CLI never has the key at all (tests/api/broker.rs).
    let mut worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("WORKER_API_TOKEN", API_TOKEN),
        ("EXIT_AFTER_JOB", "false"),
        ("BROKER", "off"),
    ]);

    // An error body for a request carrying the token does not echo it.
    let mut bad = job("x");
    bad["codingAssistantAccessToken"] = json!(REQUEST_TOKEN);
    bad["providerOptions"] = json!({"maxTurns": 0});
    let resp = client()
        .post(worker.url("/execute"))
        .bearer_auth(API_TOKEN)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let error_body = resp.text().await.unwrap();

    let mut body = job("x");
    body["codingAssistantAccessToken"] = json!(REQUEST_TOKEN);
    let resp = client()
        .post(worker.url("/execute"))
        .bearer_auth(API_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = SseStream::new(resp);
    let events = stream.collect().await;
    assert_eq!(events.last().unwrap().kind(), "completed");
    let replay = client()
        .get(worker.url("/events"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status = worker.status().await.to_string();

    worker.signal(libc::SIGTERM);
    assert!(worker.exit_status().await.success());
    let streamed = String::from_utf8(stream.raw.clone()).unwrap();
    for (what, text) in [
        ("stream", &streamed),
        ("replay", &replay),
        ("error body", &error_body),
        ("status", &status),
        ("logs", &worker.logs()),
    ] {
        assert!(!text.contains(REQUEST_TOKEN), "request token leaked in {what}");
        assert!(!text.contains(API_TOKEN), "API token leaked in {what}");
        assert!(!text.contains("CANARY"), "part of a canary leaked in {what}");
    }
    assert_eq!(
        streamed.matches("[REDACTED]").count(),
        3,
        "assistant text, stdout line and stderr line are redacted"
    );

    let env = std::fs::read_to_string(cli.file("env.txt")).unwrap();
    assert!(
        env.contains(&format!("ANTHROPIC_API_KEY={REQUEST_TOKEN}")),
        "the CLI gets the request token"
    );
    assert_eq!(env.matches(REQUEST_TOKEN).count(), 1, "only in its own variable");
    assert!(!env.contains(API_TOKEN) && !env.contains("WORKER_API_TOKEN"));
    assert!(
        !env.contains("sk-ant-api03-test-key"),
        "the worker's own key is replaced, not passed alongside"
    );
}

#[tokio::test]
async fn oauth_tokens_are_routed_to_the_oauth_variable() {
    let cli = FakeCli::new(&format!(
        "env > \"$DIR/env.txt\"\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin())]);
    let mut body = job("x");
    body["codingAssistantAccessToken"] = json!("sk-ant-oat01-CANARY-oauth-token");
    worker.execute(&body).await.collect().await;
    let env = std::fs::read_to_string(cli.file("env.txt")).unwrap();
    // The broker's placeholder stands in the OAuth variable, so the CLI sends it as a bearer token, where the
    // broker puts the real one.
    assert!(env.contains("CLAUDE_CODE_OAUTH_TOKEN=uwb-"), "{env}");
    assert!(!env.contains("CANARY"), "{env}");
    assert!(!env.contains("ANTHROPIC_API_KEY="));
}

#[tokio::test]
async fn a_credentials_json_is_written_private_and_removed_after_the_job() {
    let cli = FakeCli::new(&format!(
        "stat -c %a \"$CLAUDE_CONFIG_DIR/.credentials.json\" > \"$DIR/mode\"\ncat \"$CLAUDE_CONFIG_DIR/.credentials.json\" > \"$DIR/creds\"\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("EXIT_AFTER_JOB", "false"),
        ("ANTHROPIC_API_KEY", ""),
    ]);
    let creds = json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-CANARY-json", "refreshToken": "sk-ant-ort01-CANARY-json", "expiresAt": 1}});
    let mut body = job("x");
    body["codingAssistantAccessToken"] = creds.clone();
    let events = worker.execute(&body).await.collect().await;
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert_eq!(std::fs::read_to_string(cli.file("mode")).unwrap().trim(), "600");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cli.file("creds")).unwrap()).unwrap();
    assert_eq!(written, creds);
    assert!(
        !worker.home.join(".claude/.credentials.json").exists(),
        "request credentials do not outlive the job"
    );
}

#[tokio::test]
async fn a_credentials_json_that_outlives_the_job_reaches_the_cli_only_as_the_placeholder() {
    let cli = FakeCli::new(&format!(
        "env > \"$DIR/env.txt\"\nls -a \"$CLAUDE_CONFIG_DIR\" > \"$DIR/files\"\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("ANTHROPIC_API_KEY", "")]);
    let in_a_day = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
    let expires_at = in_a_day.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut body = job("x");
    body["codingAssistantAccessToken"] = json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-CANARY-json",
        "refreshToken": "sk-ant-ort01-CANARY-json", "expiresAt": expires_at}});

    let events = worker.execute(&body).await.collect().await;

    assert_eq!(events.last().unwrap().kind(), "completed");
    let env = std::fs::read_to_string(cli.file("env.txt")).unwrap();
    assert!(env.contains("CLAUDE_CODE_OAUTH_TOKEN=uwb-"), "{env}");
    assert!(!env.contains("CANARY"), "{env}");
    let files = std::fs::read_to_string(cli.file("files")).unwrap();
    assert!(!files.contains(".credentials.json"), "{files}");
}
