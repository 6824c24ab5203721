//! Conversation jobs with the real CLIs (docs/conversations.md): three turns on one work tree — the first writes a
//! file, the second is sent while the agent is idle and interrupted while the model is still at work, the third
//! goes on with the conversation — then the close pushes once and ends the job with one `completed`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    providers::{CLAUDE_CODE, CODEX, COPILOT, GEMINI, ModelApi, OPENCODE, ProviderCase},
    support::{
        SseStream, TestWorker, client,
        git_server::GitServer,
        reply::Reply,
        sse::{SseEvent, assert_well_formed, kinds},
    },
};

const CODE_WORD: &str = "OSPREY-5120";
const TOKEN: &str = "ghp_conversation_test_token_000000000000";

pub async fn send(worker: &TestWorker, job_id: &str, text: &str, interrupt: bool) -> reqwest::Response {
    client()
        .post(worker.url(&format!("/jobs/{job_id}/messages")))
        .json(&json!({"text": text, "interrupt": interrupt}))
        .send()
        .await
        .expect("POST messages")
}

pub async fn close(worker: &TestWorker, job_id: &str) -> reqwest::Response {
    client()
        .post(worker.url(&format!("/jobs/{job_id}/close")))
        .send()
        .await
        .expect("POST close")
}

/// Reads until the event of `kind` for `turn`, returning all read.
async fn until_turn(stream: &mut SseStream, kind: &str, turn: u64) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    loop {
        let event = stream
            .next_event()
            .await
            .unwrap_or_else(|| panic!("the stream ended before {kind} of turn {turn}: {:?}", kinds(&seen)));
        let found = event.kind() == kind && event.data["turn"] == turn;
        assert!(
            !event.is_terminal(),
            "ended before {kind} of turn {turn}: {}",
            event.data
        );
        seen.push(event);
        if found {
            return seen;
        }
    }
}

/// Reads on until the mock has taken `n` conversation requests: the model is at work on the turn. A turn that
/// ends first fails the test with what it said.
async fn until_requests(stream: &mut SseStream, mock: &dyn ModelApi, n: usize, events: &mut Vec<SseEvent>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while mock.conversation().len() < n {
        tokio::select! {
            event = stream.next_event() => {
                let event = event.expect("the stream ended while the turn waited for the model");
                assert!(
                    !matches!(event.kind(), "turn_completed" | "turn_failed") && !event.is_terminal(),
                    "the turn ended before it called the model: {}",
                    event.data
                );
                events.push(event);
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = tokio::time::sleep_until(deadline) => panic!("the CLI never called the model: {:?}", kinds(events)),
        }
    }
}

fn repository() -> GitServer {
    let git = GitServer::start();
    git.create_repo("app", "main", &[vec![("README.md".to_string(), b"# app\n".to_vec())]]);
    git.require_token(TOKEN);
    git
}

const GIT_ENV: [(&str, &str); 2] = [("GIT_ALLOW_INSECURE", "1"), ("GIT_ALLOWED_HOSTS", "127.0.0.1")];

/// Every turn's events lie between its `turn_started` and its end, in order, with no events of another turn.
fn assert_bracketed(events: &[SseEvent]) {
    let mut open: Option<u64> = None;
    for event in events {
        match event.kind() {
            "turn_started" => {
                assert_eq!(open, None, "a turn started inside another: {}", event.data);
                open = event.data["turn"].as_u64();
            }
            "turn_completed" | "turn_failed" if open == event.data["turn"].as_u64() => open = None,
            // A turn withdrawn before it started ends without having begun.
            "turn_failed" => assert_eq!(event.data["code"], "interrupted", "{}", event.data),
            "assistant_message" | "tool_use" | "tool_result" | "thinking" | "permission_request" => {
                assert!(open.is_some(), "{} outside a turn: {}", event.kind(), event.data);
            }
            _ => {}
        }
    }
    assert_eq!(open, None, "a turn never ended");
}

/// The story for one CLI; `approvals` runs it over ACP with the test answering the one question of turn 1.
async fn three_turns(case: &ProviderCase, approvals: bool) {
    let name = case.name;
    let git = repository();
    let mock = (case.mock)(Reply::WriteFile {
        file_name: "note.txt".into(),
        content: format!("the code word is {CODE_WORD}\n"),
        final_text: "Noted.".into(),
    });
    let worker = (case.worker)(mock.as_ref(), &GIT_ENV);
    let job_id = "talk";
    let mut body = (case.job)(&format!("Remember the code word {CODE_WORD} and write it to note.txt."));
    body["jobId"] = json!(job_id);
    body["conversation"] = json!({"idleSeconds": 120});
    body["github"] = json!({"repoUrl": git.url("app"), "accessToken": TOKEN, "push": {"branch": "talk"}});
    if approvals {
        body["approvals"] = json!({"mode": "client"});
    }
    let mut stream = worker.execute(&body).await;

    // Turn 1 writes note.txt.
    let mut events = if approvals {
        let mut asked = stream.until("permission_request").await;
        let question = asked.last().unwrap().data.clone();
        let option = question["options"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["kind"] == "allow_once"))
            .and_then(|o| o["optionId"].as_str())
            .unwrap()
            .to_string();
        let answered =
            crate::approvals::answer(&worker.base, job_id, question["requestId"].as_str().unwrap(), &option).await;
        assert_eq!(answered.status(), 200, "{name}");
        asked.extend(until_turn(&mut stream, "turn_completed", 1).await);
        asked
    } else {
        until_turn(&mut stream, "turn_completed", 1).await
    };
    let first = events.last().unwrap().data.clone();
    assert_eq!(first["result"], "Noted.", "{name}: {first}");
    assert_eq!(
        first["changes"]["files"][0]["path"], "note.txt",
        "{name}: turn 1's changes: {first}"
    );
    let note = worker.workspace_dir.join(job_id).join("note.txt");
    assert!(std::fs::read_to_string(&note).unwrap().contains(CODE_WORD), "{name}");

    // Turn 2 asks about the file turn 1 wrote; the model takes its time.
    let calls = mock.conversation().len();
    mock.set_reply(Reply::Stall);
    let second = send(&worker, job_id, "Read note.txt and tell me the code word in it.", false).await;
    assert_eq!(second.status(), 202, "{name}");
    assert_eq!(second.json::<Value>().await.unwrap()["turn"], 2, "{name}");
    events.extend(until_turn(&mut stream, "turn_started", 2).await);
    until_requests(&mut stream, mock.as_ref(), calls + 1, &mut events).await;
    let asked = mock.conversation_text(mock.conversation().last().unwrap());
    assert!(
        asked.contains("Read note.txt"),
        "{name}: turn 2's message reached the model"
    );
    assert!(
        asked.contains(CODE_WORD),
        "{name}: turn 2 goes on with turn 1's conversation"
    );
    assert!(note.exists(), "{name}: turn 1's file is still there for turn 2");

    // Turn 3 interrupts it.
    mock.set_reply(Reply::Text("Stopped as you asked.".into()));
    let calls = mock.conversation().len();
    let third = send(&worker, job_id, "Stop that and just say you stopped.", true).await;
    assert_eq!(third.status(), 202, "{name}");
    assert_eq!(third.json::<Value>().await.unwrap()["turn"], 3, "{name}");
    events.extend(until_turn(&mut stream, "turn_failed", 2).await);
    assert_eq!(events.last().unwrap().data["code"], "interrupted", "{name}");
    events.extend(until_turn(&mut stream, "turn_completed", 3).await);
    assert_eq!(events.last().unwrap().data["result"], "Stopped as you asked.", "{name}");
    let requests = mock.conversation();
    let after = mock.conversation_text(requests.last().unwrap());
    assert!(requests.len() > calls, "{name}: turn 3 called the model");
    assert!(after.contains(CODE_WORD), "{name}: the session outlived the interrupt");

    // The close pushes once, then ends the job.
    assert_eq!(close(&worker, job_id).await.status(), 202, "{name}");
    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    assert_bracketed(&events);
    let all = kinds(&events);
    assert_eq!(all.iter().filter(|k| **k == "git_push").count(), 1, "{name}: {all:?}");
    let push_at = all.iter().position(|k| *k == "git_push").unwrap();
    let last_turn = all.iter().rposition(|k| k.starts_with("turn_")).unwrap();
    assert!(
        push_at > last_turn,
        "{name}: the push comes after the last turn: {all:?}"
    );
    let end = &events.last().unwrap().data;
    assert_eq!(end["type"], "completed", "{name}: {end}");
    assert_eq!(end["result"], "Stopped as you asked.", "{name}: {end}");
    assert!(
        git.git("app", &["show", "talk:note.txt"]).contains(CODE_WORD),
        "{name}: the pushed branch holds turn 1's file"
    );
}

#[tokio::test]
async fn claude_code_holds_a_conversation_of_three_turns_with_an_interrupt() {
    three_turns(&CLAUDE_CODE, false).await;
}

#[tokio::test]
async fn codex_holds_a_conversation_of_three_turns_with_an_interrupt() {
    three_turns(&CODEX, false).await;
}

#[tokio::test]
async fn gemini_holds_a_conversation_of_three_turns_with_an_interrupt() {
    three_turns(&GEMINI, false).await;
}

#[tokio::test]
async fn opencode_holds_a_conversation_of_three_turns_with_an_interrupt() {
    three_turns(&OPENCODE, false).await;
}

#[tokio::test]
async fn copilot_holds_a_conversation_of_three_turns_with_an_interrupt() {
    three_turns(&COPILOT, false).await;
}

#[tokio::test]
async fn copilot_over_acp_holds_a_conversation_with_approvals_and_an_interrupt() {
    three_turns(&COPILOT, true).await;
}

#[tokio::test]
async fn an_idle_conversation_closes_itself() {
    let mock = (CLAUDE_CODE.mock)(Reply::Text("Hello.".into()));
    let worker = (CLAUDE_CODE.worker)(mock.as_ref(), &[]);
    let mut body = (CLAUDE_CODE.job)("Say hello.");
    body["conversation"] = json!({"idleSeconds": 1});

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    assert_bracketed(&events);
    let said = events
        .iter()
        .any(|e| e.kind() == "message" && e.data["text"].as_str().unwrap().contains("closes itself"));
    assert!(said, "{:?}", kinds(&events));
    let end = &events.last().unwrap().data;
    assert_eq!(
        (end["type"].as_str(), end["result"].as_str()),
        (Some("completed"), Some("Hello."))
    );
}

#[tokio::test]
async fn messages_to_a_one_turn_job_or_an_ended_conversation_are_refused() {
    let mock = (CLAUDE_CODE.mock)(Reply::Stall);
    // The worker stays after each job and still knows the last one.
    let worker = (CLAUDE_CODE.worker)(
        mock.as_ref(),
        &[("EXIT_AFTER_JOB", "false"), ("KILL_GRACE_SECONDS", "1")],
    );

    // A one-turn job takes no message.
    let mut one = (CLAUDE_CODE.job)("Think hard.");
    one["jobId"] = json!("one");
    let mut stream = worker.execute(&one).await;
    stream.until("session").await;
    let refused = send(&worker, "one", "more", false).await;
    assert_eq!(refused.status(), 409);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "not_a_conversation"
    );
    assert_eq!(close(&worker, "one").await.status(), 409);
    let not_one = client().post(worker.url("/jobs/one/interrupt")).send().await.unwrap();
    assert_eq!(not_one.status(), 409);
    assert_eq!(send(&worker, "nobody", "more", false).await.status(), 404);
    assert_eq!(worker.cancel().await.status(), 202);
    stream.collect().await;
    worker.wait_for_status("idle").await;

    // A conversation that ended (cancelled here) takes none either.
    let mut talk = (CLAUDE_CODE.job)("Think hard.");
    talk["jobId"] = json!("talk");
    talk["conversation"] = json!({});
    assert_eq!(
        send(&worker, "talk", "more", false).await.status(),
        404,
        "no such job yet"
    );
    let mut stream = worker.execute(&talk).await;
    stream.until("session").await;
    let empty = send(&worker, "talk", " ", false).await;
    assert_eq!(empty.status(), 422);
    assert_eq!(empty.json::<Value>().await.unwrap()["error"]["field"], "text");
    assert_eq!(worker.cancel().await.status(), 202);
    let events = stream.collect().await;
    assert_eq!(events.last().unwrap().data["code"], "cancelled");
    let late = send(&worker, "talk", "more", false).await;
    assert_eq!(late.status(), 409);
    assert_eq!(late.json::<Value>().await.unwrap()["error"]["code"], "job_finished");
    assert_eq!(close(&worker, "talk").await.status(), 409);
}

/// Through a gateway: the follow-up, the interrupt and the close reach the worker that runs the conversation; once it
/// ended and that worker is gone, a resume through the gateway lands on the other one and goes on with the
/// conversation and its work tree.
#[tokio::test]
async fn through_a_gateway_messages_reach_the_conversations_worker_and_a_resume_lands_on_another() {
    use crate::support::fleet::{fleet_view, gateway, wait_idle_workers};
    let store = tempfile::TempDir::new().unwrap();
    let store_dir = store.path().to_str().unwrap();
    let mock = (CLAUDE_CODE.mock)(Reply::WriteFile {
        file_name: "note.txt".into(),
        content: format!("the code word is {CODE_WORD}\n"),
        final_text: "Noted.".into(),
    });
    let ids = ["worker-1", "worker-2"];
    let mut workers: Vec<TestWorker> = ids
        .iter()
        .map(|id| {
            let env = [
                ("WORKER_ID", *id),
                ("EXIT_AFTER_JOB", "false"),
                ("SESSION_STORE_DIR", store_dir),
            ];
            (CLAUDE_CODE.worker)(mock.as_ref(), &env)
        })
        .collect();
    let addresses = workers.iter().map(|w| w.base.clone()).collect::<Vec<_>>().join(",");
    let gw = gateway(&addresses, &[]);
    wait_idle_workers(&gw, 2).await;

    let mut body = (CLAUDE_CODE.job)(&format!("Remember the code word {CODE_WORD} and write it to note.txt."));
    body["jobId"] = json!("gw-talk");
    body["conversation"] = json!({"idleSeconds": 120});
    let mut stream = gw.execute(&body).await;
    let mut events = until_turn(&mut stream, "turn_completed", 1).await;
    let ran_on = events
        .iter()
        .find(|e| e.kind() == "connected")
        .map(|e| e.data["workerId"].as_str().unwrap().to_string())
        .expect("connected");

    let calls = mock.conversation().len();
    mock.set_reply(Reply::Stall);
    assert_eq!(send(&gw, "gw-talk", "Read note.txt again.", false).await.status(), 202);
    until_requests(&mut stream, mock.as_ref(), calls + 1, &mut events).await;
    let interrupted = client().post(gw.url("/jobs/gw-talk/interrupt")).send().await.unwrap();
    assert_eq!(interrupted.status(), 202);
    events.extend(until_turn(&mut stream, "turn_failed", 2).await);
    assert_eq!(events.last().unwrap().data["code"], "interrupted");
    mock.set_reply(Reply::Text("Noted.".into()));
    let third = send(&gw, "gw-talk", "Just say noted.", false).await;
    assert_eq!(third.json::<Value>().await.unwrap()["turn"], 3);
    events.extend(until_turn(&mut stream, "turn_completed", 3).await);
    assert_eq!(close(&gw, "gw-talk").await.status(), 202);
    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    assert_bracketed(&events);
    let end = events.last().unwrap().data.clone();
    assert_eq!(end["type"], "completed", "{end}");
    let session = end["sessionId"].as_str().unwrap().to_string();
    assert_eq!(send(&gw, "gw-talk", "late", false).await.status(), 409);

    // The worker that held the conversation goes away; the resume lands on the other.
    let held = ids.iter().position(|id| *id == ran_on).expect("a worker of the fleet");
    drop(workers.remove(held));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let fleet = fleet_view(&gw).await;
        let gone = fleet["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["state"] != "idle" && w["state"] != "busy");
        if gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never saw the worker go: {fleet}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut resume = (CLAUDE_CODE.job)("Which code word did I give you?");
    resume["resumeSessionId"] = json!(session);
    let events = gw.execute(&resume).await.collect().await;
    assert_well_formed(&events, 0);
    let landed = events.iter().find(|e| e.kind() == "connected").unwrap().data["workerId"].clone();
    assert_ne!(landed, ran_on.as_str(), "the resume landed on the worker that is gone");
    assert!(
        events
            .iter()
            .any(|e| e.kind() == "message" && e.data["text"].as_str().unwrap().starts_with("workspace restored")),
        "{:?}",
        kinds(&events)
    );
    let last = mock.conversation_text(mock.conversation().last().unwrap());
    assert!(last.contains(CODE_WORD), "the conversation goes on on the other worker");
    assert_eq!(events.last().unwrap().kind(), "completed");
}
