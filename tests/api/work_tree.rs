//! The work tree travels with the session: a real CLI edits, deletes and adds files in a clone served by the real git
//! server, and a resumed job on another worker process (own HOME, own work folder, only SESSION_STORE_DIR shared)
//! starts from exactly that tree, with the conversation going on.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, path::Path, process::Command};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{
    providers::{CLAUDE_CODE, CODEX, ProviderCase},
    support::{git_server::GitServer, reply::Reply, sse::SseEvent, sse::assert_well_formed},
};

const CODE_WORD: &str = "HERON-2291";

/// What the agent does in job 1, through its shell tool: an edit, deletions, untracked files in a new folder, a
/// symlink, an executable, and files the repository ignores.
const AGENT_EDITS: &str = "printf 'two\\n' >> edit.txt && rm gone.txt dir/gone-too.txt && mkdir -p new/deep \
     && printf 'untracked\\n' > new/deep/u.txt && ln -s ../edit.txt new/link && printf '#!/bin/sh\\necho hi\\n' > run.sh \
     && chmod +x run.sh tool.sh && mkdir -p ignored && echo x > ignored/x && echo y > debug.log";

/// path → (git's mode, SHA-256 of the content or of the link's target) of every file under `dir` but `.git`.
fn manifest(dir: &Path) -> BTreeMap<String, (String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if relative == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (mode, bytes) = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("120000", target.to_string_lossy().as_bytes().to_vec())
            } else if meta.is_dir() {
                walk(root, &path, out);
                continue;
            } else if meta.permissions().mode() & 0o111 != 0 {
                ("100755", std::fs::read(&path).unwrap())
            } else {
                ("100644", std::fs::read(&path).unwrap())
            };
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            out.insert(relative, (mode.to_string(), hex));
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn git_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn repository() -> GitServer {
    let git = GitServer::start();
    let files: Vec<(String, Vec<u8>)> = [
        ("keep.txt", "keep\n"),
        ("edit.txt", "one\n"),
        ("gone.txt", "gone\n"),
        ("dir/gone-too.txt", "x\n"),
        ("tool.sh", "#!/bin/sh\n"),
        (".gitignore", "ignored/\n*.log\n"),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
    .collect();
    git.create_repo("app", "main", &[files]);
    git
}

fn messages(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind() == "message")
        .map(|e| e.data["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn completed(name: &str, events: &[SseEvent]) -> Value {
    assert_well_formed(events, 0);
    let done = events.last().unwrap().data.clone();
    assert_eq!(done["type"], "completed", "{name}: {done}");
    done
}

/// Another commit on `main` of the server's `app`, as a teammate's push between the two jobs.
fn move_main_on(git: &GitServer) {
    let work = TempDir::new().unwrap();
    let bare = git.bare("app");
    let run = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(work.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    run(&["clone", "-q", bare.to_str().unwrap(), "."]);
    std::fs::write(work.path().join("later.txt"), "later\n").unwrap();
    run(&["add", "-A"]);
    run(&["commit", "-q", "-m", "later"]);
    run(&["push", "-q", "origin", "main"]);
    // What GitHub allows: fetching a commit by its id.
    git.git("app", &["config", "uploadpack.allowReachableSHA1InWant", "true"]);
}

async fn a_resumed_job_on_another_worker_starts_from_the_work_tree_the_first_left(case: &ProviderCase) {
    resumed_from_the_work_tree(case, false).await;
}

async fn resumed_from_the_work_tree(case: &ProviderCase, branch_moves_on: bool) {
    let name = case.name;
    let git = repository();
    let store = TempDir::new().unwrap();
    let env = [
        ("SESSION_STORE_DIR", store.path().to_str().unwrap()),
        ("GIT_ALLOW_INSECURE", "1"),
        ("GIT_ALLOWED_HOSTS", "127.0.0.1"),
    ];
    let mock_a = (case.mock)(Reply::RunCommand {
        cmd: AGENT_EDITS.into(),
        final_text: "Noted.".into(),
    });
    let mut a = (case.worker)(mock_a.as_ref(), &env);
    let mut first = (case.job)(&format!("Remember the code word {CODE_WORD}, then change the files."));
    first["github"] = json!({ "repoUrl": git.url("app") });
    first["workspace"] = json!("job1");
    let done = completed(name, &a.execute(&first).await.collect().await);
    let session = done["sessionId"].as_str().expect("a session id").to_string();
    let mut expected = manifest(&a.workspace_dir.join("job1"));
    assert!(
        expected.contains_key("new/link") && expected.contains_key("ignored/x"),
        "{name}: {expected:?}"
    );
    assert_eq!(expected["run.sh"].0, "100755", "{name}");
    assert!(!expected.contains_key("gone.txt"), "{name}");
    // Ignored files stay behind.
    expected.retain(|path, _| !path.starts_with("ignored/") && path != "debug.log");
    assert!(a.exit_status().await.success(), "{name}: worker A did not exit cleanly");

    let base = git.git("app", &["rev-parse", "main"]);
    if branch_moves_on {
        move_main_on(&git);
    }
    let mock_b = (case.mock)(Reply::Text("Noted.".into()));
    let b = (case.worker)(mock_b.as_ref(), &env);
    assert_ne!((&a.home, &a.workspace_dir), (&b.home, &b.workspace_dir));
    let mut elsewhere = (case.job)("Which code word did I give you?");
    elsewhere["resumeSessionId"] = json!(session);
    elsewhere["github"] = json!({ "repoUrl": git.url("other") });
    let refused = b.post_execute(&elsewhere).await;
    assert_eq!(refused.status(), 422, "{name}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["field"], "github.repoUrl", "{name}: {body}");

    // No github: the repository comes from the session's work tree.
    let mut second = (case.job)("Which code word did I give you?");
    second["resumeSessionId"] = json!(session);
    second["workspace"] = json!("job2");
    let events = b.execute(&second).await.collect().await;

    completed(name, &events);
    assert!(
        messages(&events)
            .iter()
            .any(|m| m.starts_with("workspace restored: 5 files, ")),
        "{name}: {:?}",
        messages(&events)
    );
    let job2 = b.workspace_dir.join("job2");
    assert_eq!(manifest(&job2), expected, "{name}: job 2's work tree is job 1's");
    assert_eq!(
        git_in(&job2, &["rev-parse", "HEAD"]).1,
        base,
        "{name}: HEAD stays on the base"
    );
    assert!(
        git_in(&job2, &["diff", "--cached", "--quiet"]).0,
        "{name}: nothing is staged"
    );
    assert!(
        !git_in(&job2, &["status", "--porcelain"]).1.is_empty(),
        "{name}: the changes are uncommitted"
    );
    let requests = mock_b.conversation();
    let last = requests
        .last()
        .unwrap_or_else(|| panic!("{name}: job 2 called no model"));
    crate::support::assert_the_conversation_goes_on(&mock_b.conversation_text(last), CODE_WORD);
}

#[tokio::test]
async fn claude_code_resumed_on_another_worker_starts_from_the_work_tree_the_first_job_left() {
    a_resumed_job_on_another_worker_starts_from_the_work_tree_the_first_left(&CLAUDE_CODE).await;
}

#[tokio::test]
async fn codex_resumed_on_another_worker_starts_from_the_work_tree_the_first_job_left() {
    a_resumed_job_on_another_worker_starts_from_the_work_tree_the_first_left(&CODEX).await;
}

#[tokio::test]
async fn a_resume_after_the_branch_moved_on_starts_from_the_snapshots_base_commit() {
    resumed_from_the_work_tree(&CLAUDE_CODE, true).await;
}

#[tokio::test]
async fn a_work_tree_above_the_bound_is_not_saved_and_the_job_says_so() {
    let mock = (CLAUDE_CODE.mock)(Reply::WriteFile {
        file_name: "big.txt".into(),
        content: "more than sixty-four bytes of content, which is the bound this worker has\n".into(),
        final_text: "Noted.".into(),
    });
    let store = TempDir::new().unwrap();
    let worker = (CLAUDE_CODE.worker)(
        mock.as_ref(),
        &[
            ("SESSION_STORE_DIR", store.path().to_str().unwrap()),
            ("SESSION_SNAPSHOT_MAX_BYTES", "64"),
        ],
    );

    let events = worker
        .execute(&(CLAUDE_CODE.job)("Write big.txt"))
        .await
        .collect()
        .await;

    completed("claude-code", &events);
    let warned = events.iter().any(|e| {
        e.kind() == "message"
            && e.data["level"] == "warn"
            && e.data["text"]
                .as_str()
                .unwrap_or_default()
                .contains("SESSION_SNAPSHOT_MAX_BYTES")
    });
    assert!(warned, "{:?}", messages(&events));
    assert!(
        !store
            .path()
            .join("worktrees")
            .join("claude-code")
            .read_dir()
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(|c: char| c.is_ascii_alphanumeric())
            })
    );
}

#[tokio::test]
async fn a_stored_work_tree_above_a_lowered_bound_is_not_restored_and_the_job_says_so() {
    let mock = (CLAUDE_CODE.mock)(Reply::WriteFile {
        file_name: "notes.txt".into(),
        content: "more than sixteen bytes of notes\n".into(),
        final_text: "Noted.".into(),
    });
    let store = TempDir::new().unwrap();
    let store_dir = store.path().to_str().unwrap();
    let a = (CLAUDE_CODE.worker)(mock.as_ref(), &[("SESSION_STORE_DIR", store_dir)]);
    let done = completed(
        "claude-code",
        &a.execute(&(CLAUDE_CODE.job)("Write notes.txt")).await.collect().await,
    );
    let session = done["sessionId"].as_str().unwrap().to_string();

    mock.set_reply(Reply::Text("Noted.".into()));
    let b = (CLAUDE_CODE.worker)(
        mock.as_ref(),
        &[("SESSION_STORE_DIR", store_dir), ("SESSION_SNAPSHOT_MAX_BYTES", "16")],
    );
    let mut resume = (CLAUDE_CODE.job)("Go on.");
    resume["resumeSessionId"] = json!(session);
    resume["workspace"] = json!("job2");
    let events = b.execute(&resume).await.collect().await;

    completed("claude-code", &events);
    assert!(
        messages(&events)
            .iter()
            .any(|m| m.contains("was not restored") && m.contains("SESSION_SNAPSHOT_MAX_BYTES")),
        "{:?}",
        messages(&events)
    );
    assert!(!b.workspace_dir.join("job2").join("notes.txt").exists());
}
