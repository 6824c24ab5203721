//! Gemini CLI's `stream-json` output → normalized events. Pure: one line in, events out.
//!
//! Every line is `{"type", "timestamp", …}`: `init` (`session_id`, `model`), `message` (`role`, `content`,
//! `delta`), `tool_use` (`tool_name`, `tool_id`, `parameters`), `tool_result` (`tool_id`, `status`, `output`,
//! `error`), `error` (`severity`, `message`) and the final `result` (`status`, `error`, `stats`). Lines recorded
//! from the real CLI against the test suite's mock are in `tests/fixtures/gemini/`.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    event::{ErrorCode, EventKind, Failure, Usage},
    process::{ExitInfo, Outcome, OutputParser, RunSummary},
};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Init {
        #[serde(default)]
        session_id: Option<String>,
    },
    Message {
        #[serde(default)]
        role: String,
        #[serde(default)]
        content: String,
    },
    ToolUse {
        tool_id: String,
        tool_name: String,
        #[serde(default)]
        parameters: Value,
    },
    ToolResult {
        tool_id: String,
        #[serde(default)]
        status: String,
        #[serde(default)]
        output: Option<String>,
        #[serde(default)]
        error: Option<ErrorBody>,
    },
    Error {
        #[serde(default)]
        severity: String,
        #[serde(default)]
        message: String,
    },
    Result(ResultLine),
    /// Whatever a later version adds: never fatal.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize, Default)]
struct ResultLine {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    stats: Option<Stats>,
}

/// Token counts summed over every model the run used. `input_tokens` is the whole prompt, `cached` the part
/// of it served from the cache, `input` the rest.
#[derive(Deserialize, Default)]
struct Stats {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cached: u64,
    #[serde(default)]
    input: Option<u64>,
    #[serde(default)]
    duration_ms: Option<u64>,
}

impl Stats {
    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input.unwrap_or(self.input_tokens.saturating_sub(self.cached)),
            output_tokens: self.output_tokens,
            cache_read_tokens: self.cached,
            cache_creation_tokens: 0,
..Usage::default()
}
    }
}

#[derive(Default)]
pub struct GeminiParser {
    session_id: Option<String>,
    /// The assistant's text arrives as deltas (`"delta": true`); they are joined into one `assistant_message`
    /// per answer, which ends at the next line of another kind.
    text: String,
    last_text: Option<String>,
    turns: u64,
    /// The last `error` line of severity `error`: the reason when the run fails without saying more.
    error: Option<String>,
    result: Option<ResultLine>,
}

impl GeminiParser {
    fn flush_text(&mut self, out: &mut Vec<EventKind>) {
        let text = std::mem::take(&mut self.text);
        if !text.trim().is_empty() {
            self.turns += 1;
            self.last_text = Some(text.clone());
            out.push(EventKind::AssistantMessage { text });
        }
    }
}

impl OutputParser for GeminiParser {
    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let mut out = Vec::new();
        if line.trim().is_empty() {
            return out;
        }
        let parsed = serde_json::from_str::<Line>(line);
        if !matches!(&parsed, Ok(Line::Message { role, .. }) if role == "assistant") {
            self.flush_text(&mut out);
        }
        match parsed {
            Ok(Line::Init { session_id }) => {
                if let Some(id) = session_id.filter(|id| !id.is_empty())
                    && self.session_id.is_none()
                {
                    self.session_id = Some(id.clone());
                    out.push(EventKind::Session { session_id: id });
                }
            }
            Ok(Line::Message { role, content }) if role == "assistant" => self.text.push_str(&content),
            // The prompt echoed back: nothing the agent did.
            Ok(Line::Message { .. }) => {}
            Ok(Line::ToolUse {
                tool_id,
                tool_name,
                parameters,
            }) => out.push(EventKind::ToolUse {
                id: tool_id,
                name: tool_name,
                input: parameters,
            }),
            Ok(Line::ToolResult {
                tool_id,
                status,
                output,
                error,
            }) => {
                let is_error = status == "error";
                let output = match (output, error) {
                    (_, Some(error)) if is_error => error.message,
                    (Some(output), _) => output,
                    (None, Some(error)) => error.message,
                    (None, None) => String::new(),
                };
                out.push(EventKind::ToolResult {
                    tool_use_id: tool_id,
                    output,
                    is_error,
                });
            }
            Ok(Line::Error { severity, message }) => {
                if severity == "error" {
                    self.error = Some(message);
                } else {
                    out.push(EventKind::warn(message));
                }
            }
            Ok(Line::Result(result)) => self.result = Some(result),
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
        let succeeded = result.as_ref().is_some_and(|r| r.status == "success") && exit.code == Some(0);
        if succeeded {
            let stats = result.and_then(|r| r.stats).unwrap_or_default();
            return Outcome::Completed(RunSummary {
                session_id: self.session_id.clone(),
                result: self.last_text.take(),
                duration_ms: stats
                    .duration_ms
                    .unwrap_or_else(|| u64::try_from(exit.elapsed.as_millis()).unwrap_or(u64::MAX)),
                num_turns: self.turns,
                // The CLI reports tokens, not prices.
                cost_usd: None,
                usage: stats.usage(),
            });
        }
        let ended = match &result {
            Some(_) => format!("Gemini CLI reported a failure ({})", exit.describe()),
            None => format!("Gemini CLI ended ({}) without a result", exit.describe()),
        };
        let reported = result
            .and_then(|r| r.error)
            .map(|e| e.message)
            .or_else(|| self.error.take())
            .filter(|m| !m.trim().is_empty());
        let message = match (reported, error_line(&exit.stderr_tail)) {
            (Some(message), _) => message,
            // Its own usage errors (an unknown `--resume` id, …) are plain text on stderr, with no JSON at all.
            (None, Some(line)) => format!("{ended}: {line}"),
            (None, None) => ended,
        };
        let mut failure = Failure::new(classify(exit.code, &message), message);
        failure.session_id = self.session_id.clone();
        Outcome::Failed(exit.annotate(failure))
    }
}

/// The CLI exits with its own codes (41 authentication setup, 42 input, 44 sandbox, 52 configuration, 53 turn
/// limit, 54 fatal tool error, 55 untrusted folder, 130 cancelled) or, for an API error, with the HTTP status,
/// which the shell sees modulo 256.
fn classify(exit_code: Option<i32>, message: &str) -> ErrorCode {
    const AUTH_CONFIG: i32 = 41;
    match exit_code {
        Some(AUTH_CONFIG) => return ErrorCode::AuthFailed,
        Some(code) if code == 401 % 256 || code == 403 % 256 => return ErrorCode::AuthFailed,
        Some(code) if code == 429 % 256 => return ErrorCode::RateLimited,
        _ => {}
    }
    // An API error whose status did not make it into the exit code (a stream that broke, a retried call).
    let auth = ["UNAUTHENTICATED", "PERMISSION_DENIED", "API_KEY_INVALID", "API key not valid"];
    let rate = ["RESOURCE_EXHAUSTED", "Quota exceeded", "Too Many Requests"];
    if auth.iter().any(|w| message.contains(w)) {
        ErrorCode::AuthFailed
    } else if rate.iter().any(|w| message.contains(w)) {
        ErrorCode::RateLimited
    } else {
        ErrorCode::ProviderFailed
    }
}

/// The line that names the problem; warnings ("YOLO mode is enabled", "Ripgrep is not available") come first.
fn error_line(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| l.to_ascii_lowercase().starts_with("error"))
}

#[cfg(test)]
mod tests;
