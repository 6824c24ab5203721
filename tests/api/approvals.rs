//! Approvals over ACP (docs/approvals.md) with a small scripted ACP agent configured through `ACP_AGENTS`: allow, reject,
//! no answer, cancel while asking, the answer endpoint's refusals, and an agent run without approvals.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    SseStream, TestWorker, client,
    sse::{SseEvent, assert_well_formed, kinds},
    wait_until_dead,
};

/// The scripted agent, and the folder where it notes what it received.
pub struct ScriptedAgent {
    pub dir: TempDir,
    pub acp_agents: String,
}

impl ScriptedAgent {
    pub fn new() -> ScriptedAgent {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/acp-agent/agent.py");
        ScriptedAgent {
            dir: TempDir::new().expect("agent dir"),
            acp_agents: json!({"scripted": {"command": ["python3", script], "env": ["AGENT_DIR"]}}).to_string(),
        }
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("ACP_AGENTS", self.acp_agents.as_str()),
            ("AGENT_DIR", self.dir.path().to_str().expect("utf-8 path")),
            ("KEEP_WORKSPACE", "1"),
            ("KILL_GRACE_SECONDS", "0.5"),
        ]
    }

    /// The same for a worker that stays after its job, so that answers sent after the end still find it (one that
    /// exits after its job may be gone as soon as its terminal event is written).
    pub fn staying(&self) -> Vec<(&str, &str)> {
        let mut env = self.env();
        env.push(("EXIT_AFTER_JOB", "false"));
        env
    }

    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    pub fn pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.path().join("pid"))
            .expect("the agent's pid")
            .trim()
            .parse()
            .expect("pid")
    }
}

pub fn approval_job(job_id: &str, approvals: Value) -> Value {
    json!({
        "userRequest": "write hello.txt",
        "codingAssistantProvider": "acp:scripted",
        "jobId": job_id,
        "approvals": approvals,
    })
}

pub async fn answer(base: &str, job_id: &str, request_id: &str, option_id: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/jobs/{job_id}/permissions/{request_id}"))
        .json(&json!({"optionId": option_id}))
        .send()
        .await
        .expect("POST permissions")
}

fn hello(worker: &TestWorker, job_id: &str) -> PathBuf {
    worker.workspace_dir.join(job_id).join("hello.txt")
}

fn one<'a>(events: &'a [SseEvent], kind: &str) -> &'a SseEvent {
    let found: Vec<&SseEvent> = events.iter().filter(|e| e.kind() == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {:?}", kinds(events));
    found[0]
}

async fn asked(stream: &mut SseStream) -> (Vec<SseEvent>, Value) {
    let events = stream.until("permission_request").await;
    let question = events.last().expect("the question").data.clone();
    (events, question)
}

#[tokio::test]
async fn an_allowed_write_happens_and_the_job_completes() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.staying());
    let mut stream = worker
        .execute(&approval_job("allow-1", json!({"mode": "client"})))
        .await;
    let (mut events, question) = asked(&mut stream).await;

    let path = hello(&worker, "allow-1");
    assert_eq!(question["requestId"], "perm-1");
    assert_eq!(question["toolCallId"], "call_1");
    assert_eq!(question["title"], "Write hello.txt");
    assert_eq!(question["kind"], "edit");
    assert_eq!(question["diff"]["path"], path.to_str().unwrap());
    assert_eq!(question["diff"]["newText"], "hello\n");
    assert_eq!(question["diff"]["oldText"], Value::Null);
    assert_eq!(question["timeoutSeconds"], 300);
    assert_eq!(question["onTimeout"], "reject");
    let options: Vec<&str> = question["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(options, ["allow_once", "allow_always", "reject_once"]);
    assert!(!path.exists(), "written before the answer");

    let resp = answer(&worker.base, "allow-1", "perm-1", "allow").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"requestId": "perm-1", "optionId": "allow"})
    );
    let again = answer(&worker.base, "allow-1", "perm-1", "reject").await;
    assert_eq!(again.status(), 409);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"]["code"],
        "already_answered"
    );

    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    assert_eq!(
        kinds(&events),
        [
            "connected",
            "session",
            "thinking",
            "plan",
            "tool_use",
            "permission_request",
            "permission_resolved",
            "tool_result",
            "assistant_message",
            "completed"
        ]
    );
    assert_eq!(one(&events, "thinking").data["text"], "I should write the file.");
    assert_eq!(
        one(&events, "plan").data["entries"],
        json!([{"content": "Write hello.txt", "status": "in_progress", "priority": "high"}])
    );
    assert_eq!(
        one(&events, "tool_use").data["input"]["file_path"],
        path.to_str().unwrap()
    );
    let resolved = &one(&events, "permission_resolved").data;
    assert_eq!(
        (&resolved["optionId"], &resolved["by"]),
        (&json!("allow"), &json!("client"))
    );
    assert_eq!(one(&events, "tool_result").data["isError"], false);
    assert_eq!(one(&events, "assistant_message").data["text"], "I wrote hello.txt.");
    let done = &one(&events, "completed").data;
    assert_eq!(done["sessionId"], "sess-1");
    assert_eq!(done["result"], "I wrote hello.txt.");
    assert_eq!(done["costUsd"], 0.0123);
    assert_eq!(
        (&done["usage"]["inputTokens"], &done["usage"]["outputTokens"]),
        (&json!(1000), &json!(200))
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\n");

    // The agent heard the choice as ACP spells it, to its request id 0.
    let reply = agent
        .received()
        .into_iter()
        .find(|m| m["id"] == 0 && m.get("result").is_some())
        .expect("the permission reply");
    assert_eq!(
        reply["result"]["outcome"],
        json!({"outcome": "selected", "optionId": "allow"})
    );
    assert!(wait_until_dead(agent.pid()).await, "the agent outlived its turn");
}

#[tokio::test]
async fn a_rejected_write_leaves_no_file_and_the_job_still_ends_once() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.env());
    let mut stream = worker
        .execute(&approval_job("reject-1", json!({"mode": "client"})))
        .await;
    let (mut events, _) = asked(&mut stream).await;
    assert_eq!(answer(&worker.base, "reject-1", "perm-1", "reject").await.status(), 200);
    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    assert_eq!(one(&events, "permission_resolved").data["optionId"], "reject");
    assert_eq!(one(&events, "tool_result").data["isError"], true);
    assert_eq!(one(&events, "tool_result").data["output"], "the user refused");
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert!(!hello(&worker, "reject-1").exists());
}

#[tokio::test]
async fn without_an_answer_on_timeout_applies() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.staying());
    let approvals = json!({"mode": "client", "timeoutSeconds": 1, "onTimeout": "allow"});
    let mut stream = worker.execute(&approval_job("timeout-1", approvals)).await;
    let (mut events, question) = asked(&mut stream).await;
    assert_eq!(
        (&question["timeoutSeconds"], &question["onTimeout"]),
        (&json!(1), &json!("allow"))
    );
    events.extend(stream.until("permission_resolved").await);
    let resolved = &events.last().unwrap().data;
    assert_eq!(
        (&resolved["optionId"], &resolved["by"]),
        (&json!("allow"), &json!("timeout"))
    );
    assert_eq!(
        answer(&worker.base, "timeout-1", "perm-1", "reject").await.status(),
        409
    );
    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert!(hello(&worker, "timeout-1").exists());

    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.env());
    let approvals = json!({"mode": "client", "timeoutSeconds": 1});
    let events = worker
        .execute(&approval_job("timeout-2", approvals))
        .await
        .collect()
        .await;
    let resolved = &one(&events, "permission_resolved").data;
    assert_eq!(
        (&resolved["optionId"], &resolved["by"]),
        (&json!("reject"), &json!("timeout"))
    );
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert!(!hello(&worker, "timeout-2").exists());
}

#[tokio::test]
async fn waiting_for_an_answer_is_not_idleness() {
    let agent = ScriptedAgent::new();
    let mut env = agent.env();
    // Long enough for the agent to start and ask on a loaded machine (the limit also covers the time before its
    // first message); the question then waits well past it.
    env.push(("IDLE_TIMEOUT_SECONDS", "1.5"));
    let worker = TestWorker::spawn(&env);
    // The question waits well past the idle limit; then its timeout allows the write.
    let approvals = json!({"mode": "client", "timeoutSeconds": 4, "onTimeout": "allow"});
    let events = worker.execute(&approval_job("idle-1", approvals)).await.collect().await;
    assert_well_formed(&events, 0);
    assert_eq!(one(&events, "permission_resolved").data["by"], "timeout");
    assert_eq!(
        events.last().unwrap().kind(),
        "completed",
        "{}",
        events.last().unwrap().data
    );
    assert!(hello(&worker, "idle-1").exists());
}

#[tokio::test]
async fn cancel_while_asking_withdraws_the_question_and_leaves_no_process() {
    let agent = ScriptedAgent::new();
    let mut worker = TestWorker::spawn(&agent.env());
    let mut stream = worker
        .execute(&approval_job("cancel-1", json!({"mode": "client"})))
        .await;
    let (mut events, _) = asked(&mut stream).await;
    let pid = agent.pid();
    assert_eq!(worker.cancel().await.status(), 202);
    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    let resolved = &one(&events, "permission_resolved").data;
    assert_eq!(
        (&resolved["optionId"], &resolved["by"]),
        (&Value::Null, &json!("cancel"))
    );
    let end = &events.last().unwrap().data;
    assert_eq!(
        (&end["code"], &end["sessionId"]),
        (&json!("cancelled"), &json!("sess-1"))
    );
    assert!(wait_until_dead(pid).await, "the agent survived the cancel");
    assert!(!hello(&worker, "cancel-1").exists());

    let received = agent.received();
    let cancel = received.iter().position(|m| m["method"] == "session/cancel");
    let withdrawn = received
        .iter()
        .position(|m| m["id"] == 0 && m["result"]["outcome"] == json!({"outcome": "cancelled"}));
    assert!(cancel.is_some() && withdrawn.is_some(), "{received:?}");
    assert!(worker.exit_status().await.success());
}

#[tokio::test]
async fn sigterm_while_asking_withdraws_the_question_and_the_worker_exits() {
    let agent = ScriptedAgent::new();
    let mut worker = TestWorker::spawn(&agent.env());
    let mut stream = worker.execute(&approval_job("term-1", json!({"mode": "client"}))).await;
    let (mut events, _) = asked(&mut stream).await;
    let pid = agent.pid();
    worker.signal(libc::SIGTERM);
    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    let resolved = &one(&events, "permission_resolved").data;
    assert_eq!(resolved["by"], "cancel");
    assert_eq!(events.last().unwrap().data["code"], "shutdown");
    assert!(wait_until_dead(pid).await, "the agent survived SIGTERM");
    assert!(worker.exit_status().await.success());
    assert!(
        agent.received().iter().any(|m| m["method"] == "session/cancel"),
        "no session/cancel before the kill"
    );
}

#[tokio::test]
async fn the_answer_endpoint_refuses_what_it_cannot_take() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.env());
    let mut stream = worker
        .execute(&approval_job("refuse-1", json!({"mode": "client"})))
        .await;
    asked(&mut stream).await;

    let unknown_job = answer(&worker.base, "other-job", "perm-1", "allow").await;
    assert_eq!(unknown_job.status(), 404);
    assert_eq!(
        unknown_job.json::<Value>().await.unwrap()["error"]["code"],
        "job_not_found"
    );
    let unknown_request = answer(&worker.base, "refuse-1", "perm-9", "allow").await;
    assert_eq!(unknown_request.status(), 404);
    assert_eq!(
        unknown_request.json::<Value>().await.unwrap()["error"]["code"],
        "permission_not_found"
    );
    let not_offered = answer(&worker.base, "refuse-1", "perm-1", "maybe").await;
    assert_eq!(not_offered.status(), 422);
    assert_eq!(not_offered.json::<Value>().await.unwrap()["error"]["field"], "optionId");
    let no_option = client()
        .post(worker.url("/jobs/refuse-1/permissions/perm-1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_option.status(), 422);
    assert_eq!(no_option.json::<Value>().await.unwrap()["error"]["field"], "optionId");

    // Refusals cost nothing: the question is still open.
    assert_eq!(answer(&worker.base, "refuse-1", "perm-1", "allow").await.status(), 200);
    assert_eq!(stream.collect().await.last().unwrap().kind(), "completed");
}

#[tokio::test]
async fn a_provider_without_an_acp_path_refuses_approvals_by_name() {
    let worker = TestWorker::spawn(&[]);
    for provider in ["cursor", "opencode"] {
        let resp = worker
            .post_execute(&json!({
                "userRequest": "x",
                "codingAssistantProvider": provider,
                "approvals": {"mode": "client"},
            }))
            .await;
        assert_eq!(resp.status(), 422, "{provider}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"]["field"], "approvals");
    }
    let resp = worker
        .post_execute(&json!({
            "userRequest": "x",
            "codingAssistantProvider": "copilot",
            "approvals": {"mode": "client", "onTimeout": "maybe"},
        }))
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["field"],
        "approvals.onTimeout"
    );
    // A headless-only option next to approvals would be silently ignored; it is refused by name instead.
    let resp = worker
        .post_execute(&json!({
            "userRequest": "x",
            "codingAssistantProvider": "claude-code",
            "providerOptions": {"permissionMode": "bypassPermissions"},
            "approvals": {"mode": "client"},
        }))
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["field"],
        "providerOptions.permissionMode"
    );
    assert_eq!(worker.status().await["status"], "idle");
}

#[tokio::test]
async fn an_acp_agent_without_approvals_runs_with_every_tool_allowed() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.env());
    let health = worker.get_json("/health").await;
    assert_eq!(health["providers"]["acp:scripted"]["available"], true, "{health}");
    let mut body = approval_job("auto-1", Value::Null);
    body.as_object_mut().unwrap().remove("approvals");
    let events = worker.execute(&body).await.collect().await;
    assert_well_formed(&events, 0);
    assert!(!kinds(&events).contains(&"permission_request"), "{:?}", kinds(&events));
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert!(hello(&worker, "auto-1").exists());
}

#[tokio::test]
async fn an_agent_error_is_classified_and_ends_the_job_once() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.env());
    let mut body = approval_job("fail-1", json!({"mode": "client"}));
    body["userRequest"] = json!("fail please");
    let events = worker.execute(&body).await.collect().await;
    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "auth_failed", "{end}");
    assert_eq!(end["sessionId"], "sess-1");
}

#[tokio::test]
async fn through_the_gateway_the_answer_reaches_the_worker_that_asked() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.staying());
    // The gateway validates requests with the worker's own code, so it knows the operator's agents too.
    let gw = crate::support::fleet::gateway(&worker.base, &[("ACP_AGENTS", agent.acp_agents.as_str())]);
    crate::support::fleet::wait_idle_workers(&gw, 1).await;

    let resp = client()
        .post(gw.url("/execute"))
        .json(&approval_job("gw-allow-1", json!({"mode": "client"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = SseStream::new(resp);
    let (mut events, question) = asked(&mut stream).await;
    assert_eq!(question["requestId"], "perm-1");

    let bad = answer(&gw.base, "gw-allow-1", "perm-1", "maybe").await;
    assert_eq!(bad.status(), 422);
    let resp = answer(&gw.base, "gw-allow-1", "perm-1", "allow").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answer(&gw.base, "gw-allow-1", "perm-1", "allow").await.status(), 409);
    events.extend(stream.collect().await);
    assert_well_formed(&events, 0);
    let resolved = &one(&events, "permission_resolved").data;
    assert_eq!(
        (&resolved["optionId"], &resolved["by"]),
        (&json!("allow"), &json!("client"))
    );
    assert_eq!(events.last().unwrap().kind(), "completed");
    assert!(hello(&worker, "gw-allow-1").exists());
    assert_eq!(answer(&gw.base, "no-such-job", "perm-1", "allow").await.status(), 404);
}

#[tokio::test]
async fn exec_at_a_terminal_puts_the_agents_question_to_the_person_and_the_write_follows_the_choice() {
    let agent = ScriptedAgent::new();
    let worker = TestWorker::spawn(&agent.staying());
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_unified-worker"));
    command
        .args([
            "exec",
            "--url",
            &worker.base,
            "--provider",
            "acp:scripted",
            "--workspace",
            "tty",
        ])
        .args(["--approvals", "write hello.txt"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    let mut term = crate::support::pty::PtyChild::spawn(command);
    term.wait_for("answer 1-3 (number or option id): ").await;
    let shown = term.output();
    assert!(shown.contains("Write hello.txt"), "{shown}");
    assert!(
        shown.contains("1) Allow [allow]") && shown.contains("3) Reject [reject]"),
        "{shown}"
    );
    let file = worker.workspace_dir.join("tty").join("hello.txt");
    assert!(!file.exists(), "written before the person answered");
    term.type_line("1");
    assert_eq!(term.exit_code().await, 0, "{}", term.output());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n");
    assert!(term.output().contains("I wrote hello.txt."), "{}", term.output());
}
