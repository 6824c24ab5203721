//! Cloning from a real git server over HTTP (`git http-backend` on 127.0.0.1): shallow and full, branches,
//! credentials, progress, and every way a clone can fail or be stopped.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    FakeCli, INIT_LINE, PATIENCE, RESULT_LINE, SseStream, TestWorker,
    git_server::{GitServer, Mode, many_files, random_bytes},
    job,
    sse::{SseEvent, assert_well_formed},
};

pub fn quiet_cli() -> FakeCli {
    FakeCli::new(&format!("echo '{INIT_LINE}'\necho '{RESULT_LINE}'"))
}

pub fn git_worker(cli: &FakeCli, extra: &[(&str, &str)]) -> TestWorker {
    let mut env = vec![
        ("CLAUDE_BIN", cli.bin()),
        ("GIT_ALLOW_INSECURE", "1"),
        ("GIT_ALLOWED_HOSTS", "127.0.0.1"),
        ("KEEP_WORKSPACE", "1"),
    ];
    env.extend_from_slice(extra);
    TestWorker::spawn(&env)
}

pub fn repo_job(github: Value) -> Value {
    let mut body = job("work on the repo");
    body["github"] = github;
    body["workspace"] = json!("ws");
    body
}

/// Runs `git` in the cloned workspace.
pub fn in_workspace(worker: &TestWorker, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(worker.workspace_dir.join("ws"))
        .output()
        .expect("git");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// With `EXIT_AFTER_JOB=false` the worker takes the next job once it is idle again (after the stream's end).
fn three_commits() -> Vec<Vec<(String, Vec<u8>)>> {
    (0..3)
        .map(|i| vec![(format!("f{i}.txt"), format!("{i}\n").into_bytes())])
        .collect()
}

fn terminal(events: &[SseEvent]) -> &Value {
    &events.last().expect("events").data
}

#[tokio::test]
async fn a_shallow_clone_checks_out_the_remotes_default_branch() {
    let server = GitServer::start();
    server.create_repo("app", "trunk", &three_commits());
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[]);

    let events = worker
        .execute(&repo_job(json!({"repoUrl": server.url("app")})))
        .await
        .collect()
        .await;

    assert_well_formed(&events, 0);
    let end = terminal(&events);
    assert_eq!(end["type"], "completed", "{end}");
    assert_eq!(end["changes"]["filesChanged"], 0);
    assert_eq!(in_workspace(&worker, &["symbolic-ref", "--short", "HEAD"]), "trunk");
    assert_eq!(in_workspace(&worker, &["rev-list", "--count", "HEAD"]), "1");
    assert!(worker.workspace_dir.join("ws/.git/shallow").exists());
    assert!(worker.workspace_dir.join("ws/f2.txt").exists());
    assert_eq!(
        in_workspace(&worker, &["config", "remote.origin.url"]),
        server.url("app")
    );
}

#[tokio::test]
async fn a_full_clone_of_a_named_branch_has_the_whole_history() {
    let server = GitServer::start();
    server.create_repo("app", "main", &three_commits());
    server.add_branch("app", "main", "feature", "feature.txt");
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[]);

    let body = repo_job(json!({"repoUrl": server.url("app"), "branch": "feature", "depth": 0}));
    let events = worker.execute(&body).await.collect().await;

    assert_eq!(terminal(&events)["type"], "completed", "{}", terminal(&events));
    assert_eq!(in_workspace(&worker, &["symbolic-ref", "--short", "HEAD"]), "feature");
    assert_eq!(in_workspace(&worker, &["rev-list", "--count", "HEAD"]), "4");
    assert!(!worker.workspace_dir.join("ws/.git/shallow").exists());
    assert!(worker.workspace_dir.join("ws/feature.txt").exists());
}

#[tokio::test]
async fn a_clone_of_thousands_of_files_reports_progress_that_reaches_done_and_never_goes_back() {
    let server = GitServer::start();
    server.create_repo("big", "main", &[many_files(3000)]);
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[]);

    let events = worker
        .execute(&repo_job(json!({"repoUrl": server.url("big")})))
        .await
        .collect()
        .await;

    assert_eq!(terminal(&events)["type"], "completed", "{}", terminal(&events));
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e.kind() == "github_pull_progress")
        .map(|e| &e.data)
        .collect();
    let phases = ["connecting", "receiving", "resolving", "checkout", "done"];
    let rank = |p: &Value| phases.iter().position(|x| p["phase"] == *x).expect("known phase");
    for pair in progress.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(rank(b) >= rank(a), "phase went back: {a} → {b}");
        for field in [
            "percent",
            "receivedObjects",
            "totalObjects",
            "indexedDeltas",
            "receivedBytes",
        ] {
            assert!(b[field].as_u64() >= a[field].as_u64(), "{field} went back: {a} → {b}");
        }
        if rank(a) == rank(b) {
            let gap = millis(b) - millis(a);
            assert!(gap >= 90, "more than 10 events a second within a phase: {a} → {b}");
        }
    }
    let last = progress.last().expect("progress events");
    assert_eq!(
        (last["phase"].as_str(), last["percent"].as_u64()),
        (Some("done"), Some(100))
    );
    assert!(last["totalObjects"].as_u64() > Some(3000), "{last}");
    assert_eq!(last["receivedObjects"], last["totalObjects"]);
    assert!(progress.iter().any(|p| p["phase"] == "checkout"));
    let connected_at = events.iter().position(|e| e.kind() == "github_pull_progress");
    let session_at = events.iter().position(|e| e.kind() == "session");
    assert!(connected_at < session_at, "the clone happens before the provider runs");
}

fn millis(event: &Value) -> i64 {
    let ts = event["ts"].as_str().expect("ts");
    let at = humantime::parse_rfc3339(ts).expect("rfc3339");
    at.duration_since(std::time::UNIX_EPOCH).expect("epoch").as_millis() as i64
}

#[tokio::test]
async fn a_missing_branch_ends_with_checkout_failed() {
    let server = GitServer::start();
    server.create_repo("app", "main", &three_commits());
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[]);

    let body = repo_job(json!({"repoUrl": server.url("app"), "branch": "nope"}));
    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    let end = terminal(&events);
    assert_eq!(end["code"], "checkout_failed", "{end}");
    assert!(end["message"].as_str().unwrap().contains("nope"), "{end}");
    assert!(!events.iter().any(|e| e.kind() == "session"), "the provider never ran");
}

#[tokio::test]
async fn a_private_repo_is_cloned_with_the_token_and_a_wrong_token_fails_after_one_attempt() {
    let server = GitServer::start();
    server.create_repo("private", "main", &three_commits());
    server.require_token("ghp_right_token_123");
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[("EXIT_AFTER_JOB", "false"), ("KEEP_WORKSPACE", "0")]);
    let url = server.url("private");

    let good = repo_job(json!({"repoUrl": url, "accessToken": "ghp_right_token_123"}));
    let events = worker.execute(&good).await.collect().await;
    assert_eq!(terminal(&events)["type"], "completed", "{}", terminal(&events));

    worker.wait_for_status("idle").await;
    let before = server.seen().len();
    let wrong = repo_job(json!({"repoUrl": url, "accessToken": "ghp_wrong_token_456"}));
    let events = worker.execute(&wrong).await.collect().await;
    assert_well_formed(&events, 0);
    assert_eq!(terminal(&events)["code"], "auth_failed", "{}", terminal(&events));
    assert!(
        !worker.logs().contains("ghp_wrong_token_456"),
        "a refused token is not logged"
    );
    let attempts = server.seen()[before..]
        .iter()
        .filter(|s| s.authorization.is_some())
        .count();
    assert_eq!(attempts, 1, "the wrong token is tried once, not replayed");

    worker.wait_for_status("idle").await;
    let none = repo_job(json!({"repoUrl": url}));
    let events = worker.execute(&none).await.collect().await;
    let end = terminal(&events);
    assert_eq!(end["code"], "auth_failed", "{end}");
    assert!(end["message"].as_str().unwrap().contains("accessToken"), "{end}");
}

#[tokio::test]
async fn a_stalled_server_fails_the_clone_within_the_clone_timeout() {
    let server = GitServer::start();
    server.set_mode(Mode::Stall);
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[("CLONE_TIMEOUT_SECONDS", "1")]);

    let started = Instant::now();
    let events = worker
        .execute(&repo_job(json!({"repoUrl": server.url("app")})))
        .await
        .collect()
        .await;

    assert_well_formed(&events, 0);
    assert_eq!(terminal(&events)["code"], "clone_failed", "{}", terminal(&events));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(server.connections() >= 1);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused() {
    let server = GitServer::start();
    server.create_repo("app", "main", &three_commits());
    server.set_mode(Mode::RedirectTo("localhost".into()));
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[]);

    let events = worker
        .execute(&repo_job(json!({"repoUrl": server.url("app")})))
        .await
        .collect()
        .await;

    let end = terminal(&events);
    assert_eq!(end["code"], "clone_failed", "{end}");
    assert!(end["message"].as_str().unwrap().contains("redirect"), "{end}");
    let seen = server.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.host.starts_with("127.0.0.1")),
        "the redirect was followed: {seen:?}"
    );
}

#[tokio::test]
async fn a_redirect_on_the_same_host_is_followed() {
    let server = GitServer::start();
    server.create_repo("app", "main", &three_commits());
    server.set_mode(Mode::Renamed {
        old: "old-name".into(),
        new: "app".into(),
    });
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[]);

    let events = worker
        .execute(&repo_job(json!({"repoUrl": server.url("old-name")})))
        .await
        .collect()
        .await;

    assert_eq!(terminal(&events)["type"], "completed", "{}", terminal(&events));
    assert!(worker.workspace_dir.join("ws/f2.txt").exists());
    assert!(server.seen().iter().any(|s| s.path.starts_with("/app.git/")));
}

#[tokio::test]
async fn rejected_repo_urls_are_refused_before_any_connection() {
    let server = GitServer::start();
    server.create_repo("app", "main", &three_commits());
    let cli = quiet_cli();
    let strict = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("GIT_ALLOWED_HOSTS", "127.0.0.1")]);
    let lenient = git_worker(&cli, &[]);
    let port = server.port;
    let cases = [
        (&strict, server.url("app")),
        (
            &lenient,
            format!("http://x-access-token:secret123@127.0.0.1:{port}/app.git"),
        ),
        (&lenient, format!("http://localhost:{port}/app.git")),
        (&lenient, format!("file://{}", server.bare("app").display())),
        (&lenient, server.bare("app").display().to_string()),
        (&lenient, format!("http://[::1]:{port}/app.git")),
    ];
    for (worker, url) in cases {
        let resp = worker.post_execute(&repo_job(json!({"repoUrl": url}))).await;
        assert_eq!(resp.status(), 422, "{url}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "repo_url_not_allowed", "{url}: {body}");
        assert_eq!(body["error"]["field"], "github.repoUrl");
    }
    assert_eq!(server.connections(), 0, "no connection for a refused URL");
    assert_eq!(strict.status().await["status"], "idle");
}

/// A clone kept in progress by a slow server, stopped by `stop`; the server sees the download broken off.
async fn stop_a_clone_in_progress(
    extra: &[(&str, &str)],
    body_extra: Option<(&str, Value)>,
    stop: impl AsyncFnOnce(&TestWorker),
) -> (Vec<SseEvent>, GitServer) {
    let server = GitServer::start();
    let files = (0..4)
        .map(|i| (format!("blob{i}.bin"), random_bytes(512 * 1024, i + 1)))
        .collect();
    server.create_repo("slow", "main", &[files]);
    server.set_mode(Mode::Drip);
    let cli = quiet_cli();
    let worker = git_worker(&cli, extra);
    let mut body = repo_job(json!({"repoUrl": server.url("slow")}));
    if let Some((field, value)) = body_extra {
        body[field] = value;
    }

    let mut stream: SseStream = worker.execute(&body).await;
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().await {
        let receiving = event.kind() == "github_pull_progress" && event.data["phase"] == "receiving";
        events.push(event);
        if receiving {
            break;
        }
    }
    stop(&worker).await;
    events.extend(stream.collect().await);

    let deadline = Instant::now() + PATIENCE;
    while server.cut_short() == 0 {
        assert!(Instant::now() < deadline, "the clone kept downloading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!events.iter().any(|e| e.kind() == "session"), "the provider never ran");
    (events, server)
}

#[tokio::test]
async fn cancel_stops_a_clone_in_progress() {
    let (events, _server) = stop_a_clone_in_progress(&[], None, async |worker| {
        assert_eq!(worker.cancel().await.status(), 202);
    })
    .await;
    assert_well_formed(&events, 0);
    assert_eq!(terminal(&events)["code"], "cancelled", "{}", terminal(&events));
}

#[tokio::test]
async fn sigterm_stops_a_clone_in_progress() {
    let (events, _server) = stop_a_clone_in_progress(&[], None, async |worker| worker.signal(libc::SIGTERM)).await;
    assert_well_formed(&events, 0);
    assert_eq!(terminal(&events)["code"], "shutdown", "{}", terminal(&events));
}

#[tokio::test]
async fn the_job_timeout_stops_a_clone_in_progress() {
    let (events, _server) = stop_a_clone_in_progress(&[], Some(("timeoutSeconds", json!(1))), async |_| {}).await;
    assert_well_formed(&events, 0);
    assert_eq!(terminal(&events)["code"], "timeout", "{}", terminal(&events));
}
