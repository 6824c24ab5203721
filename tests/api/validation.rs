//! Every validation row of docs/api.md: status, code, field — and the slot stays free, nothing lands on disk.

use serde_json::{Value, json};

use crate::support::{TestWorker, client, job};

async fn assert_rejected(worker: &TestWorker, resp: reqwest::Response, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(field) = field {
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    assert_eq!(
        worker.status().await["status"],
        "idle",
        "a rejected request must not take the slot"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&worker.workspace_dir).expect("workspace").collect();
    assert!(leftovers.is_empty(), "a rejected request must leave nothing on disk");
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

#[tokio::test]
async fn invalid_bodies_are_refused_with_the_field_named_and_the_slot_untouched() {
    let worker = TestWorker::spawn(&[("MAX_BODY_BYTES", "4096")]);
    let post_raw = |body: &'static str, content_type: &'static str| {
        client()
            .post(worker.url("/execute"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };

    assert_rejected(
        &worker,
        post_raw("{nope", "application/json").await.unwrap(),
        400,
        "invalid_json",
        None,
    )
    .await;
    // A NUL byte once reached libgit2's name check and closed the connection without an answer.
    let nul_branch = with(
        job("x"),
        "github",
        json!({"repoUrl": "https://github.com/o/r", "branch": "main\u{0}x"}),
    );
    assert_rejected(
        &worker,
        worker.post_execute(&nul_branch).await,
        422,
        "invalid_request",
        Some("github.branch"),
    )
    .await;
    let wrong_type = with(job("x"), "timeoutSeconds", json!("soon"));
    assert_rejected(
        &worker,
        worker.post_execute(&wrong_type).await,
        400,
        "invalid_json",
        Some("timeoutSeconds"),
    )
    .await;

    let cases: Vec<(Value, &str)> = vec![
        (json!({"codingAssistantProvider": "claude-code"}), "userRequest"),
        (with(job("x"), "userRequest", json!("   ")), "userRequest"),
        (json!({"userRequest": "x"}), "codingAssistantProvider"),
        (
            with(job("x"), "codingAssistantProvider", json!("gpt-engineer")),
            "codingAssistantProvider",
        ),
        (with(job("x"), "colour", json!("red")), "colour"),
        (
            with(job("x"), "providerOptions", json!({"maxTurns": 0})),
            "providerOptions.maxTurns",
        ),
        (
            with(job("x"), "providerOptions", json!({"permissionMode": "yolo"})),
            "providerOptions.permissionMode",
        ),
        (
            with(job("x"), "providerOptions", json!({"temperature": 1})),
            "providerOptions.temperature",
        ),
        (with(job("x"), "github", json!({"branch": "main"})), "github.repoUrl"),
        (with(job("x"), "workspace", json!("../outside")), "workspace"),
        (with(job("x"), "workspace", json!("/etc")), "workspace"),
        (with(job("x"), "resumeSessionId", json!("../../x")), "resumeSessionId"),
        (with(job("x"), "timeoutSeconds", json!(0)), "timeoutSeconds"),
        (
            with(
                job("x"),
                "database",
                json!({"sessionId": "s", "accessToken": "database-token-1"}),
            ),
            "database",
        ),
    ];
    for (body, field) in cases {
        let resp = worker.post_execute(&body).await;
        assert_rejected(&worker, resp, 422, "invalid_request", Some(field)).await;
    }

    for url in [
        "http://github.com/o/r.git",
        "https://gitlab.com/o/r.git",
        "https://user:pass@github.com/o/r.git",
        "file:///srv/repo.git",
        "/srv/repo.git",
        "https://140.82.112.3/o/r.git",
    ] {
        let body = with(job("x"), "github", json!({ "repoUrl": url }));
        assert_rejected(
            &worker,
            worker.post_execute(&body).await,
            422,
            "repo_url_not_allowed",
            Some("github.repoUrl"),
        )
        .await;
    }

    assert_rejected(
        &worker,
        post_raw("{}", "text/plain").await.unwrap(),
        415,
        "unsupported_media_type",
        None,
    )
    .await;
    let big = with(job("x"), "userRequest", json!("y".repeat(5000)));
    assert_rejected(&worker, worker.post_execute(&big).await, 413, "payload_too_large", None).await;
}

#[tokio::test]
async fn a_configured_api_token_guards_the_job_endpoints_only() {
    let token = "worker-api-token-0123456789";
    let worker = TestWorker::spawn(&[("WORKER_API_TOKEN", token)]);
    for (method, path) in [("POST", "/execute"), ("GET", "/events"), ("POST", "/cancel")] {
        let req = client()
            .request(method.parse().unwrap(), worker.url(path))
            .json(&job("x"));
        assert_rejected(&worker, req.send().await.unwrap(), 401, "unauthorized", None).await;
        let req = client()
            .request(method.parse().unwrap(), worker.url(path))
            .bearer_auth("wrong-token-123456789");
        assert_rejected(
            &worker,
            req.json(&job("x")).send().await.unwrap(),
            401,
            "unauthorized",
            None,
        )
        .await;
    }
    for path in ["/health", "/status"] {
        let resp = client().get(worker.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(!resp.text().await.unwrap().contains(token));
    }
    // With the token, the request gets past authentication to validation.
    let resp = client()
        .post(worker.url("/execute"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
}

#[tokio::test]
async fn health_reports_providers_and_status_is_idle_before_any_job() {
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", "/nonexistent/claude")]);
    let health: Value = client()
        .get(worker.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string() && health["workerId"].is_string());
    assert_eq!(health["providers"]["claude-code"]["available"], false);
    assert!(health["providers"]["claude-code"]["reason"].is_string());
    let status = worker.status().await;
    assert_eq!(
        status,
        json!({"status":"idle","jobId":null,"provider":null,"startedAt":null,"lastEventId":null})
    );
    let resp = worker.events_after(None).await;
    assert_eq!(resp.status(), 404);
}
