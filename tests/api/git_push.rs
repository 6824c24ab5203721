//! After the run: the change summary, the push to the test server's bare repository and the pull request against a
//! fake GitHub API, with the real Claude Code CLI and with scripted ones; and the git token as a canary.

use serde_json::{Value, json};

use crate::{
    claude_code::claude_worker,
    git::{git_worker, quiet_cli, repo_job},
    support::{
        FakeCli, INIT_LINE, RESULT_LINE, TestWorker,
        fake_github::FakeGithub,
        git_server::GitServer,
        http::base64,
        mock_anthropic::{MockAnthropic, Reply},
        sse::{SseEvent, assert_well_formed, kinds},
    },
};

const TOKEN: &str = "ghp_CANARYgitToken0123456789";

fn base_repo(server: &GitServer) {
    let files = vec![
        ("README.md".to_string(), b"# app\nline two\n".to_vec()),
        ("old.txt".to_string(), b"to be removed\n".to_vec()),
    ];
    server.create_repo("acme/app", "main", &[files]);
    server.require_token(TOKEN);
}

fn find<'a>(events: &'a [SseEvent], kind: &str) -> &'a Value {
    &events
        .iter()
        .find(|e| e.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind}: {:?}", kinds(events)))
        .data
}

fn push_job(server: &GitServer, pull_request: Option<Value>) -> Value {
    let mut push = json!({"branch": "agent/change", "commitMessage": "Agent change\n\nDetails."});
    if let Some(pr) = pull_request {
        push["pullRequest"] = pr;
    }
    repo_job(json!({"repoUrl": server.url("acme/app"), "accessToken": TOKEN, "push": push}))
}

#[tokio::test]
async fn the_real_cli_writes_a_file_that_is_summarized_pushed_and_proposed() {
    let server = GitServer::start();
    base_repo(&server);
    let github = FakeGithub::start(
        "201 Created",
        json!({"html_url": "https://github.example/acme/app/pull/7", "number": 7}),
    );
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: "hello from the agent\n".into(),
        final_text: "I wrote hello.txt.".into(),
    });
    let api = github.api_url();
    let worker = claude_worker(
        &mock,
        &[
            ("GIT_ALLOW_INSECURE", "1"),
            ("GIT_ALLOWED_HOSTS", "127.0.0.1"),
            ("GITHUB_API_URL", api.as_str()),
            ("GIT_AUTHOR_NAME", "Agent Smith"),
            ("GIT_AUTHOR_EMAIL", "agent@example.com"),
        ],
    );
    let pr = json!({"title": "Add hello", "body": "Made by the agent", "base": "main", "draft": true});

    let events = worker.execute(&push_job(&server, Some(pr))).await.collect().await;

    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["type"], "completed", "{end}");
    let changes = find(&events, "git_changes");
    assert_eq!(
        changes["files"],
        json!([{"path": "hello.txt", "status": "added", "insertions": 1, "deletions": 0}])
    );
    for field in ["filesChanged", "insertions", "deletions", "files"] {
        assert_eq!(end["changes"][field], changes[field], "{field}");
    }
    let pushed = find(&events, "git_push");
    assert_eq!(pushed["branch"], "agent/change");
    assert_eq!(pushed["remote"], server.url("acme/app"));
    assert_eq!(
        end["pullRequest"],
        json!({"url": "https://github.example/acme/app/pull/7", "number": 7})
    );
    assert_eq!(find(&events, "pull_request")["number"], 7);
    let order: Vec<&str> = kinds(&events)
        .into_iter()
        .filter(|k| ["git_changes", "git_push", "pull_request", "completed"].contains(k))
        .collect();
    assert_eq!(order, ["git_changes", "git_push", "pull_request", "completed"]);

    // The bare repository has the branch: one commit on top of main, holding the file, by the configured author.
    let commit = pushed["commit"].as_str().unwrap();
    assert_eq!(server.git("acme/app", &["rev-parse", "agent/change"]), commit);
    assert_eq!(
        server.git("acme/app", &["rev-list", "--count", "main..agent/change"]),
        "1"
    );
    assert_eq!(
        server.git("acme/app", &["show", "agent/change:hello.txt"]),
        "hello from the agent"
    );
    assert_eq!(
        server.git("acme/app", &["log", "-1", "--format=%an <%ae>|%s", "agent/change"]),
        "Agent Smith <agent@example.com>|Agent change"
    );

    let requests = github.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/repos/acme/app/pulls");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        github.bodies()[0],
        json!({"title": "Add hello", "head": "agent/change", "base": "main", "body": "Made by the agent", "draft": true})
    );
}

#[tokio::test]
async fn a_422_from_github_ends_with_pull_request_failed_and_githubs_message() {
    let server = GitServer::start();
    base_repo(&server);
    let github = FakeGithub::start(
        "422 Unprocessable Entity",
        json!({"message": "Validation Failed", "errors": [{"message": "A pull request already exists for acme:agent/change."}]}),
    );
    let cli = FakeCli::new(&format!(
        "echo changed >> README.md\nrm old.txt\nprintf 'a\\nb\\n' > new.txt\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let api = github.api_url();
    let worker = git_worker(&cli, &[("GITHUB_API_URL", api.as_str())]);

    let events = worker
        .execute(&push_job(&server, Some(json!({}))))
        .await
        .collect()
        .await;

    assert_well_formed(&events, 0);
    let mut files = find(&events, "git_changes")["files"].as_array().unwrap().clone();
    files.sort_by_key(|f| f["path"].as_str().unwrap().to_string());
    assert_eq!(
        files,
        [
            json!({"path": "README.md", "status": "modified", "insertions": 1, "deletions": 0}),
            json!({"path": "new.txt", "status": "added", "insertions": 2, "deletions": 0}),
            json!({"path": "old.txt", "status": "deleted", "insertions": 0, "deletions": 1}),
        ]
    );
    assert!(events.iter().any(|e| e.kind() == "git_push"));
    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "pull_request_failed", "{end}");
    assert_eq!(end["sessionId"], "fake-session", "the run's session can be resumed");
    assert!(
        end["message"]
            .as_str()
            .unwrap()
            .contains("A pull request already exists for acme:agent/change."),
        "{end}"
    );
    // Defaults: the title is the commit message's first line, the base the checked-out branch.
    assert_eq!(github.bodies()[0]["title"], "Agent change");
    assert_eq!(github.bodies()[0]["base"], "main");
}

#[tokio::test]
async fn a_run_without_changes_pushes_nothing_and_says_so() {
    let server = GitServer::start();
    base_repo(&server);
    let cli = quiet_cli();
    let worker = git_worker(&cli, &[]);

    let events = worker.execute(&push_job(&server, None)).await.collect().await;

    let end = &events.last().unwrap().data;
    assert_eq!(end["type"], "completed", "{end}");
    assert_eq!(end["changes"]["filesChanged"], 0);
    assert!(!events.iter().any(|e| e.kind() == "git_push"));
    assert!(
        events
            .iter()
            .any(|e| e.kind() == "message" && e.data["text"].as_str().unwrap().contains("nothing was committed")),
        "{:?}",
        kinds(&events)
    );
    assert_eq!(server.git("acme/app", &["branch", "--list", "agent/change"]), "");
}

#[tokio::test]
async fn the_git_token_is_nowhere_in_the_workspace_the_logs_the_events_or_the_cli_env() {
    let server = GitServer::start();
    base_repo(&server);
    let github = FakeGithub::start("201 Created", json!({"html_url": "https://x/pull/1", "number": 1}));
    let cli = FakeCli::new(&format!(
        "env > \"$DIR/env.txt\"\necho new > new.txt\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let api = github.api_url();
    let mut worker = git_worker(&cli, &[("GITHUB_API_URL", api.as_str())]);

    let mut stream = worker.execute(&push_job(&server, Some(json!({"title": "t"})))).await;
    let events = stream.collect().await;
    assert_eq!(events.last().unwrap().data["type"], "completed", "{:?}", events.last());
    worker.signal(libc::SIGTERM);
    worker.exit_status().await;

    let basic = base64(format!("x-access-token:{TOKEN}").as_bytes());
    let streamed = String::from_utf8(stream.raw.clone()).unwrap();
    let env = std::fs::read_to_string(cli.file("env.txt")).unwrap();
    for (what, text) in [("events", &streamed), ("logs", &worker.logs()), ("CLI env", &env)] {
        assert!(!text.contains(TOKEN) && !text.contains("CANARY"), "token in {what}");
        assert!(!text.contains(&basic), "basic credentials in {what}");
    }
    let workspace = worker.workspace_dir.join("ws");
    assert!(workspace.join(".git/FETCH_HEAD").exists() && workspace.join(".git/config").exists());
    let mut checked = 0;
    for file in walk(&workspace) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(TOKEN) && !text.contains("CANARY"),
            "token in {}",
            file.display()
        );
        assert!(!text.contains(&basic), "basic credentials in {}", file.display());
        checked += 1;
    }
    assert!(checked > 10, "walked {checked} files");
    assert!(in_workspace_dir(&workspace, &["reflog", "--all"]).contains("agent"));
}

fn in_workspace_dir(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn two_jobs_in_a_row_do_not_see_each_others_files() {
    let server = GitServer::start();
    base_repo(&server);
    let cli = FakeCli::new(&format!(
        "ls > \"$DIR/seen-$$.txt\"\necho mine > \"job-$$.txt\"\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("GIT_ALLOW_INSECURE", "1"),
        ("GIT_ALLOWED_HOSTS", "127.0.0.1"),
        ("EXIT_AFTER_JOB", "false"),
    ]);
    let body = repo_job(json!({"repoUrl": server.url("acme/app"), "accessToken": TOKEN}));

    let first = worker.execute(&body).await.collect().await;
    worker.wait_for_status("idle").await;
    let second = worker.execute(&body).await.collect().await;
    worker.wait_for_status("idle").await;

    for events in [&first, &second] {
        let files = &find(events, "git_changes")["files"];
        assert_eq!(files.as_array().unwrap().len(), 1, "only its own file: {files}");
    }
    assert_ne!(
        find(&first, "git_changes")["files"][0]["path"],
        find(&second, "git_changes")["files"][0]["path"]
    );
    assert!(
        !worker.workspace_dir.join("ws").exists(),
        "the workspace is removed after a job"
    );
}

#[tokio::test]
async fn an_empty_repository_is_cloned_and_the_first_commit_pushed() {
    let server = GitServer::start();
    server.create_empty("acme/app");
    server.require_token(TOKEN);
    let cli = FakeCli::new(&format!(
        "echo first > first.txt\necho '{INIT_LINE}'\necho '{RESULT_LINE}'"
    ));
    let worker = git_worker(&cli, &[]);

    let events = worker.execute(&push_job(&server, None)).await.collect().await;

    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["type"], "completed", "{end}");
    assert_eq!(end["changes"]["files"][0]["path"], "first.txt");
    assert_eq!(server.git("acme/app", &["rev-list", "--count", "agent/change"]), "1");
    assert_eq!(server.git("acme/app", &["show", "agent/change:first.txt"]), "first");
}
