//! A local stand-in for an OpenAI-compatible chat-completions API (`POST /v1/chat/completions`), so that
//! integration tests can run the **real** opencode CLI on a machine without internet and make it do real work:
//! write a file in the workspace through its own `write` tool, think, or fail with a chosen HTTP status.
//!
//! Point opencode at it with a provider in `OPENCODE_CONFIG_CONTENT` whose `npm` is `@ai-sdk/openai-compatible`
//! and whose `options.baseURL` is `<base_url()>/v1`.
//!
//! Facts about opencode 1.18.33 this mock relies on (recorded against the real CLI):
//! * Every model call is `POST /v1/chat/completions` with `stream: true` and `stream_options.include_usage`; the
//!   answer is server-sent events of `chat.completion.chunk`s (`delta.content`, `delta.reasoning_content`,
//!   `delta.tool_calls`), a usage chunk with no choices, then `data: [DONE]`.
//! * A new session's first request is a title request without tools, running alongside the conversation: it is
//!   answered with a title whatever the scripted reply, so it never takes a tool call meant for the conversation.
//! * The working directory is named in the system prompt, in a line `  Working directory: <path>`.
//! * After a tool call the next request ends with a message of role `tool`; earlier tool messages stay in the
//!   history of resumed sessions, so only the last message decides which phase of `Reply::WriteFile` we are in.
//! * Its API key arrives as `Authorization: Bearer <key>`; the mock records it so tests can see which key the CLI
//!   was given.
//! * On 429 it retries five times, honouring `retry-after-ms`; the mock sends 10 so that a test ends in seconds.
//!
//! The server itself is `mock_server`'s.

// Each test binary that includes this file uses a different subset of it.
#![allow(dead_code)]

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

pub use super::reply::Reply;

/// The answer to a title request.
pub const TITLE: &str = "Mock title";

/// Token counts of every answer, so that tests can check how usage adds up over a run.
pub const PROMPT_TOKENS: u64 = 100;
pub const CACHED_TOKENS: u64 = 40;
pub const COMPLETION_TOKENS: u64 = 20;

struct State {
    reply: Reply,
    requests: Vec<Value>,
    authorizations: Vec<String>,
    arrivals: Vec<Instant>,
    counter: u64,
}

type Shared = super::mock_server::Shared<State>;

use super::mock_server::MockServer;

pub struct MockChat {
    server: MockServer,
    shared: Shared,
}

impl MockChat {
    /// Starts the server and returns once the port is bound.
    pub fn start(reply: Reply) -> MockChat {
        let shared = Shared::new(State {
            reply,
            requests: Vec::new(),
            authorizations: Vec::new(),
            arrivals: Vec::new(),
            counter: 0,
        });
        let server = MockServer::start("mock-chat", shared.clone(), |cfg| {
            cfg.route("/v1/chat/completions", web::post().to(completions))
                .default_service(web::to(not_found));
        });
        MockChat { server, shared }
    }

    /// `http://127.0.0.1:PORT/v1`, the provider's `baseURL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr)
    }

    /// JSON bodies of every request received (title requests included), in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().requests.clone()
    }

    /// The `Authorization` header of every request, in order (empty when there was none).
    pub fn authorizations(&self) -> Vec<String> {
        self.shared.lock().authorizations.clone()
    }

    /// When each request arrived, in order: how quickly the CLI retried.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.shared.lock().arrivals.clone()
    }

    /// Changes the behaviour for the following requests, e.g. between two jobs of one test.
    pub fn set_reply(&self, reply: Reply) {
        self.shared.lock().reply = reply;
    }
}

/// Whether a request is part of the conversation (it offers tools) rather than a title request.
pub fn is_conversation(request: &Value) -> bool {
    request["tools"].as_array().is_some_and(|tools| !tools.is_empty())
}

async fn completions(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, "mock: request body is not JSON");
    };
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (reply, n) = {
        let mut state = shared.lock();
        state.requests.push(request.clone());
        state.authorizations.push(authorization);
        state.arrivals.push(Instant::now());
        state.counter += 1;
        (state.reply.clone(), state.counter)
    };
    if request["stream"] != json!(true) {
        return error_response(400, "mock: only streaming requests are answered");
    }
    let deltas = match reply {
        Reply::Status(code) => return error_response(code, &format!("mock: scripted status {code}")),
        _ if !is_conversation(&request) => vec![Delta::Text(TITLE.to_string())],
        Reply::Stall => return super::reply::stall().await,
        Reply::RunCommand { final_text, .. } if last_role(&request) == Some("tool") => vec![Delta::Text(final_text)],
        // opencode's shell tool, run in its working directory.
        Reply::RunCommand { cmd, .. } => vec![Delta::ToolCall {
            id: format!("call_mock_{n}"),
            name: "bash".into(),
            arguments: json!({ "command": cmd, "description": "Run the scripted command" }).to_string(),
        }],
        Reply::Text(text) => vec![Delta::Text(text)],
        Reply::ThinkingThenText { thinking, text } => vec![Delta::Reasoning(thinking), Delta::Text(text)],
        Reply::CallMcpTool { final_text, .. } if last_role(&request) == Some("tool") => vec![Delta::Text(final_text)],
        Reply::CallMcpTool {
            server, tool, input, ..
        } => match offered_tool(&request, &format!("{server}_{tool}")) {
            Some(name) => vec![Delta::ToolCall {
                id: format!("call_mock_{n}"),
                name,
                arguments: input.to_string(),
            }],
            None => vec![Delta::Text(format!("mock: no tool {server}_{tool} offered"))],
        },
        Reply::WriteFile {
            file_name,
            content,
            final_text,
        } => {
            if last_role(&request) == Some("tool") {
                vec![Delta::Text(final_text)]
            } else {
                let Some(dir) = working_directory(&request) else {
                    return error_response(400, "mock: no working-directory line in the request");
                };
                let arguments = json!({
                    "filePath": format!("{}/{}", dir.trim_end_matches('/'), file_name),
                    "content": content,
                });
                vec![
                    Delta::Text(format!("Writing {file_name}.")),
                    Delta::ToolCall {
                        id: format!("call_mock_{n}"),
                        name: "write".into(),
                        arguments: arguments.to_string(),
                    },
                ]
            }
        }
    };
    let model = request["model"].as_str().unwrap_or("mock-model").to_string();
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .body(render_sse(&format!("chatcmpl-mock-{n}"), &model, &deltas))
}

async fn not_found() -> HttpResponse {
    error_response(404, "mock: no such endpoint")
}

/// The shape of the real API's errors; opencode reports the status (`error.data.statusCode`) and the message.
fn error_response(code: u16, message: &str) -> HttpResponse {
    let error_type = match code {
        401 => "invalid_api_key",
        429 => "rate_limit_exceeded",
        _ => "api_error",
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if code == 429 {
        // opencode waits `retry-after-ms` between its five retries; without it a test would take minutes.
        response.insert_header(("retry-after-ms", "10"));
        response.insert_header(("retry-after", "0"));
    }
    response.json(json!({ "error": { "message": message, "type": error_type, "code": error_type } }))
}

enum Delta {
    Text(String),
    Reasoning(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

/// The chunk sequence of the real streaming API: one chunk per delta, the finish reason, the usage chunk, `[DONE]`.
fn render_sse(id: &str, model: &str, deltas: &[Delta]) -> String {
    let chunk = |choices: Value| json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": choices });
    let mut out = String::new();
    let mut push = |value: Value| out.push_str(&format!("data: {value}\n\n"));
    let mut tool_index = 0;
    for (i, delta) in deltas.iter().enumerate() {
        let mut delta = match delta {
            Delta::Text(text) => json!({ "content": text }),
            Delta::Reasoning(text) => json!({ "reasoning_content": text }),
            Delta::ToolCall { id, name, arguments } => {
                tool_index += 1;
                json!({ "tool_calls": [{ "index": tool_index - 1, "id": id, "type": "function",
                    "function": { "name": name, "arguments": arguments } }] })
            }
        };
        if i == 0 {
            delta["role"] = json!("assistant");
        }
        push(chunk(json!([{ "index": 0, "delta": delta, "finish_reason": null }])));
    }
    let finish = if tool_index > 0 { "tool_calls" } else { "stop" };
    push(chunk(json!([{ "index": 0, "delta": {}, "finish_reason": finish }])));
    let mut usage = chunk(json!([]));
    usage["usage"] = json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": { "cached_tokens": CACHED_TOKENS },
    });
    push(usage);
    out.push_str("data: [DONE]\n\n");
    out
}

/// The name of the offered tool `name`, if the request offers it.
fn offered_tool(request: &Value, name: &str) -> Option<String> {
    request["tools"]
        .as_array()?
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .find(|offered| *offered == name)
        .map(String::from)
}

fn last_role(request: &Value) -> Option<&str> {
    request["messages"].as_array()?.last()?["role"].as_str()
}

/// The CLI's working directory, from the system prompt's `Working directory:` line.
fn working_directory(request: &Value) -> Option<String> {
    const MARKER: &str = "Working directory:";
    let messages = request["messages"].as_array()?;
    let system = messages.iter().filter(|m| m["role"] == "system");
    let mut texts = Vec::new();
    for message in system {
        collect_strings(&message["content"], &mut texts);
    }
    texts.iter().find_map(|text| {
        let line = text.lines().find(|line| line.trim_start().starts_with(MARKER))?;
        let dir = line.trim_start()[MARKER.len()..].trim();
        dir.starts_with('/').then(|| dir.to_string())
    })
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}
