//! The completion webhook (docs/persistence.md) against a real receiver that verifies Standard Webhooks signatures.

use serde_json::{Value, json};

use crate::support::{
    FakeCli, INIT_LINE, RESULT_LINE, TestWorker, claude_bin, job,
    mock_anthropic::{MockAnthropic, Reply},
    recorder::{Fault, Recorded, Recorder, signature_is_valid},
    sse::{SseEvent, assert_well_formed, kinds},
};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DB_TOKEN: &str = "db-token-CANARY-hook-77aa";
const REQUEST_TOKEN: &str = "sk-ant-api03-CANARY-hook-4c21";

fn receiver() -> Recorder {
    let recorder = Recorder::start();
    recorder.lock().webhook_secret = Some(SECRET.to_string());
    recorder
}

fn hooked_worker(cli: &FakeCli, recorder: &Recorder, extra: &[(&str, &str)]) -> TestWorker {
    let base = recorder.base();
    let mut env = vec![
        ("CLAUDE_BIN", cli.bin()),
        ("WEBHOOK_SECRET", SECRET),
        ("CALLBACK_ALLOWED_HOSTS", "127.0.0.1"),
        ("CALLBACK_ALLOW_INSECURE", "1"),
        ("DB_BASE_URL", base.as_str()),
        ("OUTBOUND_REQUEST_TIMEOUT_SECONDS", "1"),
    ];
    env.extend_from_slice(extra);
    TestWorker::spawn(&env)
}

fn hooked_job(recorder: &Recorder, job_id: &str) -> Value {
    let mut body = job("hook me");
    body["jobId"] = json!(job_id);
    body["callback"] = json!({ "url": format!("{}/hooks/agent?topic=jobs", recorder.base()) });
    body
}

/// Runs a job to its end (the worker exits after the drain) and returns its events and the webhook requests.
async fn run(cli: &FakeCli, recorder: &Recorder, body: &Value) -> (Vec<SseEvent>, Vec<Recorded>) {
    // The fake CLIs print the key they hold, to show that it is redacted on its way to persistence and the
    // webhook: the path of a CLI without the model-API broker.
    let mut worker = hooked_worker(cli, recorder, &[("BROKER", "off")]);
    let events = worker.execute(body).await.collect().await;
    assert!(worker.exit_status().await.success());
    let logs = worker.logs();
    for secret in [DB_TOKEN, REQUEST_TOKEN, SECRET, "CANARY", "topic=jobs"] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    let hooks = recorder
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/hooks/"))
        .collect();
    (events, hooks)
}

#[tokio::test]
async fn a_successful_job_posts_a_signed_completion_that_the_receiver_verifies() {
    let recorder = receiver();
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho '{RESULT_LINE}'"));
    let (events, hooks) = run(&cli, &recorder, &hooked_job(&recorder, "job-ok")).await;

    assert_eq!(hooks.len(), 1);
    let hook = &hooks[0];
    assert_eq!(hook.status, Some(204), "the receiver accepted the signature");
    assert_eq!(hook.path, "/hooks/agent?topic=jobs");
    assert_eq!(hook.header("webhook-id"), Some("job-ok"));
    let ts: u64 = hook.header("webhook-timestamp").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 60, "timestamp {ts} is not now ({now})");
    assert!(signature_is_valid(SECRET, hook, &hook.body));

    let terminal = &events.last().unwrap().data;
    let body = hook.json();
    let duration = body["durationMs"].as_u64().expect("durationMs");
    assert_eq!(
        body,
        json!({"jobId":"job-ok","status":"completed","sessionId":"fake-session","result":"done","error":null,
               "changes":null,"pullRequest":null,"durationMs":duration,"costUsd":0.5,"completedAt":terminal["ts"]})
    );
}

#[tokio::test]
async fn the_receiver_rejects_a_tampered_body_or_a_wrong_secret() {
    let recorder = receiver();
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho '{RESULT_LINE}'"));
    let (_, hooks) = run(&cli, &recorder, &hooked_job(&recorder, "job-tamper")).await;
    let hook = &hooks[0];
    let tampered = String::from_utf8(hook.body.clone())
        .unwrap()
        .replace("completed", "error");
    assert!(!signature_is_valid(SECRET, hook, tampered.as_bytes()));
    assert!(!signature_is_valid(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        hook,
        &hook.body
    ));

    // The same receiver, over HTTP: the genuine request passes again, the tampered one is refused.
    let send = |body: Vec<u8>| {
        let mut req = crate::support::client()
            .post(format!("{}{}", recorder.base(), hook.path))
            .body(body);
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            req = req.header(name, hook.header(name).unwrap());
        }
        req.send()
    };
    assert_eq!(send(hook.body.clone()).await.unwrap().status(), 204);
    assert_eq!(send(tampered.into_bytes()).await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_failed_job_posts_the_error() {
    let recorder = receiver();
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho 'fatal: out of cheese' >&2\nexit 3"));
    let (events, hooks) = run(&cli, &recorder, &hooked_job(&recorder, "job-fail")).await;
    assert_eq!(hooks.len(), 1);
    assert!(signature_is_valid(SECRET, &hooks[0], &hooks[0].body));
    let body = hooks[0].json();
    let terminal = &events.last().unwrap().data;
    assert_eq!(body["status"], "error");
    assert_eq!(body["jobId"], "job-fail");
    assert_eq!(body["sessionId"], "fake-session");
    assert_eq!(body["result"], Value::Null);
    assert_eq!(body["costUsd"], Value::Null);
    assert_eq!(body["error"]["code"], "provider_failed");
    assert_eq!(body["error"]["exitCode"], 3);
    assert_eq!(body["error"]["message"], terminal["message"]);
    assert_eq!(body["error"]["retryable"], false);
    assert!(body["error"]["stderrTail"].as_str().unwrap().contains("out of cheese"));
    assert_eq!(body["completedAt"], terminal["ts"]);
}

#[tokio::test]
async fn the_webhook_is_retried_with_the_same_id_and_body_and_fresh_signatures() {
    let recorder = receiver();
    recorder.push_faults([Fault::Status(503), Fault::Drop, Fault::RetryAfter(0)]);
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\necho '{RESULT_LINE}'"));
    let (_, hooks) = run(&cli, &recorder, &hooked_job(&recorder, "job-retry")).await;
    assert_eq!(hooks.len(), 4);
    assert_eq!(hooks.last().unwrap().status, Some(204));
    for hook in &hooks {
        assert_eq!(hook.header("webhook-id"), Some("job-retry"));
        assert_eq!(hook.body, hooks[0].body);
        assert!(signature_is_valid(SECRET, hook, &hook.body));
    }
}

#[tokio::test]
async fn the_webhook_follows_the_flush_and_neither_carries_a_secret() {
    let recorder = receiver();
    let cli = FakeCli::new(&format!(
        r#"echo '{INIT_LINE}'
printf '{{"type":"assistant","message":{{"content":[{{"type":"text","text":"my key is %s"}}]}}}}\n' "$ANTHROPIC_API_KEY"
echo "stderr with $ANTHROPIC_API_KEY" >&2
echo '{RESULT_LINE}'"#
    ));
    let mut body = hooked_job(&recorder, "job-secrets");
    body["database"] = json!({"sessionId": "s-hook", "accessToken": DB_TOKEN});
    body["codingAssistantAccessToken"] = json!(REQUEST_TOKEN);
    let (events, hooks) = run(&cli, &recorder, &body).await;

    let requests = recorder.requests();
    let hook_at = requests.iter().position(|r| r.path.starts_with("/hooks/")).unwrap();
    let stored = recorder.stored_seqs("job-secrets");
    assert_eq!(stored.len(), events.len(), "every event persisted");
    assert!(
        requests[..hook_at].iter().filter(|r| r.is_chunks()).count() >= 1
            && requests[hook_at..].iter().all(|r| !r.is_chunks()),
        "the webhook comes after the last chunk"
    );
    assert_eq!(hooks.len(), 1);
    for request in &requests {
        let text = String::from_utf8_lossy(&request.body);
        for secret in [
            DB_TOKEN,
            REQUEST_TOKEN,
            SECRET,
            "CANARY",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(!text.contains(secret), "{secret} leaked to {}", request.path);
        }
    }
    let redacted = stored
        .iter()
        .filter(|s| {
            recorder
                .chunk("job-secrets", **s)
                .unwrap()
                .to_string()
                .contains("[REDACTED]")
        })
        .count();
    assert_eq!(
        redacted, 2,
        "the assistant text and the stderr line are persisted redacted"
    );
}

#[tokio::test]
async fn a_callback_outside_the_allowed_hosts_is_refused_before_the_job_starts() {
    let recorder = receiver();
    let cli = FakeCli::new("touch \"$DIR/started\"");
    let worker = hooked_worker(&cli, &recorder, &[("CALLBACK_ALLOWED_HOSTS", "hooks.example.com")]);
    let resp = worker.post_execute(&hooked_job(&recorder, "job-denied")).await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(body["error"]["field"], "callback.url");
    assert_eq!(worker.status().await["status"], "idle");
    assert!(!cli.file("started").exists());
}

#[tokio::test]
async fn a_real_claude_code_job_is_persisted_whole_and_reported_by_the_webhook() {
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from the agent\n".into(),
        final_text: "I wrote hello.txt.".into(),
    });
    let recorder = receiver();
    let bin = claude_bin();
    let base_url = mock.base_url();
    let mut worker = hooked_worker(
        &FakeCli::new("exit 1"),
        &recorder,
        &[
            ("CLAUDE_BIN", bin.as_str()),
            ("ANTHROPIC_BASE_URL", base_url.as_str()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("CLAUDE_CODE_MAX_RETRIES", "0"),
            ("IS_SANDBOX", "1"),
        ],
    );
    let mut body = hooked_job(&recorder, "job-real");
    body["database"] = json!({"sessionId": "real-session", "accessToken": crate::persistence::DB_TOKEN});

    let events = worker.execute(&body).await.collect().await;
    assert!(worker.exit_status().await.success());

    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().kind(), "completed", "{:?}", kinds(&events));
    crate::persistence::assert_persisted_exactly(&recorder, "job-real", &events);
    let hooks: Vec<Recorded> = recorder
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/hooks/"))
        .collect();
    assert_eq!(hooks.len(), 1);
    assert!(signature_is_valid(SECRET, &hooks[0], &hooks[0].body));
    let hook = hooks[0].json();
    let session = events.iter().find(|e| e.kind() == "session").expect("session event");
    assert_eq!(hook["status"], "completed");
    assert_eq!(hook["result"], "I wrote hello.txt.");
    assert_eq!(hook["sessionId"], session.data["sessionId"]);
    assert!(hook["costUsd"].is_number());
}
