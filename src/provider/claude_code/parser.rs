//! Claude Code's `stream-json` output → normalized events. Pure: one line in, events out.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    event::{ErrorCode, EventKind, Failure, Usage},
    process::{ExitInfo, Outcome, OutputParser, RunSummary},
};

/// One stdout line. Flat rather than an internally tagged enum: serde buffers a tagged enum's whole object before
/// choosing the variant, which was the largest cost of the stream path. `type` picks the fields that matter.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    message: Option<Message>,
    /// The CLI repeats an API failure as a synthetic assistant message; the terminal error carries it instead.
    #[serde(default)]
    is_api_error_message: bool,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Blocks(Vec<Block>),
    Text(serde::de::IgnoredAny),
}

impl Default for Content {
    fn default() -> Self {
        Content::Blocks(Vec::new())
    }
}

/// A content block, flat for the same reason as `Line`.
#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    is_error: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
struct ResultLine {
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    is_error: bool,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    num_turns: Option<u64>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    api_error_status: Option<u16>,
    #[serde(default)]
    errors: Option<Vec<Value>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct RawUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

#[derive(Default)]
pub struct ClaudeCodeParser {
    session_id: Option<String>,
    result: Option<ResultLine>,
}

impl ClaudeCodeParser {
    fn note_session(&mut self, id: Option<String>, out: &mut Vec<EventKind>) {
        if let Some(id) = id.filter(|id| !id.is_empty())
            && self.session_id.is_none()
        {
            self.session_id = Some(id.clone());
            out.push(EventKind::Session { session_id: id });
        }
    }

    fn blocks(content: Content, out: &mut Vec<EventKind>) {
        let blocks = match content {
            Content::Blocks(blocks) => blocks,
            // A plain-string user message is the prompt echoed back, not something the agent did.
            Content::Text(_) => return,
        };
        for mut block in blocks {
            let kind = std::mem::take(&mut block.kind);
            let event = match (kind.as_str(), block) {
                ("text", Block { text: Some(text), .. }) if !text.is_empty() => EventKind::AssistantMessage { text },
                (
                    "thinking",
                    Block {
                        thinking: Some(text), ..
                    },
                ) if !text.is_empty() => EventKind::Thinking { text },
                (
                    "tool_use",
                    Block {
                        id: Some(id),
                        name: Some(name),
                        input,
                        ..
                    },
                ) => EventKind::ToolUse {
                    id,
                    name,
                    input: input.unwrap_or(Value::Null),
                },
                (
                    "tool_result",
                    Block {
                        tool_use_id: Some(tool_use_id),
                        content,
                        is_error,
                        ..
                    },
                ) => EventKind::ToolResult {
                    tool_use_id,
                    output: tool_output(content.unwrap_or(Value::Null)),
                    is_error: is_error.unwrap_or(false),
                },
                // redacted_thinking, images, server tools: nothing a client can show as text.
                _ => continue,
            };
            out.push(event);
        }
    }
}

/// Tool results are a string or a list of content blocks; images cannot travel as text and are named instead.
fn tool_output(content: Value) -> String {
    match content {
        Value::String(s) => s,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item.get("type").and_then(Value::as_str) {
                Some("text") => item.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
                Some(other) => format!("[{other}]"),
                None => item.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl OutputParser for ClaudeCodeParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut out = Vec::new();
        if line.trim().is_empty() {
            return out;
        }
        let parsed = match serde_json::from_str::<Line>(line) {
            Ok(parsed) => parsed,
            // Not in the provider's format (a banner, a crash trace): it is kept, not dropped.
            Err(_) => {
                return vec![EventKind::unparsed_stdout(line)];
            }
        };
        match parsed.kind.as_ref() {
            "result" => match serde_json::from_str::<ResultLine>(line) {
                Ok(result) => {
                    self.note_session(result.session_id.clone(), &mut out);
                    self.result = Some(result);
                }
                Err(_) => out.push(EventKind::unparsed_stdout(line)),
            },
            "system" => self.note_session(parsed.session_id, &mut out),
            "assistant" if parsed.is_api_error_message => self.note_session(parsed.session_id, &mut out),
            "assistant" | "user" => {
                self.note_session(parsed.session_id, &mut out);
                if let Some(message) = parsed.message {
                    Self::blocks(message.content, &mut out);
                }
            }
            // New line types (stream_event, rate-limit notices, …) must never break a job.
            _ => {}
        }
        out
    }

    fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    fn finish(&mut self, exit: &ExitInfo) -> Outcome {
        let Some(result) = self.result.take() else {
            let mut failure = Failure::new(
                ErrorCode::ProviderFailed,
                format!("Claude Code ended ({}) without a result", exit.describe()),
            );
            failure.session_id = self.session_id.clone();
            return Outcome::Failed(exit.annotate(failure));
        };
        let subtype = result.subtype.as_deref().unwrap_or("success");
        // API errors arrive as subtype "success" with is_error set, so both have to be checked.
        if !result.is_error && subtype == "success" {
            let usage = result.usage.unwrap_or_default();
            return Outcome::Completed(RunSummary {
                session_id: result.session_id.or_else(|| self.session_id.clone()),
                result: result.result,
                duration_ms: result.duration_ms.unwrap_or_default(),
                num_turns: result.num_turns.unwrap_or_default(),
                cost_usd: result.total_cost_usd,
                usage: Usage {
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    cache_read_tokens: usage.cache_read_input_tokens,
                    cache_creation_tokens: usage.cache_creation_input_tokens,
..Usage::default()
},
            });
        }
        let text = result
            .result
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| {
                result.errors.as_ref().map(|errs| {
                    errs.iter()
                        .map(|e| e.as_str().map(String::from).unwrap_or_else(|| e.to_string()))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| format!("Claude Code reported {subtype}"));
        let code = match result.api_error_status {
            Some(401 | 403) => ErrorCode::AuthFailed,
            Some(429 | 529) => ErrorCode::RateLimited,
            Some(_) => ErrorCode::ProviderFailed,
            None => classify_text(&text),
        };
        let message = match subtype {
            "error_max_turns" => format!("maximum number of turns reached: {text}"),
            _ => text,
        };
        let mut failure = Failure::new(code, message);
        failure.session_id = result.session_id.or_else(|| self.session_id.clone());
        Outcome::Failed(exit.annotate(failure))
    }
}

/// Older CLI versions report API failures only in the result text.
fn classify_text(text: &str) -> ErrorCode {
    let lower = text.to_ascii_lowercase();
    if lower.contains("invalid api key") || lower.contains("authentication_error") || lower.contains("api error: 401") {
        ErrorCode::AuthFailed
    } else if lower.contains("rate_limit") || lower.contains("api error: 429") || lower.contains("overloaded") {
        ErrorCode::RateLimited
    } else {
        ErrorCode::ProviderFailed
    }
}

#[cfg(test)]
mod tests;
