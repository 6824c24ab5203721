//! opencode's JSON lines (`run --format json`) → normalized events. Pure: one line in, events out.
//!
//! Every line is `{"type", "timestamp", "sessionID", "part" | "error"}`: `step_start`; `text` and `reasoning`
//! (`part.text`, whole, not deltas); `tool_use`, one line per finished call (`part.tool`, `part.callID`,
//! `part.state` with `status`, `input` and `output` or `error`); `step_finish` (`part.reason`, `part.tokens`,
//! `part.cost`) after each model call; `error` (`error.name`, `error.data.message`, `statusCode`, `isRetryable`).
//! There is no final result line: a run succeeded when the process exits 0 without an `error` line. Lines
//! recorded from the real CLI are in `tests/fixtures/opencode/`.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use crate::{
    event::{ErrorCode, EventKind, Failure, Usage},
    process::{ExitInfo, Outcome, OutputParser, RunSummary},
};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Text { part: TextPart },
    Reasoning { part: TextPart },
    // Boxed: with serde_json's `preserve_order` (which the ACP crate turns on) its maps make it the one large variant.
    ToolUse { part: Box<ToolPart> },
    StepFinish { part: StepFinish },
    Error { error: ErrorBody },
    /// `step_start` and whatever a later version adds: never fatal.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct TextPart {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct ToolPart {
    tool: String,
    #[serde(rename = "callID")]
    call_id: String,
    state: ToolState,
}

#[derive(Deserialize)]
struct ToolState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
}

#[derive(Deserialize)]
struct StepFinish {
    #[serde(default)]
    tokens: Tokens,
    #[serde(default)]
    cost: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Tokens {
    input: u64,
    output: u64,
    reasoning: u64,
    cache: CacheTokens,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CacheTokens {
    read: u64,
    write: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    data: ErrorData,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ErrorData {
    message: Option<String>,
    status_code: Option<u16>,
}

#[derive(Default)]
pub struct OpencodeParser {
    session_id: Option<String>,
    /// Tool calls already reported, so that a call shown twice (a later version streaming its states) is one.
    tool_calls: HashSet<String>,
    last_text: Option<String>,
    steps: u64,
    usage: Usage,
    cost_usd: Option<f64>,
    error: Option<Failure>,
}

impl OpencodeParser {
    pub fn new() -> Self {
        Self::default()
    }

    fn tool_use(&mut self, part: ToolPart, out: &mut Vec<EventKind>) {
        let ToolPart { tool, call_id, state } = part;
        if self.tool_calls.insert(call_id.clone()) {
            out.push(EventKind::ToolUse {
                id: call_id.clone(),
                name: tool,
                input: state.input,
            });
        }
        let (output, is_error) = match state.status.as_str() {
            "completed" => (state.output, false),
            "error" => (state.error, true),
            // Still running: its result comes on a later line.
            _ => return,
        };
        out.push(EventKind::ToolResult {
            tool_use_id: call_id,
            output: text_of(output),
            is_error,
        });
    }

    fn step_finished(&mut self, step: StepFinish) {
        self.steps += 1;
        let tokens = step.tokens;
        self.usage.input_tokens += tokens.input;
        // Reasoning tokens are billed as output; opencode counts them apart.
        self.usage.output_tokens += tokens.output + tokens.reasoning;
        self.usage.cache_read_tokens += tokens.cache.read;
        self.usage.cache_creation_tokens += tokens.cache.write;
        if let Some(cost) = step.cost {
            *self.cost_usd.get_or_insert(0.0) += cost;
        }
    }
}

fn text_of(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl OutputParser for OpencodeParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut out = Vec::new();
        if line.trim().is_empty() {
            return out;
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            out.push(EventKind::unparsed_stdout(line));
            return out;
        };
        if self.session_id.is_none()
            && let Some(id) = value["sessionID"].as_str().filter(|id| !id.is_empty())
        {
            self.session_id = Some(id.to_string());
            out.push(EventKind::Session {
                session_id: id.to_string(),
            });
        }
        match serde_json::from_value::<Line>(value) {
            Ok(Line::Text { part }) => {
                if !part.text.trim().is_empty() {
                    self.last_text = Some(part.text.clone());
                    out.push(EventKind::AssistantMessage { text: part.text });
                }
            }
            Ok(Line::Reasoning { part }) => {
                if !part.text.trim().is_empty() {
                    out.push(EventKind::Thinking { text: part.text });
                }
            }
            Ok(Line::ToolUse { part }) => self.tool_use(*part, &mut out),
            Ok(Line::StepFinish { part }) => self.step_finished(part),
            Ok(Line::Error { error }) => {
                // The first error is the cause; anything after it is a consequence.
                self.error.get_or_insert_with(|| failure_of(error));
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
        let failure = match self.error.take() {
            Some(failure) => Some(failure),
            None if exit.code == Some(0) && self.session_id.is_some() => None,
            None if exit.code == Some(0) => Some(Failure::new(
                ErrorCode::ProviderFailed,
                "opencode exited without starting a session",
            )),
            // Its own errors before a session exists (an unknown `-s` id, a broken config) are text on stderr.
            None => {
                let stderr = strip_ansi(&exit.stderr_tail);
                Some(Failure::new(
                    classify_text(&stderr).unwrap_or(ErrorCode::ProviderFailed),
                    match error_line(&stderr) {
                        Some(line) => format!("opencode ended ({}): {line}", exit.describe()),
                        None => format!("opencode ended ({}) without finishing the run", exit.describe()),
                    },
                ))
            }
        };
        match failure {
            None => Outcome::Completed(RunSummary {
                session_id: self.session_id.clone(),
                result: self.last_text.take(),
                // opencode reports no duration of its own.
                duration_ms: u64::try_from(exit.elapsed.as_millis()).unwrap_or(u64::MAX),
                num_turns: self.steps,
                cost_usd: self.cost_usd,
                usage: self.usage,
            }),
            Some(mut failure) => {
                failure.session_id = self.session_id.clone();
                if !exit.stderr_tail.is_empty() {
                    failure.stderr_tail = Some(strip_ansi(&exit.stderr_tail));
                }
                Outcome::Failed(exit.annotate(failure))
            }
        }
    }
}

/// An `error` line as a terminal failure: the HTTP status decides where there is one (the API's 401 and 429
/// arrive as `APIError` with `statusCode`), the name or the message otherwise.
fn failure_of(error: ErrorBody) -> Failure {
    let message = error.data.message.filter(|m| !m.trim().is_empty());
    let code = match error.data.status_code {
        Some(401 | 403) => ErrorCode::AuthFailed,
        Some(429) => ErrorCode::RateLimited,
        _ if error.name == "ProviderAuthError" => ErrorCode::AuthFailed,
        _ => message
            .as_deref()
            .and_then(classify_text)
            .unwrap_or(ErrorCode::ProviderFailed),
    };
    let name = if error.name.is_empty() { "error" } else { error.name.as_str() };
    let message = match (message, error.data.status_code) {
        (Some(message), Some(status)) => format!("opencode: {name} (HTTP {status}): {message}"),
        (Some(message), None) => format!("opencode: {name}: {message}"),
        (None, Some(status)) => format!("opencode: {name} (HTTP {status})"),
        (None, None) => format!("opencode: {name}"),
    };
    Failure::new(code, message)
}

fn classify_text(text: &str) -> Option<ErrorCode> {
    let lower = text.to_ascii_lowercase();
    let auth = ["unauthorized", "invalid api key", "invalid x-api-key", "authentication"];
    let rate = ["rate limit", "too many requests", "quota"];
    if auth.iter().any(|w| lower.contains(w)) {
        Some(ErrorCode::AuthFailed)
    } else if rate.iter().any(|w| lower.contains(w)) {
        Some(ErrorCode::RateLimited)
    } else {
        None
    }
}

/// The line of stderr that names the problem (`Error: Session not found`), else its first line.
fn error_line(stderr: &str) -> Option<&str> {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.to_ascii_lowercase().starts_with("error"))
        .or_else(|| lines().next())
}

/// opencode colours its stderr even when it is not a terminal; the colour codes are noise in an event.
pub(super) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: ESC [ parameters… final byte in @–~.
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
