//! Approvals with the real agents over ACP (docs/approvals.md), each against the suite's mock API: the agent asks before it
//! writes a file; allow writes it, reject does not, no answer applies `onTimeout`, and a cancel while the question
//! is open ends the job with `cancelled` and leaves no process behind.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{
    approvals::answer,
    support::{
        SseStream, TestWorker,
        reply::Reply,
        sse::{SseEvent, assert_well_formed, kinds},
    },
};

/// The first option of this kind in a `permission_request`.
fn option_of(question: &Value, kind: &str) -> String {
    question["options"]
        .as_array()
        .and_then(|options| options.iter().find(|o| o["kind"] == kind))
        .and_then(|o| o["optionId"].as_str())
        .unwrap_or_else(|| panic!("no {kind} option in {question}"))
        .to_string()
}

/// Processes whose working directory is inside `dir`: an agent and its tools run in the workspace.
fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| !crate::support::process_is_dead(*pid))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir)))
        .collect()
}

async fn no_process_in(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let left = processes_in(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes left in {}: {left:?}",
            dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One real agent, as a test runs it.
pub struct Agent {
    pub worker: TestWorker,
    /// The request for "write hello.txt", without `approvals`.
    pub body: Value,
    /// The text the mock API ends with once the tool ran (or was refused).
    pub final_text: &'static str,
}

pub const CONTENT: &str = "hello from an approved agent\n";

impl Agent {
    fn job(&self, job_id: &str, approvals: Value) -> Value {
        let mut body = self.body.clone();
        body["jobId"] = json!(job_id);
        body["approvals"] = approvals;
        body
    }

    fn file(&self, job_id: &str) -> PathBuf {
        self.worker.workspace_dir.join(job_id).join("hello.txt")
    }

    async fn until_asked(&self, job_id: &str, approvals: Value) -> (SseStream, Vec<SseEvent>, Value) {
        // The stories share a worker: the one before may still be draining.
        self.worker.wait_for_status("idle").await;
        let mut stream = self.worker.execute(&self.job(job_id, approvals)).await;
        let events = stream.until("permission_request").await;
        let question = events.last().unwrap().data.clone();
        assert!(!self.file(job_id).exists(), "written before the answer");
        (stream, events, question)
    }

    /// Runs job `job_id` to its question, answers it with its first option of `kind` and reads the rest: the whole
    /// stream, checked for form, and the option chosen.
    async fn answered(&self, job_id: &str, kind: &str) -> (Vec<SseEvent>, String) {
        let (mut stream, mut events, question) = self.until_asked(job_id, json!({"mode": "client"})).await;
        let option = option_of(&question, kind);
        let resp = answer(
            &self.worker.base,
            job_id,
            question["requestId"].as_str().unwrap(),
            &option,
        )
        .await;
        assert_eq!(resp.status(), 200);
        events.extend(stream.collect().await);
        assert_well_formed(&events, 0);
        (events, option)
    }

    /// Allow: the file is written and the job completes.
    pub async fn allow(&self) {
        let (events, option) = self.answered("allow", "allow_once").await;
        let resolved: Vec<&SseEvent> = events.iter().filter(|e| e.kind() == "permission_resolved").collect();
        assert_eq!(resolved[0].data["optionId"], option.as_str());
        assert_eq!(resolved[0].data["by"], "client");
        let end = events.last().unwrap();
        assert_eq!(end.kind(), "completed", "{:?}\n{}", kinds(&events), end.data);
        assert_eq!(end.data["result"], self.final_text, "{}", end.data);
        assert_eq!(
            std::fs::read_to_string(self.file("allow")).expect("the agent wrote the file"),
            CONTENT
        );
    }

    /// Reject: no file, and the job still ends with exactly one terminal event.
    pub async fn reject(&self) {
        let (events, option) = self.answered("reject", "reject_once").await;
        assert!(!self.file("reject").exists(), "written after a reject");
        // The agent is told and ends its turn: the job did what it was allowed to.
        assert_eq!(
            events.last().unwrap().kind(),
            "completed",
            "{}",
            events.last().unwrap().data
        );
        assert!(
            events
                .iter()
                .any(|e| e.kind() == "permission_resolved" && e.data["optionId"] == option.as_str())
        );
    }

    /// No answer: `onTimeout` (reject) applies after `timeoutSeconds`.
    pub async fn time_out(&self) {
        let approvals = json!({"mode": "client", "timeoutSeconds": 1, "onTimeout": "reject"});
        let (mut stream, mut events, question) = self.until_asked("timeout", approvals).await;
        events.extend(stream.collect().await);
        assert_well_formed(&events, 0);
        let resolved = events
            .iter()
            .find(|e| e.kind() == "permission_resolved" && e.data["requestId"] == question["requestId"])
            .expect("resolved");
        assert_eq!(resolved.data["by"], "timeout");
        assert_eq!(resolved.data["optionId"], option_of(&question, "reject_once").as_str());
        assert!(!self.file("timeout").exists(), "written without an answer");
    }

    /// Cancel while asking: `cancelled`, and nothing of the agent left running.
    pub async fn cancel(&self) {
        let (mut stream, mut events, _) = self.until_asked("cancel", json!({"mode": "client"})).await;
        assert_eq!(self.worker.cancel().await.status(), 202);
        events.extend(stream.collect().await);
        assert_well_formed(&events, 0);
        assert!(
            events
                .iter()
                .any(|e| e.kind() == "permission_resolved" && e.data["by"] == "cancel")
        );
        assert_eq!(events.last().unwrap().data["code"], "cancelled");
        no_process_in(&self.worker.workspace_dir.join("cancel")).await;
        assert!(!self.file("cancel").exists());
    }
}

/// The stories run one after another on one worker, which stays after each job and stops an agent quickly.
const STAYING: [(&str, &str); 2] = [("EXIT_AFTER_JOB", "false"), ("KILL_GRACE_SECONDS", "1")];
const FINAL_TEXT: &str = "I wrote hello.txt.";

/// What every mock API answers in the stories: write `hello.txt`, then say so.
fn write_hello() -> Reply {
    Reply::WriteFile {
        file_name: "hello.txt".into(),
        content: CONTENT.into(),
        final_text: FINAL_TEXT.into(),
    }
}

/// `STAYING` and the variable that points the worker at an installed ACP adapter.
fn with_adapter<'a>(var: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    assert!(
        Path::new(path).exists(),
        "the ACP adapter is not at {path}; run scripts/install-clis.sh or set {var}"
    );
    let mut env = STAYING.to_vec();
    env.push((var, path));
    env
}

/// The two tests of every real agent, for a module with `mock()` and `agent(&mock)`: allow on a worker of its own,
/// then reject, no answer and cancel one after another on another.
macro_rules! stories {
    ($allow:ident, $the_rest:ident) => {
        #[tokio::test]
        async fn $allow() {
            let mock = mock();
            agent(&mock).allow().await;
        }

        #[tokio::test]
        async fn $the_rest() {
            let mock = mock();
            let agent = agent(&mock);
            agent.reject().await;
            agent.time_out().await;
            agent.cancel().await;
        }
    };
}

mod copilot {
    use super::*;
    use crate::{
        copilot::copilot_worker,
        support::mock_anthropic::{MockAnthropic, Reply},
    };

    fn mock() -> MockAnthropic {
        MockAnthropic::start(write_hello())
    }

    fn agent(mock: &MockAnthropic) -> Agent {
        Agent {
            worker: copilot_worker(mock, &STAYING),
            body: json!({"userRequest": "Create hello.txt", "codingAssistantProvider": "copilot"}),
            final_text: FINAL_TEXT,
        }
    }

    stories!(
        copilot_asks_and_an_allowed_write_happens,
        copilot_rejected_timed_out_and_cancelled_writes_do_not_happen
    );

    /// Over ACP Copilot reports a refused model call only as message text; the job must still fail, by name.
    #[tokio::test]
    async fn copilot_over_acp_reports_a_refused_key_as_auth_failed() {
        let mock = MockAnthropic::start(Reply::Status(401));
        let agent = agent(&mock);
        let mut body = agent.job("auth", json!({"mode": "client"}));
        body["userRequest"] = json!("Say hi.");
        let events = agent.worker.execute(&body).await.collect().await;
        assert_well_formed(&events, 0);
        let end = &events.last().unwrap().data;
        assert_eq!(end["code"], "auth_failed", "{end}");
    }
}

mod gemini {
    use super::*;
    use crate::{
        gemini::{gemini_job, gemini_worker},
        support::mock_gemini::MockGemini,
    };

    fn mock() -> MockGemini {
        MockGemini::start(write_hello())
    }

    fn agent(mock: &MockGemini) -> Agent {
        Agent {
            worker: gemini_worker(mock, &STAYING),
            body: gemini_job("Create hello.txt"),
            final_text: FINAL_TEXT,
        }
    }

    stories!(
        gemini_asks_and_an_allowed_write_happens,
        gemini_rejected_timed_out_and_cancelled_writes_do_not_happen
    );
}

mod claude_code {
    use super::*;
    use crate::{
        claude_code::claude_worker,
        support::{claude_acp_bin, mock_anthropic::MockAnthropic},
    };

    fn mock() -> MockAnthropic {
        MockAnthropic::start(write_hello())
    }

    fn agent(mock: &MockAnthropic) -> Agent {
        Agent {
            worker: claude_worker(mock, &with_adapter("CLAUDE_ACP_BIN", &claude_acp_bin())),
            body: json!({"userRequest": "Create hello.txt", "codingAssistantProvider": "claude-code"}),
            final_text: FINAL_TEXT,
        }
    }

    stories!(
        claude_code_asks_through_its_adapter_and_an_allowed_write_happens,
        claude_code_rejected_timed_out_and_cancelled_writes_do_not_happen
    );
}

mod codex {
    use super::*;
    use crate::{
        codex::{codex_job, codex_worker},
        support::{codex_acp_bin, mock_openai::MockOpenAi},
    };

    fn mock() -> MockOpenAi {
        MockOpenAi::start(write_hello())
    }

    fn agent(mock: &MockOpenAi) -> Agent {
        Agent {
            worker: codex_worker(mock, &with_adapter("CODEX_ACP_BIN", &codex_acp_bin())),
            body: codex_job("Create hello.txt"),
            final_text: FINAL_TEXT,
        }
    }

    stories!(
        codex_asks_through_its_adapter_and_an_allowed_write_happens,
        codex_rejected_timed_out_and_cancelled_writes_do_not_happen
    );
}

/// The job's MCP servers reach every agent over ACP (in `session/new`, or as in its headless runs where its ACP mode
/// ignores those): each starts the suite's marker server and calls its tool once the client allows it.
mod mcp {
    use super::*;
    use crate::{
        mcp::{MARKER_TEXT, call_the_marker_tool, marker_servers},
        support::{claude_acp_bin, codex_acp_bin, mock_anthropic::MockAnthropic},
    };

    /// Runs the job, allowing every question; returns the events.
    async fn allowing_everything(worker: &TestWorker, body: &Value) -> Vec<SseEvent> {
        let mut stream = worker.execute(body).await;
        let mut events = Vec::new();
        while let Some(event) = stream.next_event().await {
            if event.kind() == "permission_request" {
                let option = option_of(&event.data, "allow_once");
                let job_id = body["jobId"].as_str().unwrap();
                let resp = answer(&worker.base, job_id, event.data["requestId"].as_str().unwrap(), &option).await;
                assert_eq!(resp.status(), 200);
            }
            events.push(event);
        }
        assert_well_formed(&events, 0);
        events
    }

    /// `body`, the provider's own request, with approvals and the marker server added.
    async fn check(worker: &TestWorker, mut body: Value) {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        body["userRequest"] = json!("Write the marker through the MCP tool");
        body["jobId"] = json!("mcp");
        body["approvals"] = json!({"mode": "client"});
        body["providerOptions"]["mcpServers"] = marker_servers(&marker);
        let events = allowing_everything(worker, &body).await;
        let end = events.last().unwrap();
        assert_eq!(end.kind(), "completed", "{:?}\n{}", kinds(&events), end.data);
        assert_eq!(
            std::fs::read_to_string(&marker).expect("the MCP tool ran"),
            format!("{MARKER_TEXT}\n")
        );
        let streamed: String = events.iter().map(|e| e.data.to_string()).collect();
        assert!(
            !streamed.contains("CANARY") && !worker.logs().contains("CANARY"),
            "a canary leaked"
        );
    }

    #[tokio::test]
    async fn copilot_over_acp_runs_the_jobs_mcp_server() {
        let mock = MockAnthropic::start(call_the_marker_tool());
        let worker = crate::copilot::copilot_worker(&mock, &STAYING);
        check(&worker, crate::copilot::copilot_job("x")).await;
    }

    #[tokio::test]
    async fn codex_over_acp_runs_the_jobs_mcp_server() {
        let mock = crate::support::mock_openai::MockOpenAi::start(call_the_marker_tool());
        let worker = crate::codex::codex_worker(&mock, &with_adapter("CODEX_ACP_BIN", &codex_acp_bin()));
        check(&worker, crate::codex::codex_job("x")).await;
    }

    #[tokio::test]
    async fn gemini_over_acp_runs_the_jobs_mcp_server() {
        let mock = crate::support::mock_gemini::MockGemini::start(call_the_marker_tool());
        let worker = crate::gemini::gemini_worker(&mock, &STAYING);
        check(&worker, crate::gemini::gemini_job("x")).await;
    }

    #[tokio::test]
    async fn claude_code_over_acp_runs_the_jobs_mcp_server() {
        let mock = MockAnthropic::start(call_the_marker_tool());
        let worker = crate::claude_code::claude_worker(&mock, &with_adapter("CLAUDE_ACP_BIN", &claude_acp_bin()));
        check(&worker, crate::support::job("x")).await;
    }
}

/// A session resumed over ACP (`session/load`) on another replica through the session store: the agent remembers,
/// and the stream shows the new turn, not the old one again. (Gemini CLI 0.61.0 refuses to load the sessions its ACP
/// mode saved, "No previous sessions found for this project", even on the same machine: see the README.)
mod resume {
    use super::*;

    const CODE_WORD: &str = "HERON-5150";

    async fn remembers(provider: &str, start: impl Fn(&str) -> TestWorker, body: Value, turns: impl Fn() -> String) {
        let store = tempfile::tempdir().unwrap();
        let store_dir = store.path().to_str().unwrap();
        let a = start(store_dir);
        let mut first = body.clone();
        first["userRequest"] = json!(format!("Remember the code word {CODE_WORD}."));
        first["approvals"] = json!({"mode": "client"});
        let events = a.execute(&first).await.collect().await;
        let done = &events.last().unwrap().data;
        assert_eq!(done["type"], "completed", "{provider}: {done}");
        let session = done["sessionId"].as_str().expect("a session id").to_string();
        drop(a);

        let b = start(store_dir);
        let mut second = body;
        second["userRequest"] = json!("Which code word did I give you?");
        second["approvals"] = json!({"mode": "client"});
        second["resumeSessionId"] = json!(session);
        let events = b.execute(&second).await.collect().await;
        assert_well_formed(&events, 0);
        let done = &events.last().unwrap().data;
        assert_eq!(done["type"], "completed", "{provider}: {:?} {done}", kinds(&events));
        assert_eq!(done["sessionId"], session.as_str());
        assert!(
            turns().contains(CODE_WORD),
            "{provider}: the agent forgot the first turn"
        );
        let said: Vec<&Value> = events
            .iter()
            .filter(|e| e.kind() == "assistant_message")
            .map(|e| &e.data["text"])
            .collect();
        assert_eq!(said.len(), 1, "{provider}: the old turn was streamed again: {said:?}");
    }

    #[tokio::test]
    async fn copilot_resumes_over_acp() {
        use crate::support::mock_anthropic::{MockAnthropic, Reply};
        let mock = MockAnthropic::start(Reply::Text("Noted.".into()));
        remembers(
            "copilot",
            |store| crate::copilot::copilot_worker(&mock, &[("SESSION_STORE_DIR", store)]),
            json!({"codingAssistantProvider": "copilot"}),
            || serde_json::to_string(&mock.requests().last().cloned()).unwrap(),
        )
        .await;
    }

    #[tokio::test]
    async fn claude_code_resumes_over_acp() {
        use crate::support::mock_anthropic::{MockAnthropic, Reply};
        let mock = MockAnthropic::start(Reply::Text("Noted.".into()));
        let adapter = crate::support::claude_acp_bin();
        remembers(
            "claude-code",
            |store| {
                crate::claude_code::claude_worker(
                    &mock,
                    &[("SESSION_STORE_DIR", store), ("CLAUDE_ACP_BIN", adapter.as_str())],
                )
            },
            json!({"codingAssistantProvider": "claude-code"}),
            || serde_json::to_string(&mock.requests().last().cloned()).unwrap(),
        )
        .await;
    }
}
