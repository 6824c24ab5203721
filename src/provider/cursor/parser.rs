//! Cursor's `stream-json` output → normalized events. Pure: one line in, events out.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    event::{ErrorCode, EventKind, Failure, Usage},
    process::{ExitInfo, Outcome, OutputParser, RunSummary},
};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    System {
        session_id: Option<String>,
    },
    /// The prompt echoed back: nothing the agent did.
    User {
        session_id: Option<String>,
    },
    Assistant {
        message: Message,
        session_id: Option<String>,
    },
    Thinking {
        #[serde(default)]
        subtype: Option<String>,
        #[serde(default)]
        text: Option<String>,
        session_id: Option<String>,
    },
    ToolCall {
        #[serde(default)]
        subtype: Option<String>,
        call_id: String,
        #[serde(default)]
        tool_call: Map<String, Value>,
        session_id: Option<String>,
    },
    Result(ResultLine),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Vec<Block>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct ResultLine {
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    is_error: bool,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct RawUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_tokens: u64,
    #[serde(default)]
    cache_write_tokens: u64,
}

#[derive(Default)]
pub struct CursorParser {
    session_id: Option<String>,
    result: Option<ResultLine>,
    /// Thinking arrives as deltas; one `thinking` event per thought reads better than hundreds of fragments.
    thinking: String,
    turns: u64,
}

impl CursorParser {
    fn note_session(&mut self, id: Option<String>, out: &mut Vec<EventKind>) {
        if let Some(id) = id.filter(|id| !id.is_empty())
            && self.session_id.is_none()
        {
            self.session_id = Some(id.clone());
            out.push(EventKind::Session { session_id: id });
        }
    }

    fn flush_thinking(&mut self, out: &mut Vec<EventKind>) {
        if !self.thinking.trim().is_empty() {
            out.push(EventKind::Thinking {
                text: std::mem::take(&mut self.thinking),
            });
        }
        self.thinking.clear();
    }

    fn tool_call(&mut self, subtype: Option<&str>, call_id: String, tool_call: Map<String, Value>) -> Vec<EventKind> {
        // The payload is one key naming the tool: `readToolCall`, `writeToolCall`, `shellToolCall`, … or
        // `function` for tools without a dedicated shape.
        let Some((key, body)) = tool_call.into_iter().next() else {
            return Vec::new();
        };
        let name = tool_name(&key, &body);
        match subtype {
            Some("started") => {
                let input = body.get("args").or_else(|| body.get("arguments")).cloned();
                vec![EventKind::ToolUse {
                    id: call_id,
                    name,
                    input: input.unwrap_or(Value::Null),
                }]
            }
            Some("completed") => {
                let (output, is_error) = tool_result(body.get("result"));
                vec![EventKind::ToolResult {
                    tool_use_id: call_id,
                    output,
                    is_error,
                }]
            }
            _ => Vec::new(),
        }
    }
}

fn tool_name(key: &str, body: &Value) -> String {
    if key == "function"
        && let Some(name) = body.get("name").and_then(Value::as_str)
    {
        return name.to_string();
    }
    key.strip_suffix("ToolCall").unwrap_or(key).to_string()
}

/// Results come as `{"success": {…}}`, `{"error": {…}}` or `{"rejected": {…}}`.
fn tool_result(result: Option<&Value>) -> (String, bool) {
    let Some(Value::Object(result)) = result else {
        return (String::new(), false);
    };
    if let Some(success) = result.get("success") {
        return (success_text(success), false);
    }
    if let Some(error) = result.get("error") {
        let text = ["errorMessage", "message", "error"]
            .iter()
            .find_map(|k| error.get(*k).and_then(Value::as_str))
            .map(String::from)
            .unwrap_or_else(|| error.to_string());
        return (text, true);
    }
    if let Some(rejected) = result.get("rejected") {
        let reason = rejected
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("the tool call was rejected");
        return (reason.to_string(), true);
    }
    (Value::Object(result.clone()).to_string(), false)
}

fn success_text(success: &Value) -> String {
    if let Some(content) = success.get("content").and_then(Value::as_str) {
        return content.to_string();
    }
    let stdout = success.get("stdout").and_then(Value::as_str);
    let stderr = success.get("stderr").and_then(Value::as_str).filter(|s| !s.is_empty());
    match (stdout, stderr) {
        (Some(out), Some(err)) => format!("{out}\n{err}"),
        (Some(out), None) => out.to_string(),
        (None, Some(err)) => err.to_string(),
        (None, None) => match success {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

impl OutputParser for CursorParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut out = Vec::new();
        if line.trim().is_empty() {
            return out;
        }
        let parsed = serde_json::from_str::<Line>(line);
        if !matches!(parsed, Ok(Line::Thinking { .. })) {
            self.flush_thinking(&mut out);
        }
        match parsed {
            Ok(Line::System { session_id } | Line::User { session_id }) => self.note_session(session_id, &mut out),
            Ok(Line::Assistant { message, session_id }) => {
                self.note_session(session_id, &mut out);
                self.turns += 1;
                for block in message.content {
                    if let Block::Text { text } = block
                        && !text.is_empty()
                    {
                        out.push(EventKind::AssistantMessage { text });
                    }
                }
            }
            Ok(Line::Thinking {
                subtype,
                text,
                session_id,
            }) => {
                self.note_session(session_id, &mut out);
                self.thinking.push_str(text.as_deref().unwrap_or_default());
                if subtype.as_deref() == Some("completed") {
                    self.flush_thinking(&mut out);
                }
            }
            Ok(Line::ToolCall {
                subtype,
                call_id,
                tool_call,
                session_id,
            }) => {
                self.note_session(session_id, &mut out);
                out.extend(self.tool_call(subtype.as_deref(), call_id, tool_call));
            }
            Ok(Line::Result(result)) => {
                self.note_session(result.session_id.clone(), &mut out);
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
        let Some(result) = self.result.take() else {
            // The stream may simply stop: the exit status and stderr are all there is to go on.
            let code = classify_text(&exit.stderr_tail).unwrap_or(ErrorCode::ProviderFailed);
            let mut failure = Failure::new(
                code,
                format!("cursor-agent ended ({}) without a result", exit.describe()),
            );
            failure.session_id = self.session_id.clone();
            return Outcome::Failed(exit.annotate(failure));
        };
        let session_id = result.session_id.or_else(|| self.session_id.clone());
        if !result.is_error && result.subtype.as_deref().unwrap_or("success") == "success" {
            let usage = result.usage.unwrap_or_default();
            return Outcome::Completed(RunSummary {
                session_id,
                result: result.result,
                duration_ms: result.duration_ms.unwrap_or_default(),
                num_turns: self.turns,
                cost_usd: None,
                usage: Usage {
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                    cache_read_tokens: usage.cache_read_tokens,
                    cache_creation_tokens: usage.cache_write_tokens,
..Usage::default()
},
            });
        }
        let text = result.result.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| {
            format!(
                "cursor-agent reported {}",
                result.subtype.as_deref().unwrap_or("an error")
            )
        });
        let code = classify_text(&text)
            .or_else(|| classify_text(&exit.stderr_tail))
            .unwrap_or(ErrorCode::ProviderFailed);
        let mut failure = Failure::new(code, text);
        failure.session_id = session_id;
        Outcome::Failed(exit.annotate(failure))
    }
}

fn classify_text(text: &str) -> Option<ErrorCode> {
    let lower = text.to_ascii_lowercase();
    let auth = [
        "authentication",
        "unauthorized",
        "invalid api key",
        "not logged in",
        "cursor_api_key",
    ];
    let rate = ["rate limit", "rate_limit", "too many requests", "usage limit"];
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
