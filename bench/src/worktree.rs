//! `worktree`: what carrying a session's work tree costs. On a generated repository of 20,000 files served by a
//! real git server, the time from `POST /execute` to the agent's first event for (a) a fresh clone and (b) a resume
//! whose snapshot changes 200 of those files, in alternating runs; and the memory a snapshot save adds to the
//! worker (its peak RSS with and without a session store, for the job that changed the 200 files).

use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{Row, git_server::GitServer, median, proc_stats::rss_kib, runs, worker::Worker};

const FILES: usize = 20_000;
const CHANGED: usize = 200;
const SESSION: &str = "bench-carry";

/// About 1 KiB of text per file, each different, as source files are.
fn content(i: usize) -> Vec<u8> {
    let mut text = format!("// file {i}\n");
    while text.len() < 1024 {
        text.push_str(&format!(
            "fn item_{i}_{}() -> usize {{ {} }}\n",
            text.len(),
            i * 7 + text.len()
        ));
    }
    text.into_bytes()
}

fn path(i: usize) -> String {
    format!("src/d{:03}/f{i:05}.rs", i / 100)
}

/// A CLI that edits `CHANGED` files spread over the tree, adds one, and reports the session `SESSION`.
fn editing_cli(dir: &std::path::Path) -> std::path::PathBuf {
    let step = FILES / CHANGED;
    let script = format!(
        "#!/bin/sh\ncat > /dev/null\n\
         echo '{{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"{SESSION}\"}}'\n\
         i=0\nwhile [ $i -lt {CHANGED} ]; do n=$((i * {step})); \
         f=$(printf 'src/d%03d/f%05d.rs' $((n / 100)) $n); echo \"// changed by the agent\" >> \"$f\"; i=$((i + 1)); done\n\
         echo 'notes' > AGENT_NOTES.md\n\
         echo '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"edited\",\"num_turns\":1,\
         \"duration_ms\":1,\"session_id\":\"{SESSION}\",\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}'\n"
    );
    let cli = dir.join("editing-cli.sh");
    std::fs::write(&cli, script).expect("write the CLI");
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    cli
}

/// After a job the worker removes its 20,000-file workspace before it takes the next one.
async fn wait_idle(client: &reqwest::Client, port: u16) {
    loop {
        let status: Value = client
            .get(format!("http://127.0.0.1:{port}/status?wait=draining&timeout=5"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status JSON");
        if status["status"] == "idle" {
            return;
        }
    }
}

/// An event's `ts` (RFC 3339 with milliseconds, UTC) as milliseconds of its day: enough to subtract two of one job.
fn millis(ts: &str) -> f64 {
    let time = ts.split('T').nth(1).unwrap_or_default().trim_end_matches('Z');
    let mut parts = time.split(':').map(|p| p.parse::<f64>().unwrap_or(0.0));
    let (h, m, s) = (
        parts.next().unwrap_or(0.0),
        parts.next().unwrap_or(0.0),
        parts.next().unwrap_or(0.0),
    );
    ((h * 60.0 + m) * 60.0 + s) * 1000.0
}

/// Posts `body` once the worker is idle and returns the time until the first event of type `kind`, reading the
/// job to its end.
async fn time_to(port: u16, body: &Value, kind: &str) -> (Duration, String) {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    wait_idle(&client, port).await;
    let started = Instant::now();
    let resp = client
        .post(format!("http://127.0.0.1:{port}/execute"))
        .json(body)
        .send()
        .await
        .expect("execute");
    assert_eq!(resp.status(), 200, "the job was not accepted");
    let mut stream = resp.bytes_stream();
    let (mut seen, mut at, mut text) = (Vec::new(), None, String::new());
    let marker = format!("event: {kind}\n");
    while let Some(chunk) = stream.next().await {
        seen.extend_from_slice(&chunk.expect("stream"));
        if at.is_none() && seen.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            at = Some(started.elapsed());
        }
    }
    text.push_str(&String::from_utf8_lossy(&seen));
    (at.unwrap_or_else(|| panic!("no {kind} event in:\n{text}")), text)
}

pub async fn worktree(rows: &mut Vec<Row>) {
    let server = GitServer::start();
    let made = Instant::now();
    let files: Vec<(String, Vec<u8>)> = (0..FILES).map(|i| (path(i), content(i))).collect();
    server.create_repo("big", "main", &[files]);
    eprintln!(
        "worktree: repository of {FILES} files made in {:.1}s",
        made.elapsed().as_secs_f64()
    );
    let url = server.url("big");
    let scratch = std::env::temp_dir().join(format!("unified-worker-bench-worktree-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let store = scratch.join("store");
    std::fs::create_dir_all(&store).expect("store");
    let cli = editing_cli(&scratch);
    let git_env = [("GIT_ALLOW_INSECURE", "1"), ("GIT_ALLOWED_HOSTS", "127.0.0.1")];

    // The job that changes 200 files, once with a session store (it saves the snapshot) and once without: the
    // difference of the two workers' peak RSS is what the save adds.
    let edit = json!({"userRequest": "edit", "codingAssistantProvider": "claude-code",
                      "github": {"repoUrl": url}});
    let mut peaks = Vec::new();
    for with_store in [false, true] {
        let mut env = git_env.to_vec();
        let cli = cli.to_string_lossy().into_owned();
        let store = store.to_string_lossy().into_owned();
        env.push(("CLAUDE_BIN", &cli));
        if with_store {
            env.push(("SESSION_STORE_DIR", &store));
        }
        let worker = Worker::spawn_with(&[], &env).await;
        let (_, text) = time_to(worker.port, &edit, "completed").await;
        assert!(
            text.contains("\"filesChanged\":201"),
            "the CLI did not change the files:\n{text}"
        );
        peaks.push(rss_kib(worker.pid(), "VmHWM") as f64 / 1024.0);
    }
    let manifest = std::fs::read_to_string(store.join("worktrees/claude-code").join(SESSION).join("manifest.json"))
        .expect("the snapshot was saved");

    let store_var = store.to_string_lossy().into_owned();
    let mut env = git_env.to_vec();
    env.push(("SESSION_STORE_DIR", &store_var));
    let worker = Worker::spawn_with(&[], &env).await;
    let fresh = json!({"userRequest": "lines=1", "codingAssistantProvider": "claude-code", "github": {"repoUrl": url}});
    let resume =
        json!({"userRequest": "lines=1", "codingAssistantProvider": "claude-code", "resumeSessionId": SESSION});
    let (mut clones, mut restores, mut clone_phases, mut restore_steps) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs() {
        // Alternating which goes first, so neither always meets a warmer cache.
        let order = if run % 2 == 0 { [false, true] } else { [true, false] };
        for restore in order {
            let body = if restore { &resume } else { &fresh };
            let (took, text) = time_to(worker.port, body, "session").await;
            if std::env::var_os("BENCH_WORKTREE_TRACE").is_some() {
                for line in text.lines().filter(|l| l.starts_with("data: ")) {
                    let event: Value = serde_json::from_str(&line[6..]).unwrap_or_default();
                    if event["type"] != "github_pull_progress" || event["phase"] == "done" {
                        eprintln!("  {} {} {}", event["ts"], event["type"], event["text"]);
                    }
                }
            }
            // The worker's own clock, from the events' times: the clone (connected → the clone's `done`) and the
            // restore after it (→ `workspace restored`), apart from whatever else the machine does.
            let at = |kind: &str, needle: &str| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .filter(|d| d.contains(kind) && d.contains(needle))
                    .find_map(|d| serde_json::from_str::<Value>(d).ok()?["ts"].as_str().map(millis))
            };
            let (connected, cloned) = (at("\"connected\"", ""), at("github_pull_progress", "\"done\""));
            if let (Some(connected), Some(cloned)) = (connected, cloned) {
                clone_phases.push(cloned - connected);
            }
            if restore {
                assert!(text.contains("workspace restored: 201 files"), "no restore:\n{text}");
                restores.push(took.as_secs_f64() * 1000.0);
                if let (Some(cloned), Some(restored)) = (cloned, at("\"message\"", "workspace restored")) {
                    restore_steps.push(restored - cloned);
                }
            } else {
                clones.push(took.as_secs_f64() * 1000.0);
            }
        }
        eprintln!(
            "worktree run {run}: clone {:.0} ms, resume with snapshot {:.0} ms",
            clones.last().unwrap(),
            restores.last().unwrap()
        );
    }
    let (clone, restore) = (median(clones), median(restores));
    rows.push(Row {
        name: "POST /execute → first agent event, fresh clone of 20,000 files (ms)",
        value: format!("{clone:.0}"),
        target: "",
    });
    rows.push(Row {
        name: "… resume with a snapshot of 200 changed files (ms)",
        value: format!("{restore:.0}"),
        target: "",
    });
    rows.push(Row {
        name: "resume / clone",
        value: format!("{:.3}", restore / clone),
        target: "≤ 1.10",
    });
    rows.push(Row {
        name: "… of which the clone, by the worker's event times (ms)",
        value: format!("{:.0}", median(clone_phases)),
        target: "",
    });
    rows.push(Row {
        name: "… and the restore after it: unpack and write 201 files (ms)",
        value: format!("{:.0}", median(restore_steps)),
        target: "",
    });
    rows.push(Row {
        name: "worker peak RSS, the 200-file job without / with the snapshot save (MiB)",
        value: format!("{:.1} / {:.1} (+{:.1})", peaks[0], peaks[1], peaks[1] - peaks[0]),
        target: "",
    });
    let bytes = serde_json::from_str::<Value>(&manifest)
        .map(|m| m["bytes"].clone())
        .unwrap_or_default();
    eprintln!("worktree: snapshot manifest {manifest}");
    rows.push(Row {
        name: "snapshot of the 201 changed files (bytes counted)",
        value: bytes.to_string(),
        target: "",
    });
    let _ = std::fs::remove_dir_all(&scratch);
}
