//! Copilot's JSONL output (`--output-format json`) → normalized events. Pure: one line in, events out.
//!
//! Every line is `{"type": "<area>.<event>", "data": {…}, "id", "timestamp", "ephemeral"?}` except the final
//! `{"type": "result", "sessionId", "exitCode", "usage"}`, whose fields sit at the top level. Lines recorded from
//! the real CLI are in `tests/fixtures/copilot/`.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use crate::{
    event::{ErrorCode, EventKind, Failure, Usage},
    process::{ExitInfo, Outcome, OutputParser, RunSummary},
};

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Line {
    #[serde(rename = "assistant.message")]
    Message { data: MessageData },
    #[serde(rename = "assistant.reasoning")]
    Reasoning { data: ReasoningData },
    #[serde(rename = "tool.execution_start")]
    ToolStart { data: ToolStartData },
    #[serde(rename = "tool.execution_complete")]
    ToolComplete { data: ToolCompleteData },
    #[serde(rename = "session.error")]
    SessionError { data: SessionErrorData },
    /// The run was stopped (SIGTERM, a cancel); the CLI still prints a result with exit code 0 after it.
    #[serde(rename = "abort")]
    Abort {
        #[serde(default)]
        data: Value,
    },
    #[serde(rename = "result")]
    Result(ResultLine),
    /// Deltas (`assistant.message_delta`, repeated by the full message), turn bookkeeping, model-call telemetry
    /// and whatever a later version adds: never fatal.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageData {
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_requests: Vec<ToolRequest>,
    /// The thinking that preceded this message; the matching `assistant.reasoning` line comes only after it.
    #[serde(default)]
    reasoning_text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolRequest {
    tool_call_id: String,
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct ReasoningData {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStartData {
    tool_call_id: String,
    tool_name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolCompleteData {
    tool_call_id: String,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionErrorData {
    #[serde(default)]
    error_type: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResultLine {
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    usage: Option<ResultUsage>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResultUsage {
    #[serde(default)]
    session_duration_ms: Option<u64>,
}

pub struct CopilotParser {
    /// Known before the CLI starts (`--session-id` / `--resume`); announced with the first line.
    session_id: Option<String>,
    announced: bool,
    /// Tool calls already reported from the message that requested them, so their execution start does not
    /// report them twice.
    tool_calls: HashSet<String>,
    /// Reasoning already reported, so that it is reported once whichever of its two lines comes first.
    reasoning: HashSet<String>,
    last_text: Option<String>,
    error: Option<SessionErrorData>,
    result: Option<ResultLine>,
    turns: u64,
}

impl CopilotParser {
    pub fn new(session_id: Option<String>) -> Self {
        CopilotParser {
            session_id: session_id.filter(|id| !id.is_empty()),
            announced: false,
            tool_calls: HashSet::new(),
            reasoning: HashSet::new(),
            last_text: None,
            error: None,
            result: None,
            turns: 0,
        }
    }

    fn thinking(&mut self, text: String, out: &mut Vec<EventKind>) {
        if !text.trim().is_empty() && self.reasoning.insert(text.clone()) {
            out.push(EventKind::Thinking { text });
        }
    }

    fn tool_use(&mut self, id: String, name: String, input: Value, out: &mut Vec<EventKind>) {
        if self.tool_calls.insert(id.clone()) {
            out.push(EventKind::ToolUse { id, name, input });
        }
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => ["content", "message", "detailedContent"]
            .iter()
            .find_map(|k| other.get(*k).and_then(Value::as_str))
            .map(String::from)
            .unwrap_or_else(|| other.to_string()),
    }
}

impl OutputParser for CopilotParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut out = Vec::new();
        if line.trim().is_empty() {
            return out;
        }
        if !self.announced
            && let Some(id) = &self.session_id
        {
            self.announced = true;
            out.push(EventKind::Session { session_id: id.clone() });
        }
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Message { data }) => {
                self.turns += 1;
                if let Some(reasoning) = data.reasoning_text {
                    self.thinking(reasoning, &mut out);
                }
                if !data.content.trim().is_empty() {
                    self.last_text = Some(data.content.clone());
                    out.push(EventKind::AssistantMessage { text: data.content });
                }
                for request in data.tool_requests {
                    self.tool_use(request.tool_call_id, request.name, request.arguments, &mut out);
                }
            }
            Ok(Line::Reasoning { data }) => self.thinking(data.content, &mut out),
            Ok(Line::ToolStart { data }) => self.tool_use(data.tool_call_id, data.tool_name, data.arguments, &mut out),
            Ok(Line::ToolComplete { data }) => {
                let output = match (&data.result, &data.error) {
                    (_, Some(error)) if !data.success => text_of(error),
                    (Some(result), _) => text_of(result),
                    (None, Some(error)) => text_of(error),
                    (None, None) => String::new(),
                };
                out.push(EventKind::ToolResult {
                    tool_use_id: data.tool_call_id,
                    output,
                    is_error: !data.success,
                });
            }
            Ok(Line::SessionError { data }) => self.error = Some(data),
            Ok(Line::Abort { data }) => {
                let reason = data.get("reason").and_then(Value::as_str).unwrap_or("unknown");
                self.error.get_or_insert(SessionErrorData {
                    error_type: "abort".into(),
                    message: format!("Copilot aborted the run ({reason})"),
                });
            }
            Ok(Line::Result(result)) => {
                if self.session_id.is_none()
                    && let Some(id) = result.session_id.clone().filter(|id| !id.is_empty())
                {
                    self.announced = true;
                    self.session_id = Some(id.clone());
                    out.push(EventKind::Session { session_id: id });
                }
                self.result = Some(result);
            }
            Ok(Line::Other) => {}
            Err(_) => out.push(EventKind::unparsed_stdout(line)),
        }
        out
    }

    fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    fn finish(&mut self, exit: &ExitInfo) -> Outcome {
        let result = self.result.take();
        let session_id = result
            .as_ref()
            .and_then(|r| r.session_id.clone())
            .or_else(|| self.session_id.clone());
        let exit_code = result.as_ref().and_then(|r| r.exit_code).or(exit.code);
        let failure = match (&self.error, &result) {
            (Some(error), _) => Some(Failure::new(
                match error.error_type.as_str() {
                    "authentication" => ErrorCode::AuthFailed,
                    "rate_limit" => ErrorCode::RateLimited,
                    _ => classify_text(&error.message).unwrap_or(ErrorCode::ProviderFailed),
                },
                if error.message.trim().is_empty() {
                    format!("Copilot reported a {} error", error.error_type)
                } else {
                    error.message.clone()
                },
            )),
            (None, Some(_)) if exit_code == Some(0) => None,
            (None, Some(_)) => Some(Failure::new(
                classify_text(&exit.stderr_tail).unwrap_or(ErrorCode::ProviderFailed),
                format!("Copilot ended with exit code {}", exit_code.unwrap_or(-1)),
            )),
            // Authentication failures are printed as plain text on stderr, with no JSON at all.
            // Its own usage errors (an unknown `--resume` id, …) too; the `Error:` line says what went wrong.
            (None, None) => Some(Failure::new(
                classify_text(&exit.stderr_tail).unwrap_or(ErrorCode::ProviderFailed),
                match error_line(&exit.stderr_tail) {
                    Some(first) => format!("Copilot ended ({}) without a result: {first}", exit.describe()),
                    None => format!("Copilot ended ({}) without a result", exit.describe()),
                },
            )),
        };
        match failure {
            None => Outcome::Completed(RunSummary {
                session_id,
                result: self.last_text.take(),
                duration_ms: result
                    .and_then(|r| r.usage)
                    .and_then(|u| u.session_duration_ms)
                    .unwrap_or_default(),
                num_turns: self.turns,
                // In JSON mode the CLI reports neither tokens nor cost (its result has premium requests only).
                cost_usd: None,
                usage: Usage::default(),
            }),
            Some(mut failure) => {
                failure.session_id = session_id;
                failure.exit_code = exit_code;
                Outcome::Failed(exit.annotate(failure))
            }
        }
    }
}

/// The line that names the problem; progress notes ("Package extraction took …") can come before it.
fn error_line(stderr: &str) -> Option<&str> {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.to_ascii_lowercase().starts_with("error"))
        .or_else(|| lines().next())
}

fn classify_text(text: &str) -> Option<ErrorCode> {
    let lower = text.to_ascii_lowercase();
    let auth = [
        "authentication",
        "not authenticated",
        "unauthorized",
        "no authentication information",
        "invalid token",
        "copilot login",
        "http 401",
    ];
    let rate = ["rate limit", "rate_limit", "too many requests", "http 429", "quota"];
    if auth.iter().any(|w| lower.contains(w)) {
        Some(ErrorCode::AuthFailed)
    } else if rate.iter().any(|w| lower.contains(w)) {
        Some(ErrorCode::RateLimited)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
