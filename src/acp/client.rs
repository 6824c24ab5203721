//! The Agent Client Protocol client (docs/approvals.md) as a pure state machine: it is fed the agent's stdout lines and
//! the job's decisions, and answers with the lines to write to the agent, the events to emit, the questions to
//! put to a client and the run's outcome. The process I/O is the runner's (`process::conversation`).

use std::collections::{HashMap, HashSet};

use agent_client_protocol::{
    schema::ProtocolVersion,
    v1::schema::{
        CancelNotification, ClientCapabilities, ContentBlock, FileSystemCapabilities, Implementation,
        InitializeRequest, LoadSessionRequest, McpServer, NewSessionRequest, PromptRequest, RequestPermissionOutcome,
        RequestPermissionResponse, SelectedPermissionOutcome,
    },
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    approvals::{OnTimeout, Policy},
    event::{Diff, ErrorCode, EventKind, Failure, PermissionOption, PermissionRequest, PlanEntry, ResolvedBy, Usage},
    process::{ExitInfo, Outcome, RunSummary},
};

/// JSON-RPC "method not found": the answer to a request for a capability the worker does not offer.
const METHOD_NOT_FOUND: i64 = -32601;

/// What one run over ACP starts from.
#[derive(Clone, Debug)]
pub struct AcpSetup {
    pub prompt: String,
    /// The workspace, absolute: ACP sessions are opened in a directory.
    pub cwd: String,
    pub resume_session_id: Option<String>,
    /// The job's MCP servers in ACP's form (`session/new`'s `mcpServers`).
    pub mcp_servers: Vec<Value>,
    pub policy: Policy,
}

/// One thing the runner must do, in order.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// A JSON-RPC message for the agent's stdin (without the newline).
    Send(String),
    Emit(EventKind),
    /// A question for a client; the `permission_request` event follows as the next step. Registered first, so
    /// that an answer to the event always finds its question.
    Ask {
        request_id: String,
        options: Vec<String>,
    },
    /// The turn is over; the agent can go.
    Finished(Outcome),
}

/// The client's requests, by what their answer starts next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Initialize,
    NewSession,
    LoadSession,
    Prompt,
}

impl Call {
    fn method(self) -> &'static str {
        match self {
            Call::Initialize => "initialize",
            Call::NewSession => "session/new",
            Call::LoadSession => "session/load",
            Call::Prompt => "session/prompt",
        }
    }
}

struct Question {
    /// The agent's JSON-RPC id of its `session/request_permission` (a number, possibly 0, or a string).
    rpc_id: Value,
    options: Vec<PermissionOption>,
}

pub struct AcpClient {
    setup: AcpSetup,
    next_id: u64,
    calls: HashMap<u64, Call>,
    session_id: Option<String>,
    /// While `session/load` runs, the agent replays the old conversation; it was streamed when it happened.
    loading: bool,
    message: String,
    thought: String,
    last_message: Option<String>,
    tools_seen: HashSet<String>,
    tools_done: HashSet<String>,
    questions: HashMap<String, Question>,
    asked: u64,
    cost_usd: Option<f64>,
    /// The last message chunk when it reported an error: one agent reports a failed model call only as text.
    error_chunk: Option<String>,
    /// A client chose a reject option in this turn: an agent may then end the turn as `cancelled`.
    rejected: bool,
    finished: bool,
}

impl AcpClient {
    /// Questions of earlier turns of the job keep their ids: this turn's are numbered after them.
    pub fn number_questions_after(&mut self, asked: u64) {
        self.asked = asked;
    }

    /// The client and its first message, `initialize`.
    pub fn start(setup: AcpSetup) -> (AcpClient, Vec<Step>) {
        let mut client = AcpClient {
            setup,
            next_id: 0,
            calls: HashMap::new(),
            session_id: None,
            loading: false,
            message: String::new(),
            thought: String::new(),
            last_message: None,
            tools_seen: HashSet::new(),
            tools_done: HashSet::new(),
            questions: HashMap::new(),
            asked: 0,
            cost_usd: None,
            error_chunk: None,
            rejected: false,
            finished: false,
        };
        // No file system or terminal offered: the agent works in the workspace itself (one agent breaks writes
        // of new files when reading is offered), and the replica is the sandbox.
        let init = client.call(
            Call::Initialize,
            params(
                InitializeRequest::new(ProtocolVersion::V1)
                    .client_capabilities(
                        ClientCapabilities::new()
                            .fs(FileSystemCapabilities::new()
                                .read_text_file(false)
                                .write_text_file(false))
                            .terminal(false),
                    )
                    .client_info(Implementation::new("unified-worker", env!("CARGO_PKG_VERSION"))),
            ),
        );
        (client, vec![init])
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The questions still waiting for an answer.
    pub fn open_questions(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.questions.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn call(&mut self, call: Call, params: Value) -> Step {
        let id = self.next_id;
        self.next_id += 1;
        self.calls.insert(id, call);
        Step::Send(json!({"jsonrpc": "2.0", "id": id, "method": call.method(), "params": params}).to_string())
    }

    pub fn push_line(&mut self, line: &str) -> Vec<Step> {
        let mut out = Vec::new();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return out;
        }
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(trimmed) else {
            out.push(Step::Emit(EventKind::unparsed_stdout(line)));
            return out;
        };
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").filter(|id| !id.is_null());
        let params = message.get("params").unwrap_or(&Value::Null);
        match (method, id) {
            (Some(method), Some(id)) => self.agent_request(method, id.clone(), params, &mut out),
            (Some("session/update"), None) => self.update(&params["update"], &mut out),
            // Other notifications (extensions) carry nothing for the stream.
            (Some(_), None) => {}
            (None, Some(id)) => self.response(id, &message, &mut out),
            (None, None) => out.push(Step::Emit(EventKind::unparsed_stdout(line))),
        }
        out
    }

    fn response(&mut self, id: &Value, message: &serde_json::Map<String, Value>, out: &mut Vec<Step>) {
        let Some(call) = id.as_u64().and_then(|id| self.calls.remove(&id)) else {
            return;
        };
        if let Some(error) = message.get("error") {
            self.flush(out);
            let text = error_text(error);
            let code = match error["code"].as_i64() {
                // Some agents pass the model API's HTTP status as the JSON-RPC code.
                Some(401 | 403) => ErrorCode::AuthFailed,
                Some(429) => ErrorCode::RateLimited,
                _ => classify(&text),
            };
            let mut failure = Failure::new(code, format!("the agent refused {}: {text}", call.method()));
            failure.session_id = self.session_id.clone();
            self.finish_with(Outcome::Failed(failure), out);
            return;
        }
        let result = message.get("result").unwrap_or(&Value::Null);
        match call {
            Call::Initialize => self.open_session(result, out),
            Call::NewSession => match result["sessionId"].as_str() {
                Some(session_id) => {
                    self.session_started(session_id.to_string(), out);
                }
                None => self.finish_with(
                    Outcome::Failed(Failure::new(
                        ErrorCode::ProviderFailed,
                        "the agent opened a session without an id",
                    )),
                    out,
                ),
            },
            Call::LoadSession => {
                self.loading = false;
                let id = self.setup.resume_session_id.clone().unwrap_or_default();
                self.session_started(id, out);
            }
            Call::Prompt => {
                self.flush(out);
                let outcome = self.turn_ended(result, out);
                self.finish_with(outcome, out);
            }
        }
    }

    fn open_session(&mut self, init: &Value, out: &mut Vec<Step>) {
        let cwd = self.setup.cwd.clone();
        let mcp_servers = match serde_json::from_value::<Vec<McpServer>>(Value::Array(self.setup.mcp_servers.clone())) {
            Ok(servers) => servers,
            Err(e) => {
                let failure = Failure::new(ErrorCode::Internal, format!("an MCP server ACP cannot carry: {e}"));
                self.finish_with(Outcome::Failed(failure), out);
                return;
            }
        };
        match self.setup.resume_session_id.clone() {
            Some(session_id) => {
                if init["agentCapabilities"]["loadSession"] != Value::Bool(true) {
                    let failure = Failure::new(
                        ErrorCode::ProviderFailed,
                        "this agent cannot load sessions over ACP, so resumeSessionId cannot be honoured",
                    );
                    self.finish_with(Outcome::Failed(failure), out);
                    return;
                }
                self.loading = true;
                let step = self.call(
                    Call::LoadSession,
                    params(LoadSessionRequest::new(session_id, cwd).mcp_servers(mcp_servers)),
                );
                out.push(step);
            }
            None => {
                let step = self.call(
                    Call::NewSession,
                    params(NewSessionRequest::new(cwd).mcp_servers(mcp_servers)),
                );
                out.push(step);
            }
        }
    }

    fn session_started(&mut self, session_id: String, out: &mut Vec<Step>) {
        out.push(Step::Emit(EventKind::Session {
            session_id: session_id.clone(),
        }));
        let prompt = params(PromptRequest::new(
            session_id.clone(),
            vec![ContentBlock::from(self.setup.prompt.clone())],
        ));
        self.session_id = Some(session_id);
        let step = self.call(Call::Prompt, prompt);
        out.push(step);
    }

    fn turn_ended(&mut self, result: &Value, out: &mut Vec<Step>) -> Outcome {
        let stop = result["stopReason"].as_str().unwrap_or("end_turn");
        let summary = RunSummary {
            session_id: self.session_id.clone(),
            result: self.last_message.clone(),
            duration_ms: 0,
            num_turns: 1,
            cost_usd: self.cost_usd,
            usage: usage(result),
        };
        match stop {
            // A turn that ends on an error report, with no usage to show for it, is the model call failing.
            "end_turn" if self.error_chunk.is_some() && result.get("usage").is_none_or(Value::is_null) => {
                let text = self.error_chunk.take().unwrap_or_default();
                let mut failure = Failure::new(classify(&text), text.trim().to_string());
                failure.session_id = self.session_id.clone();
                Outcome::Failed(failure)
            }
            "end_turn" => Outcome::Completed(summary),
            // One agent ends its turn this way when a tool call is rejected: what the client asked for.
            "cancelled" if self.rejected => {
                out.push(Step::Emit(EventKind::info(
                    "the agent ended its turn after its tool call was rejected",
                )));
                Outcome::Completed(summary)
            }
            "max_tokens" | "max_turn_requests" => {
                out.push(Step::Emit(EventKind::warn(format!(
                    "the agent ended its turn early ({stop})"
                ))));
                Outcome::Completed(summary)
            }
            other => {
                let message = match other {
                    "refusal" => "the agent refused to go on".to_string(),
                    "cancelled" => "the agent cancelled its turn".to_string(),
                    other => format!("the agent ended its turn with {other:?}"),
                };
                let mut failure = Failure::new(ErrorCode::ProviderFailed, message);
                failure.session_id = self.session_id.clone();
                Outcome::Failed(failure)
            }
        }
    }

    fn finish_with(&mut self, outcome: Outcome, out: &mut Vec<Step>) {
        if !self.finished {
            self.finished = true;
            // A turn can end with a question still open (an agent that gave up on it): nobody waits for it now.
            for request_id in self.open_questions() {
                out.extend(self.withdraw(&request_id, ResolvedBy::Cancel));
            }
            self.close_tools("the turn ended before the tool call finished", out);
            out.push(Step::Finished(outcome));
        }
    }

    /// Agents leave a tool call open when its turn is cancelled or its permission refused; the stream closes
    /// every `tool_use` with a `tool_result`.
    fn close_tools(&mut self, why: &str, out: &mut Vec<Step>) {
        let mut open: Vec<String> = self.tools_seen.difference(&self.tools_done).cloned().collect();
        open.sort();
        for id in open {
            self.tools_done.insert(id.clone());
            out.push(Step::Emit(EventKind::ToolResult {
                tool_use_id: id,
                output: why.to_string(),
                is_error: true,
            }));
        }
    }

    fn agent_request(&mut self, method: &str, id: Value, params: &Value, out: &mut Vec<Step>) {
        if method != "session/request_permission" {
            out.push(Step::Send(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": METHOD_NOT_FOUND, "message": format!("{method} is not offered by this client")}})
                    .to_string(),
            ));
            return;
        }
        self.flush(out);
        let tool = &params["toolCall"];
        let tool_call_id = tool["toolCallId"].as_str().map(String::from);
        // Some agents ask before they announce the tool call: the question is the first the stream hears of it.
        if let Some(id) = &tool_call_id {
            self.tool_use(id, tool, out);
        }
        let options: Vec<PermissionOption> = params["options"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|o| {
                Some(PermissionOption {
                    option_id: o["optionId"].as_str()?.to_string(),
                    name: o["name"].as_str().unwrap_or_default().to_string(),
                    kind: o["kind"].as_str().unwrap_or_default().to_string(),
                })
            })
            .collect();
        match self.setup.policy {
            Policy::AllowAll => {
                let choice = pick(&options, &["allow_once", "allow_always"]).or_else(|| options.first());
                let reply = match choice {
                    Some(option) => selected(&id, &option.option_id),
                    None => withdrawn(&id),
                };
                out.push(Step::Send(reply));
            }
            Policy::Client { timeout, on_timeout } => {
                self.asked += 1;
                let request_id = format!("perm-{}", self.asked);
                out.push(Step::Ask {
                    request_id: request_id.clone(),
                    options: options.iter().map(|o| o.option_id.clone()).collect(),
                });
                out.push(Step::Emit(EventKind::PermissionRequest(Box::new(PermissionRequest {
                    request_id: request_id.clone(),
                    tool_call_id,
                    title: tool["title"].as_str().unwrap_or("permission").to_string(),
                    kind: tool["kind"].as_str().map(String::from),
                    input: tool.get("rawInput").filter(|v| !v.is_null()).cloned(),
                    diff: diff(&tool["content"]),
                    options: options.clone(),
                    timeout_seconds: timeout.as_secs(),
                    on_timeout,
                }))));
                self.questions.insert(request_id, Question { rpc_id: id, options });
            }
        }
    }

    /// A client's answer, already checked against the options by `Approvals`.
    pub fn answer(&mut self, request_id: &str, option_id: &str, by: ResolvedBy) -> Vec<Step> {
        let Some(question) = self.questions.remove(request_id) else {
            return Vec::new();
        };
        if question
            .options
            .iter()
            .any(|o| o.option_id == option_id && o.kind.starts_with("reject"))
        {
            self.rejected = true;
        }
        vec![
            Step::Send(selected(&question.rpc_id, option_id)),
            Step::Emit(EventKind::PermissionResolved {
                request_id: request_id.to_string(),
                option_id: Some(option_id.to_string()),
                by,
            }),
        ]
    }

    /// No answer in time: `onTimeout` picks the option.
    pub fn expire(&mut self, request_id: &str, on_timeout: OnTimeout) -> Vec<Step> {
        let Some(question) = self.questions.get(request_id) else {
            return Vec::new();
        };
        let kinds: &[&str] = match on_timeout {
            OnTimeout::Allow => &["allow_once", "allow_always"],
            OnTimeout::Reject => &["reject_once", "reject_always"],
        };
        match pick(&question.options, kinds).map(|o| o.option_id.clone()) {
            Some(option_id) => self.answer(request_id, &option_id, ResolvedBy::Timeout),
            // An agent that offers no such option gets the question withdrawn, which ACP reads as a rejection.
            None => self.withdraw(request_id, ResolvedBy::Timeout),
        }
    }

    fn withdraw(&mut self, request_id: &str, by: ResolvedBy) -> Vec<Step> {
        let Some(question) = self.questions.remove(request_id) else {
            return Vec::new();
        };
        vec![
            Step::Send(withdrawn(&question.rpc_id)),
            Step::Emit(EventKind::PermissionResolved {
                request_id: request_id.to_string(),
                option_id: None,
                by,
            }),
        ]
    }

    /// The job is stopped: open questions are withdrawn (ACP asks for that after a cancel) and the turn is
    /// cancelled. The runner then gives the agent a moment and stops its process group.
    pub fn cancel(&mut self) -> Vec<Step> {
        let mut out = Vec::new();
        self.flush(&mut out);
        if let Some(session_id) = &self.session_id {
            let cancel = params(CancelNotification::new(session_id.clone()));
            out.push(Step::Send(
                json!({"jsonrpc": "2.0", "method": "session/cancel", "params": cancel}).to_string(),
            ));
        }
        for request_id in self.open_questions() {
            out.extend(self.withdraw(&request_id, ResolvedBy::Cancel));
        }
        self.close_tools("the job was stopped before the tool call finished", &mut out);
        out
    }

    /// The agent's process ended before the turn did.
    pub fn finish(&mut self, exit: &ExitInfo) -> (Vec<Step>, Outcome) {
        let mut out = Vec::new();
        self.flush(&mut out);
        self.close_tools("the agent exited before the tool call finished", &mut out);
        let mut failure = Failure::new(
            classify(&exit.stderr_tail),
            format!("the agent exited before its turn ended ({})", exit.describe()),
        );
        failure.session_id = self.session_id.clone();
        (out, Outcome::Failed(exit.annotate(failure)))
    }

    fn update(&mut self, update: &Value, out: &mut Vec<Step>) {
        if self.loading {
            return;
        }
        match update["sessionUpdate"].as_str().unwrap_or_default() {
            "agent_message_chunk" => {
                self.flush_thought(out);
                let text = content_text(&update["content"]);
                if text.starts_with("Error: ") {
                    self.error_chunk = Some(text.to_string());
                } else if !text.trim().is_empty() && !text.starts_with("Info: ") {
                    self.error_chunk = None;
                }
                self.message.push_str(text);
            }
            "agent_thought_chunk" => {
                self.flush_message(out);
                self.thought.push_str(content_text(&update["content"]));
            }
            "tool_call" => {
                self.flush(out);
                if let Some(id) = update["toolCallId"].as_str() {
                    self.tool_use(id, update, out);
                    self.tool_result(id, update, out);
                }
            }
            "tool_call_update" => {
                self.flush(out);
                if let Some(id) = update["toolCallId"].as_str() {
                    if update["title"].is_string() {
                        self.tool_use(id, update, out);
                    }
                    self.tool_result(id, update, out);
                }
            }
            "plan" => {
                self.flush(out);
                let entries = update["entries"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|e| PlanEntry {
                        content: e["content"].as_str().unwrap_or_default().to_string(),
                        status: e["status"].as_str().unwrap_or("pending").to_string(),
                        priority: e["priority"].as_str().unwrap_or("medium").to_string(),
                    })
                    .collect();
                out.push(Step::Emit(EventKind::Plan { entries }));
            }
            "usage_update" => {
                if let Some(amount) = update["cost"]["amount"].as_f64()
                    && update["cost"]["currency"]
                        .as_str()
                        .is_none_or(|c| c.eq_ignore_ascii_case("usd"))
                {
                    self.cost_usd = Some(amount);
                }
            }
            // The prompt echoed, available commands, modes, titles: nothing for the stream.
            _ => {}
        }
    }

    fn tool_use(&mut self, id: &str, tool: &Value, out: &mut Vec<Step>) {
        if !self.tools_seen.insert(id.to_string()) {
            return;
        }
        let name = tool["title"]
            .as_str()
            .or_else(|| tool["kind"].as_str())
            .unwrap_or("tool")
            .to_string();
        let input = match tool.get("rawInput") {
            Some(input) if !input.is_null() => input.clone(),
            _ => diff(&tool["content"])
                .and_then(|d| serde_json::to_value(d).ok())
                .unwrap_or_else(|| json!({})),
        };
        out.push(Step::Emit(EventKind::ToolUse {
            id: id.to_string(),
            name,
            input,
        }));
    }

    fn tool_result(&mut self, id: &str, tool: &Value, out: &mut Vec<Step>) {
        let status = tool["status"].as_str().unwrap_or_default();
        if !matches!(status, "completed" | "failed") || !self.tools_done.insert(id.to_string()) {
            return;
        }
        let mut output: Vec<String> = tool["content"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| match item["type"].as_str() {
                Some("content") => Some(content_text(&item["content"]).to_string()),
                Some("diff") => Some(format!("edited {}", item["path"].as_str().unwrap_or_default())),
                _ => None,
            })
            .filter(|text| !text.is_empty())
            .collect();
        if output.is_empty() {
            match &tool["rawOutput"] {
                Value::Null => {}
                Value::String(text) => output.push(text.clone()),
                other => output.push(other.to_string()),
            }
        }
        out.push(Step::Emit(EventKind::ToolResult {
            tool_use_id: id.to_string(),
            output: output.join("\n"),
            is_error: status == "failed",
        }));
    }

    fn flush(&mut self, out: &mut Vec<Step>) {
        self.flush_thought(out);
        self.flush_message(out);
    }

    fn flush_message(&mut self, out: &mut Vec<Step>) {
        if !self.message.is_empty() {
            let text = std::mem::take(&mut self.message);
            self.last_message = Some(text.clone());
            out.push(Step::Emit(EventKind::AssistantMessage { text }));
        }
    }

    fn flush_thought(&mut self, out: &mut Vec<Step>) {
        if !self.thought.is_empty() {
            let text = std::mem::take(&mut self.thought);
            out.push(Step::Emit(EventKind::Thinking { text }));
        }
    }
}

/// A message's params as the protocol crate's type spells them.
fn params(message: impl Serialize) -> Value {
    serde_json::to_value(message).unwrap_or(Value::Null)
}

fn selected(id: &Value, option_id: &str) -> String {
    let outcome = RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(option_id.to_string()));
    json!({"jsonrpc": "2.0", "id": id, "result": params(RequestPermissionResponse::new(outcome))}).to_string()
}

fn withdrawn(id: &Value) -> String {
    let outcome = RequestPermissionOutcome::Cancelled;
    json!({"jsonrpc": "2.0", "id": id, "result": params(RequestPermissionResponse::new(outcome))}).to_string()
}

fn pick<'a>(options: &'a [PermissionOption], kinds: &[&str]) -> Option<&'a PermissionOption> {
    kinds.iter().find_map(|kind| options.iter().find(|o| o.kind == *kind))
}

fn content_text(content: &Value) -> &str {
    match content["type"].as_str() {
        Some("text") | None => content["text"].as_str().unwrap_or_default(),
        _ => "",
    }
}

fn diff(content: &Value) -> Option<Diff> {
    let item = content.as_array()?.iter().find(|item| item["type"] == "diff")?;
    Some(Diff {
        path: item["path"].as_str()?.to_string(),
        old_text: item["oldText"].as_str().map(String::from),
        new_text: item["newText"].as_str().unwrap_or_default().to_string(),
    })
}

/// Token counts from the prompt's reply: ACP's `usage`, or an agent's own `_meta` (Gemini's
/// `quota.token_count`; camel or snake case).
fn usage(result: &Value) -> Usage {
    let sources = [
        &result["usage"],
        &result["_meta"]["usage"],
        &result["_meta"]["quota"]["token_count"],
        &result["_meta"],
    ];
    let read = |names: &[&str]| {
        sources
            .iter()
            .find_map(|source| names.iter().find_map(|name| source[*name].as_u64()))
            .unwrap_or(0)
    };
    Usage {
        input_tokens: read(&["inputTokens", "input_tokens", "promptTokenCount", "promptTokens"]),
        output_tokens: read(&[
            "outputTokens",
            "output_tokens",
            "candidatesTokenCount",
            "completionTokens",
        ]),
        cache_read_tokens: read(&["cachedReadTokens", "cache_read_tokens", "cachedContentTokenCount"]),
        cache_creation_tokens: read(&["cachedWriteTokens", "cache_creation_tokens"]),
        ..Usage::default()
    }
}

fn error_text(error: &Value) -> String {
    let message = error["message"].as_str().unwrap_or("unknown error");
    match &error["data"] {
        Value::Null => message.to_string(),
        Value::String(data) => format!("{message}: {data}"),
        data => format!("{message}: {data}"),
    }
}

/// What an agent's error text says about the model API behind it.
fn classify(text: &str) -> ErrorCode {
    let lower = text.to_ascii_lowercase();
    let auth = [
        "401",
        "unauthorized",
        "authentication",
        "invalid api key",
        "invalid x-api-key",
        "api key not valid",
        "auth_required",
    ];
    let rate = [
        "429",
        "rate limit",
        "rate_limit",
        "too many requests",
        "quota",
        "overloaded",
        "resource_exhausted",
    ];
    if auth.iter().any(|w| lower.contains(w)) {
        ErrorCode::AuthFailed
    } else if rate.iter().any(|w| lower.contains(w)) {
        ErrorCode::RateLimited
    } else {
        ErrorCode::ProviderFailed
    }
}

#[cfg(test)]
mod tests;
