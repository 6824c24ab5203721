//! Codex's `exec --json` output → normalized events. Pure: one line in, events out.
//!
//! Lines (codex-cli 0.169.0; recorded ones are in `tests/fixtures/codex/`): `thread.started` (`thread_id`, the
//! session), `turn.started`, `item.started` / `item.updated` / `item.completed` with an `item` whose `type` is
//! `agent_message`, `reasoning`, `command_execution`, `file_change`, `mcp_tool_call`, `web_search`, `todo_list` or
//! `error` (a warning, not a failure), a top-level `error` (`"Reconnecting... 2/5 …"` while it retries, or the
//! reason just before `turn.failed`), then `turn.completed` (`usage`) or `turn.failed` (`error.message`). A resume
//! of an unknown thread prints nothing on stdout: the reason is an `Error:` line on stderr.

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
    #[serde(rename = "thread.started")]
    ThreadStarted { thread_id: String },
    #[serde(rename = "item.started")]
    ItemStarted { item: Item },
    #[serde(rename = "item.completed")]
    ItemCompleted { item: Item },
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        #[serde(default)]
        usage: TokenUsage,
    },
    #[serde(rename = "turn.failed")]
    TurnFailed { error: Message },
    #[serde(rename = "error")]
    Error(Message),
    /// `turn.started`, `item.updated` (a to-do list ticking along) and whatever a later version adds: never fatal.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct Message {
    #[serde(default)]
    message: String,
}

/// Flat rather than one struct per item type: every field is optional, so a new field or item type never makes a
/// line unreadable.
#[derive(Deserialize)]
struct Item {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    aggregated_output: String,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    changes: Vec<FileChange>,
    #[serde(default)]
    server: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    arguments: Value,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    query: String,
}

#[derive(Deserialize, serde::Serialize)]
struct FileChange {
    path: String,
    kind: String,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct TokenUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    cached_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Default)]
pub struct CodexParser {
    thread_id: Option<String>,
    /// Tool items already announced by their `item.started`, so their completion adds only the result.
    started: HashSet<String>,
    last_text: Option<String>,
    /// The reason of the latest top-level `error`, for a run that ends without saying why.
    last_error: Option<String>,
    failed: Option<String>,
    usage: Option<TokenUsage>,
    turns: u64,
}

impl CodexParser {
    fn item_started(&mut self, item: Item, out: &mut Vec<EventKind>) {
        if let Some(tool_use) = tool_use(&item) {
            self.started.insert(item.id);
            out.push(tool_use);
        }
    }

    fn item_completed(&mut self, item: Item, out: &mut Vec<EventKind>) {
        match item.kind.as_str() {
            "agent_message" if !item.text.trim().is_empty() => {
                self.last_text = Some(item.text.clone());
                out.push(EventKind::AssistantMessage { text: item.text });
            }
            "reasoning" if !item.text.trim().is_empty() => out.push(EventKind::Thinking { text: item.text }),
            "error" => out.push(EventKind::warn(format!("Codex: {}", item.message))),
            _ => {
                let Some(tool_use) = tool_use(&item) else {
                    return;
                };
                if !self.started.remove(&item.id) {
                    out.push(tool_use);
                }
                let (output, is_error) = tool_output(&item);
                out.push(EventKind::ToolResult {
                    tool_use_id: item.id,
                    output,
                    is_error,
                });
            }
        }
    }
}

/// The `tool_use` event of an item that is a tool call; None for every other item.
fn tool_use(item: &Item) -> Option<EventKind> {
    let (name, input) = match item.kind.as_str() {
        "command_execution" => (
            item.kind.clone(),
            serde_json::json!({ "command": item.command.clone().unwrap_or_default() }),
        ),
        "file_change" => (item.kind.clone(), serde_json::json!({ "changes": item.changes })),
        // Claude Code's naming of MCP tools, so clients see one convention.
        "mcp_tool_call" => (format!("mcp__{}__{}", item.server, item.tool), item.arguments.clone()),
        "web_search" => (item.kind.clone(), serde_json::json!({ "query": item.query })),
        _ => return None,
    };
    Some(EventKind::ToolUse {
        id: item.id.clone(),
        name,
        input,
    })
}

fn tool_output(item: &Item) -> (String, bool) {
    let failed = matches!(item.status.as_deref(), Some("failed" | "declined"));
    match item.kind.as_str() {
        "command_execution" => (item.aggregated_output.clone(), failed || item.exit_code.is_some_and(|c| c != 0)),
        "file_change" => {
            let lines: Vec<String> = item.changes.iter().map(|c| format!("{} {}", c.kind, c.path)).collect();
            (lines.join("\n"), failed)
        }
        "mcp_tool_call" if !item.error.is_null() => (text_of(&item.error), true),
        "mcp_tool_call" => (text_of(&item.result), failed),
        _ => (String::new(), failed),
    }
}

/// An MCP result's text blocks, an error's message, or the JSON itself.
fn text_of(value: &Value) -> String {
    if let Some(message) = value.get("message").and_then(Value::as_str) {
        return message.to_string();
    }
    let texts: Vec<&str> = value
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect();
    match (texts.is_empty(), value) {
        (false, _) => texts.join("\n"),
        (true, Value::Null) => String::new(),
        (true, other) => other.to_string(),
    }
}

impl OutputParser for CodexParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut out = Vec::new();
        if line.trim().is_empty() {
            return out;
        }
        match serde_json::from_str::<Line>(line) {
            Ok(Line::ThreadStarted { thread_id }) => {
                if self.thread_id.is_none() {
                    out.push(EventKind::Session {
                        session_id: thread_id.clone(),
                    });
                    self.thread_id = Some(thread_id);
                }
            }
            Ok(Line::ItemStarted { item }) => self.item_started(item, &mut out),
            Ok(Line::ItemCompleted { item }) => self.item_completed(item, &mut out),
            Ok(Line::TurnCompleted { usage }) => {
                self.turns += 1;
                self.usage = Some(usage);
            }
            Ok(Line::TurnFailed { error }) => self.failed = Some(error.message),
            Ok(Line::Error(error)) => {
                out.push(EventKind::warn(format!("Codex: {}", error.message)));
                self.last_error = Some(error.message);
            }
            Ok(Line::Other) => {}
            Err(_) => out.push(EventKind::unparsed_stdout(line)),
        }
        out
    }

    fn session_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    fn finish(&mut self, exit: &ExitInfo) -> Outcome {
        let failure = match (&self.failed, self.usage) {
            (Some(message), _) => Failure::new(
                classify(message).unwrap_or(ErrorCode::ProviderFailed),
                format!("Codex failed its turn: {message}"),
            ),
            (None, Some(usage)) if exit.code == Some(0) => {
                return Outcome::Completed(RunSummary {
                    session_id: self.thread_id.clone(),
                    result: self.last_text.take(),
                    duration_ms: u64::try_from(exit.elapsed.as_millis()).unwrap_or(u64::MAX),
                    num_turns: self.turns,
                    cost_usd: None,
                    usage: Usage {
                        // OpenAI counts cached tokens inside `input_tokens`; the schema keeps them apart, as Claude
                        // Code reports them.
                        input_tokens: usage.input_tokens.saturating_sub(usage.cached_input_tokens),
                        output_tokens: usage.output_tokens,
                        cache_read_tokens: usage.cached_input_tokens,
                        cache_creation_tokens: usage.cache_write_input_tokens,
..Usage::default()
},
                });
            }
            (None, Some(_)) => Failure::new(
                ErrorCode::ProviderFailed,
                format!("Codex ended with {} after its turn", exit.describe()),
            ),
            (None, None) => {
                let reason = self.last_error.clone().or_else(|| error_line(&exit.stderr_tail));
                Failure::new(
                    reason.as_deref().and_then(classify).unwrap_or(ErrorCode::ProviderFailed),
                    match reason {
                        Some(reason) => format!("Codex ended ({}) without finishing its turn: {reason}", exit.describe()),
                        None => format!("Codex ended ({}) without finishing its turn", exit.describe()),
                    },
                )
            }
        };
        let mut failure = exit.annotate(failure);
        failure.session_id = self.thread_id.clone();
        Outcome::Failed(failure)
    }
}

/// The stderr line that names the problem; warnings and progress notes come before it.
fn error_line(stderr: &str) -> Option<String> {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.starts_with("Error"))
        .or_else(|| lines().next_back())
        .map(String::from)
}

/// Codex reports an API refusal as text (`unexpected status 401 Unauthorized: …`, `exceeded retry limit, last
/// status: 429 Too Many Requests`); the status is read from it as a word of its own.
fn classify(message: &str) -> Option<ErrorCode> {
    let lower = message.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let has = |word: &str| words.contains(&word);
    if has("401") || has("unauthorized") || lower.contains("invalid api key") || lower.contains("incorrect api key") {
        Some(ErrorCode::AuthFailed)
    } else if has("429") || lower.contains("too many requests") || lower.contains("rate limit") || has("quota") {
        Some(ErrorCode::RateLimited)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
