//! `unified-worker acp` driven by a real editor-side client: the reference TypeScript SDK's
//! `ClientSideConnection` (`tests/acp-client/`, pinned by its package-lock.json and installed by `scripts/test.sh`),
//! against a gateway whose workers run the real Copilot CLI over ACP against the suite's mock model API, and against
//! a single worker (docs/acp-server.md).
//!
//! The driver script takes the test's commands on stdin and reports what the editor saw, in order, on stdout.

use std::{path::Path, process::Stdio};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::{
    copilot::copilot_worker,
    providers::ModelApi,
    support::{
        PATIENCE, TestWorker,
        cutting_proxy::CuttingProxy,
        fleet::{gateway, wait_idle_workers},
        mock_anthropic::MockAnthropic,
        reply::Reply,
    },
};

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/acp-client");
const PACKAGE: &str = "@agentclientprotocol/sdk";
const CODE_WORD: &str = "HERON-7731";

/// Whether Node and the pinned SDK are here. In CI their absence fails the test; elsewhere it says it skipped.
fn client_available() -> bool {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let sdk = Path::new(CLIENT_DIR)
        .join("node_modules")
        .join(PACKAGE)
        .join("package.json")
        .is_file();
    if node && sdk {
        return true;
    }
    let missing = if node {
        format!("{PACKAGE} is not installed in tests/acp-client")
    } else {
        "node is not installed".into()
    };
    if crate::support::required() {
        panic!("{missing}: CI must run the ACP client tests (scripts/test.sh runs `npm ci` in tests/acp-client)");
    }
    eprintln!("skipped: {missing}; run `npm ci` in tests/acp-client (scripts/test.sh does)");
    false
}

/// The editor: the SDK's client running the bridge as its agent.
struct Editor {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    reports: Vec<Value>,
    next_id: u64,
}

impl Editor {
    fn start(url: &str, extra: &[&str]) -> Editor {
        let mut args = vec![
            "drive.mjs",
            env!("CARGO_BIN_EXE_unified-worker"),
            "acp",
            "--url",
            url,
            "--provider",
            "copilot",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new("node")
            .args(&args)
            .current_dir(CLIENT_DIR)
            .env_remove("UNIFIED_WORKER_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Editor {
            child,
            stdin,
            stdout,
            reports: Vec::new(),
            next_id: 0,
        }
    }

    async fn command(&mut self, command: Value) {
        let stdin = self.stdin.as_mut().expect("the editor is still open");
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write a command");
        stdin.flush().await.expect("flush");
    }

    /// Calls `method` of the SDK's connection; returns the id its reply will carry.
    async fn call(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.command(json!({"id": id, "method": method, "params": params}))
            .await;
        id
    }

    /// A session in `cwd` with no MCP servers; its id.
    async fn new_session(&mut self, cwd: &std::path::Path) -> String {
        self.ok("newSession", json!({"cwd": cwd, "mcpServers": []})).await["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string()
    }

    /// The option kinds the next permission requests are answered with.
    async fn will_answer(&mut self, kinds: &[&str]) {
        self.command(json!({ "answer": kinds })).await;
    }

    async fn next_report(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(PATIENCE, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("the editor heard nothing; so far:\n{}", self.transcript()))
            .expect("read the driver's output")?;
        let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a report ({e}): {line}"));
        self.reports.push(report.clone());
        Some(report)
    }

    /// Reads until a report satisfies `wanted`; returns it.
    async fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        while let Some(report) = self.next_report().await {
            if wanted(&report) {
                return report;
            }
        }
        panic!(
            "the editor ended before the report awaited; it saw:\n{}",
            self.transcript()
        )
    }

    /// The reply to call `id`: its result, or the error the agent answered.
    async fn reply(&mut self, id: u64) -> Result<Value, Value> {
        let report = self.until(|r| r["reply"] == id).await;
        match report.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(report["result"].clone()),
        }
    }

    async fn ok(&mut self, method: &str, params: Value) -> Value {
        let id = self.call(method, params).await;
        self.reply(id)
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e}; the editor saw:\n{}", self.transcript()))
    }

    /// The session updates seen since report `from`, in order.
    fn updates_since(&self, from: usize) -> Vec<Value> {
        self.reports[from..]
            .iter()
            .filter_map(|r| r.get("update"))
            .map(|u| u["update"].clone())
            .collect()
    }

    /// Closes the editor's side; the bridge must end by itself.
    async fn end(mut self) {
        drop(self.stdin.take());
        let exited = self.until(|r| r.get("exited").is_some()).await;
        assert_eq!(exited["exited"], 0, "the bridge's exit; it saw:\n{}", self.transcript());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the driver ends with the bridge")
            .expect("wait for node");
        assert!(status.success(), "the driver failed: {status}");
    }

    fn transcript(&self) -> String {
        self.reports.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    }
}

fn of_kind<'a>(updates: &'a [Value], kind: &str) -> Vec<&'a Value> {
    updates.iter().filter(|u| u["sessionUpdate"] == kind).collect()
}

fn text_of(updates: &[Value], kind: &str) -> String {
    of_kind(updates, kind)
        .iter()
        .filter_map(|u| u["content"]["text"].as_str())
        .collect()
}

fn prompt(session: &str, text: &str) -> Value {
    json!({"sessionId": session, "prompt": [{"type": "text", "text": text}]})
}

/// Reads on until the mock has taken `n` conversation requests: the model is at work on the turn.
async fn until_model_called(mock: &MockAnthropic, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while mock.conversation().len() < n {
        assert!(tokio::time::Instant::now() < deadline, "the CLI never called the model");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The turn writes note.txt after the editor allowed it: the tool call, its update and the agent's message arrive
/// as updates, each once, the question as a permission request, and the reply ends the turn.
async fn first_turn_writes_the_note(editor: &mut Editor, session: &str) -> Vec<Value> {
    let from = editor.reports.len();
    editor.will_answer(&["allow_once"]).await;
    let reply = editor
        .ok(
            "prompt",
            prompt(
                session,
                &format!("Remember the code word {CODE_WORD} and write it to note.txt."),
            ),
        )
        .await;
    assert_eq!(reply["stopReason"], "end_turn", "{reply}");
    let updates = editor.updates_since(from);
    let asked: Vec<&Value> = editor.reports[from..]
        .iter()
        .filter(|r| r.get("permission").is_some())
        .collect();
    assert_eq!(asked.len(), 1, "one question: {}", editor.transcript());
    assert_eq!(asked[0]["permission"]["sessionId"], session);
    assert!(asked[0]["chose"].is_string(), "{}", asked[0]);
    let calls = of_kind(&updates, "tool_call");
    assert!(!calls.is_empty(), "a tool call: {updates:?}");
    for call in &calls {
        let id = &call["toolCallId"];
        assert_eq!(
            calls.iter().filter(|c| c["toolCallId"] == *id).count(),
            1,
            "tool call {id} arrived once: {updates:?}"
        );
        let closed: Vec<_> = of_kind(&updates, "tool_call_update")
            .into_iter()
            .filter(|u| u["toolCallId"] == *id)
            .collect();
        assert_eq!(closed.len(), 1, "tool call {id} was updated once: {updates:?}");
        assert_eq!(closed[0]["status"], "completed", "{updates:?}");
    }
    let said = text_of(&updates, "agent_message_chunk");
    assert_eq!(
        said.matches("Noted.").count(),
        1,
        "the agent's message arrived once: {said:?}"
    );
    updates
}

/// Against a gateway with two workers running Copilot over ACP: the whole story of an editor session, through a
/// connection the test cuts in the middle of the first turn, then the session loaded again by a new bridge.
#[tokio::test]
async fn an_editor_holds_a_session_on_the_fleet_and_loads_it_again_in_a_new_bridge() {
    if !client_available() {
        return;
    }
    let store = tempfile::TempDir::new().unwrap();
    let store_dir = store.path().to_str().unwrap();
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "note.txt".into(),
        content: format!("the code word is {CODE_WORD}\n"),
        final_text: "Noted.".into(),
    });
    let workers: Vec<TestWorker> = ["worker-1", "worker-2"]
        .iter()
        .map(|id| {
            copilot_worker(
                &mock,
                &[
                    ("WORKER_ID", id),
                    ("EXIT_AFTER_JOB", "false"),
                    ("SESSION_STORE_DIR", store_dir),
                ],
            )
        })
        .collect();
    let addresses = workers.iter().map(|w| w.base.clone()).collect::<Vec<_>>().join(",");
    let gw = gateway(&addresses, &[]);
    wait_idle_workers(&gw, 2).await;
    // The bridge's first connection (the job's stream) is cut right after the first tool call.
    let proxy = CuttingProxy::start(gw.port, "event: tool_use").await;
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let mut editor = Editor::start(&url, &[]);

    let init = editor
        .ok("initialize", json!({"protocolVersion": 1, "clientCapabilities": {}}))
        .await;
    assert_eq!(init["protocolVersion"], 1);
    assert_eq!(init["agentCapabilities"]["loadSession"], true);
    assert_eq!(init["agentCapabilities"]["promptCapabilities"]["image"], false);
    let cwd = tempfile::TempDir::new().unwrap();
    let session = editor.new_session(cwd.path()).await;

    // Turn 1: allowed, the file is written; the cut connection costs the editor nothing.
    first_turn_writes_the_note(&mut editor, &session).await;
    proxy.wait_cut().await;
    let note = workers
        .iter()
        .map(|w| w.workspace_dir.join(&session).join("note.txt"))
        .find(|p| p.exists())
        .expect("the job's work tree has note.txt");
    assert!(std::fs::read_to_string(&note).unwrap().contains(CODE_WORD));

    // Turn 2 refers to turn 1's file; the editor rejects the write it asks for.
    mock.set_reply(Reply::WriteFile {
        file_name: "copy.txt".into(),
        content: format!("copied: {CODE_WORD}\n"),
        final_text: "I did not copy it.".into(),
    });
    let from = editor.reports.len();
    editor.will_answer(&["reject_once"]).await;
    let reply = editor
        .ok(
            "prompt",
            prompt(&session, "Copy the code word in note.txt into copy.txt."),
        )
        .await;
    assert_eq!(reply["stopReason"], "end_turn", "{reply}");
    let asked = editor.reports[from..]
        .iter()
        .find(|r| r.get("permission").is_some())
        .cloned();
    let asked = asked.unwrap_or_else(|| panic!("turn 2 asked: {}", editor.transcript()));
    assert!(
        asked["permission"]["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["optionId"] == asked["chose"])
    );
    let copy = note.with_file_name("copy.txt");
    assert!(!copy.exists(), "a rejected write writes nothing");
    let asked_model = mock.conversation_text(mock.conversation().last().unwrap());
    assert!(
        asked_model.contains("note.txt") && asked_model.contains(CODE_WORD),
        "turn 2 goes on with turn 1"
    );
    let updates = editor.updates_since(from);
    let rejected = asked["permission"]["toolCall"]["toolCallId"].clone();
    let closed: Vec<_> = of_kind(&updates, "tool_call_update")
        .into_iter()
        .filter(|u| u["toolCallId"] == rejected)
        .collect();
    assert_eq!(closed.len(), 1, "the rejected call is closed once: {updates:?}");
    assert_eq!(closed[0]["status"], "failed", "{updates:?}");

    // Turn 3 is cancelled while the model is at work.
    let calls = mock.conversation().len();
    mock.set_reply(Reply::Stall);
    let id = editor
        .call("prompt", prompt(&session, "Think about it for a long time."))
        .await;
    until_model_called(&mock, calls + 1).await;
    editor.call("cancel", json!({"sessionId": session})).await;
    let cancelled = editor.reply(id).await.expect("the cancelled prompt's reply");
    assert_eq!(cancelled["stopReason"], "cancelled");

    // The editor goes away: the bridge closes the job, which saves the session and its work tree.
    editor.end().await;

    // A new bridge loads the session: the old turns are replayed, and the next prompt finds the tree restored.
    mock.set_reply(Reply::Text(format!("The code word is {CODE_WORD}.")));
    let mut editor = Editor::start(&url, &[]);
    editor
        .ok("initialize", json!({"protocolVersion": 1, "clientCapabilities": {}}))
        .await;
    editor
        .ok(
            "loadSession",
            json!({"sessionId": session, "cwd": cwd.path(), "mcpServers": []}),
        )
        .await;
    let replayed = editor.updates_since(0);
    let users = text_of(&replayed, "user_message_chunk");
    assert!(
        users.contains("write it to note.txt") && users.contains("into copy.txt") && users.contains("long time"),
        "every old turn's message is replayed: {users:?}"
    );
    assert!(text_of(&replayed, "agent_message_chunk").contains("Noted."));
    assert!(!of_kind(&replayed, "tool_call").is_empty(), "{replayed:?}");
    let from = editor.reports.len();
    let reply = editor
        .ok("prompt", prompt(&session, "Which code word did I give you?"))
        .await;
    assert_eq!(reply["stopReason"], "end_turn");
    assert!(text_of(&editor.updates_since(from), "agent_message_chunk").contains(CODE_WORD));
    let resumed_job = format!("{session}.2");
    let restored = workers
        .iter()
        .map(|w| w.workspace_dir.join(&resumed_job).join("note.txt"))
        .find(|p| p.exists())
        .expect("the resumed job's work tree has turn 1's note.txt");
    assert!(std::fs::read_to_string(restored).unwrap().contains(CODE_WORD));
    let last = mock.conversation_text(mock.conversation().last().unwrap());
    assert!(last.contains(CODE_WORD), "the conversation goes on in the new job");
    editor.ok("closeSession", json!({"sessionId": session})).await;
    editor.end().await;
}

/// The same client against one worker, no gateway: a turn that writes a file after the editor allowed it, a second
/// turn of the same conversation, a cancelled one, and the close.
#[tokio::test]
async fn an_editor_holds_a_session_on_a_single_worker() {
    if !client_available() {
        return;
    }
    let mock = MockAnthropic::start(Reply::WriteFile {
        file_name: "note.txt".into(),
        content: format!("the code word is {CODE_WORD}\n"),
        final_text: "Noted.".into(),
    });
    let worker = copilot_worker(&mock, &[("EXIT_AFTER_JOB", "false")]);
    let mut editor = Editor::start(&worker.base, &[]);
    editor
        .ok("initialize", json!({"protocolVersion": 1, "clientCapabilities": {}}))
        .await;
    let cwd = tempfile::TempDir::new().unwrap();
    let session = editor.new_session(cwd.path()).await;

    first_turn_writes_the_note(&mut editor, &session).await;
    let note = worker.workspace_dir.join(&session).join("note.txt");
    assert!(std::fs::read_to_string(&note).unwrap().contains(CODE_WORD));

    mock.set_reply(Reply::Text("It says HERON.".into()));
    let reply = editor.ok("prompt", prompt(&session, "What does note.txt say?")).await;
    assert_eq!(reply["stopReason"], "end_turn");
    let asked_model = mock.conversation_text(mock.conversation().last().unwrap());
    assert!(asked_model.contains(CODE_WORD), "turn 2 goes on with turn 1");

    let calls = mock.conversation().len();
    mock.set_reply(Reply::Stall);
    let id = editor
        .call("prompt", prompt(&session, "Think about it for a long time."))
        .await;
    until_model_called(&mock, calls + 1).await;
    editor.call("cancel", json!({"sessionId": session})).await;
    assert_eq!(editor.reply(id).await.expect("a reply")["stopReason"], "cancelled");

    // The close ends the job: its stream ends with one `completed` over the three turns.
    editor.ok("closeSession", json!({"sessionId": session})).await;
    let events = crate::support::SseStream::new(worker.events_after(None).await)
        .collect()
        .await;
    let end = &events.last().expect("the job's events").data;
    assert_eq!(end["type"], "completed", "{end}");
    assert_eq!(end["jobId"], session.as_str());
    editor.end().await;
}

/// MCP servers the worker's policy refuses fail the first prompt with the worker's reason, naming the field.
#[tokio::test]
async fn the_editors_mcp_servers_outside_the_workers_policy_are_refused_by_name() {
    if !client_available() {
        return;
    }
    let mock = MockAnthropic::start(Reply::Text("hi".into()));
    let worker = copilot_worker(&mock, &[("MCP_ALLOWED_COMMANDS", "docs-server")]);
    let mut editor = Editor::start(&worker.base, &[]);
    editor
        .ok("initialize", json!({"protocolVersion": 1, "clientCapabilities": {}}))
        .await;
    let session = editor
        .ok(
            "newSession",
            json!({"cwd": "/tmp", "mcpServers": [{"name": "shell", "command": "/bin/sh", "args": [], "env": []}]}),
        )
        .await["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let id = editor.call("prompt", prompt(&session, "hello")).await;
    let refused = editor.reply(id).await.expect_err("the prompt is refused");
    let said = refused["data"].as_str().unwrap_or_default();
    assert!(said.contains("providerOptions.mcpServers.shell"), "{refused}");
    assert_eq!(mock.conversation().len(), 0, "no job ran");
    editor.end().await;
}
