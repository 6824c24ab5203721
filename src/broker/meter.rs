//! The worker's own token meter: reads the usage of one model call from the answer's bytes as they pass the
//! broker, streamed (server-sent events) or not (one JSON document), for each API style the CLIs speak. Pure and
//! synchronous: the proxy feeds it chunks and takes the figures when the answer ends.

use serde_json::Value;

use crate::event::Usage;

/// The model APIs the broker can meter, told apart by the path of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiStyle {
    /// `POST …/v1/messages`: `message_start` / `message_delta` usage, or the message's own.
    Anthropic,
    /// `POST …/responses`: `response.completed` usage, or the response's own.
    OpenAiResponses,
    /// `POST …/chat/completions`: the `usage` of the last chunk, or of the completion.
    OpenAiChat,
    /// `POST …/models/<model>:generateContent` or `:streamGenerateContent`: `usageMetadata`.
    Gemini,
}

impl ApiStyle {
    /// The style of a model call at `path` (without its query), or None for what is not one (token counting, model
    /// lists): those pass without being counted or refused.
    pub fn of_path(path: &str) -> Option<ApiStyle> {
        if path.ends_with("/messages") {
            Some(ApiStyle::Anthropic)
        } else if path.ends_with("/responses") {
            Some(ApiStyle::OpenAiResponses)
        } else if path.ends_with("/chat/completions") {
            Some(ApiStyle::OpenAiChat)
        } else if path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent") {
            Some(ApiStyle::Gemini)
        } else {
            None
        }
    }

    /// Gemini names the model in the path, the others in the body (read back from the answer).
    pub fn model_in_path(self, path: &str) -> Option<String> {
        if self != ApiStyle::Gemini {
            return None;
        }
        let (_, rest) = path.rsplit_once("/models/")?;
        Some(rest.split(':').next()?.to_string())
    }
}

/// A JSON answer is kept to be read at its end; one larger than this (no usage document is) is passed on unread.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// The usage of one model call, read as its answer streams past.
#[derive(Debug)]
pub struct CallMeter {
    style: ApiStyle,
    /// Server-sent events: read line by line. Otherwise one JSON document (or, for Gemini's stream without
    /// `alt=sse`, one JSON array), read at the end.
    events: bool,
    pending: Vec<u8>,
    overflowed: bool,
    usage: Usage,
    model: Option<String>,
}

impl CallMeter {
    pub fn new(style: ApiStyle, events: bool, model: Option<String>) -> CallMeter {
        CallMeter {
            style,
            events,
            pending: Vec::new(),
            overflowed: false,
            usage: Usage::default(),
            model,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.overflowed {
            return;
        }
        if !self.events {
            self.keep(chunk);
            return;
        }
        let mut rest = chunk;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(end);
            if self.pending.is_empty() {
                self.line(line);
            } else {
                self.pending.extend_from_slice(line);
                let whole = std::mem::take(&mut self.pending);
                self.line(&whole);
            }
            rest = &after[1..];
        }
        self.keep(rest);
    }

    /// The call's usage and the model that answered, once the answer ended (or broke off: what was read counts).
    pub fn finish(mut self) -> (Usage, Option<String>) {
        if !self.overflowed {
            let pending = std::mem::take(&mut self.pending);
            if self.events {
                self.line(&pending);
            } else if let Ok(document) = serde_json::from_slice::<Value>(&pending) {
                self.observe(&document);
            }
        }
        (self.usage, self.model)
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > MAX_DOCUMENT_BYTES {
            self.overflowed = true;
            self.pending = Vec::new();
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Only the events that carry usage are parsed: text deltas, the bulk of a stream, pass untouched.
        if memchr::memmem::find(data, b"sage").is_none() {
            return;
        }
        if let Ok(event) = serde_json::from_slice::<Value>(data.trim_ascii()) {
            self.observe(&event);
        }
    }

    fn observe(&mut self, value: &Value) {
        if let Value::Array(items) = value {
            items.iter().for_each(|item| self.observe(item));
            return;
        }
        let count = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64);
        // Later figures of the same call replace earlier ones: streams repeat their running totals.
        let u = &mut self.usage;
        let (usage, model) = match self.style {
            ApiStyle::Anthropic => {
                let message = value.get("message").filter(|m| m.is_object()).unwrap_or(value);
                let usage = message.get("usage").or_else(|| value.get("usage"));
                (usage, message.get("model"))
            }
            ApiStyle::OpenAiResponses => {
                let response = value.get("response").filter(|r| r.is_object()).unwrap_or(value);
                (response.get("usage"), response.get("model"))
            }
            ApiStyle::OpenAiChat => (value.get("usage"), value.get("model")),
            ApiStyle::Gemini => (value.get("usageMetadata"), value.get("modelVersion")),
        };
        if let Some(model) = model.and_then(Value::as_str) {
            self.model = Some(model.to_string());
        }
        let Some(usage) = usage.filter(|u| u.is_object()) else {
            return;
        };
        match self.style {
            ApiStyle::Anthropic => {
                set(&mut u.input_tokens, count(usage, "input_tokens"));
                set(&mut u.output_tokens, count(usage, "output_tokens"));
                set(&mut u.cache_read_tokens, count(usage, "cache_read_input_tokens"));
                set(
                    &mut u.cache_creation_tokens,
                    count(usage, "cache_creation_input_tokens"),
                );
            }
            // OpenAI and Gemini count cached tokens inside the prompt's; the schema keeps them apart, as
            // Anthropic does.
            ApiStyle::OpenAiResponses | ApiStyle::OpenAiChat => {
                let (input, output, details) = match self.style {
                    ApiStyle::OpenAiResponses => ("input_tokens", "output_tokens", "input_tokens_details"),
                    _ => ("prompt_tokens", "completion_tokens", "prompt_tokens_details"),
                };
                let cached = usage.get(details).and_then(|d| count(d, "cached_tokens")).unwrap_or(0);
                set(
                    &mut u.input_tokens,
                    count(usage, input).map(|n| n.saturating_sub(cached)),
                );
                set(&mut u.cache_read_tokens, count(usage, input).map(|_| cached));
                set(&mut u.output_tokens, count(usage, output));
            }
            ApiStyle::Gemini => {
                let cached = count(usage, "cachedContentTokenCount").unwrap_or(0);
                let prompt = count(usage, "promptTokenCount");
                set(&mut u.input_tokens, prompt.map(|n| n.saturating_sub(cached)));
                set(&mut u.cache_read_tokens, prompt.map(|_| cached));
                let candidates = count(usage, "candidatesTokenCount");
                let thoughts = count(usage, "thoughtsTokenCount");
                if candidates.is_some() || thoughts.is_some() {
                    u.output_tokens = candidates.unwrap_or(0) + thoughts.unwrap_or(0);
                }
            }
        }
    }
}

fn set(field: &mut u64, value: Option<u64>) {
    if let Some(value) = value {
        *field = value;
    }
}

#[cfg(test)]
mod tests;
