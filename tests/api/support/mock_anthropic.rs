//! A local stand-in for the Anthropic Messages API, so integration tests can run the **real** Claude Code CLI
//! on a machine without internet and still make it do real work: write a file in the workspace, think, or
//! fail with a chosen HTTP status. The Copilot CLI in bring-your-own-key mode (`COPILOT_PROVIDER_TYPE=anthropic`,
//! `COPILOT_PROVIDER_BASE_URL=<base_url()>`) speaks the same API and is served by the same replies.
//!
//! Point the CLI at it with `ANTHROPIC_BASE_URL=<base_url()>` plus `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`
//! (otherwise Claude Code also tries `api.anthropic.com` directly, ignoring the base URL).
//!
//! Facts about Claude Code 2.1.329 this mock relies on (recorded against the real CLI):
//! * Every model call is `POST /v1/messages?beta=true` with `stream: true`, and the main conversation turn
//!   carries a non-empty `tools` array. In `-p` runs no auxiliary call (title, summary, quota probe) reached
//!   the mock; should a tool-less side call appear (another version, another mode), it gets a short text, so
//!   it never receives a scripted tool_use or thinking block meant for the conversation and derails a test.
//! * The workspace is named only inside the prompt text, in a line `Primary working directory: <path>`. After a
//!   `--resume` from another directory the request holds the old line *and* a later one
//!   `Primary working directory: <new> (was <old>)`, so the last one wins and the `(was …)` part is dropped.
//! * The CLI executes a `Write` tool_use with an absolute `file_path`, then sends a new request whose last message
//!   holds the `tool_result`. Older `tool_result`s stay in the history of resumed sessions, so only the last
//!   message decides which phase of `Reply::WriteFile` we are in.
//! * Request bodies start at ~50 KB (system prompt and tool schemas) and carry the whole conversation,
//!   including every file the agent wrote; they soon pass actix-web's default 256 KiB payload limit, and a 413
//!   from the mock would look like a provider failure, so the limit is raised.
//!
//! Facts about Copilot CLI 1.0.102 (recorded the same way):
//! * It calls `POST /v1/messages` (no query string), `stream: true`, with tools named `create`, `edit`, `view`,
//!   `bash`, …: files are written with `create` (`path`, `file_text`), not `Write`. `Reply::WriteFile` picks the
//!   tool the request offers.
//! * The workspace is named in the system prompt, in a line `* Current working directory: <path>`.
//!
//! Facts about MCP tools (both CLIs, recorded the same way; see `Reply::CallMcpTool`):
//! * Claude Code names a server's tool `mcp__<server>__<tool>` and does not offer it up front: it is listed by
//!   name only ("deferred") in the prompt text, and the model loads it with the `ToolSearch` tool
//!   (`{"query": "select:<name>"}`); the next request offers it in `tools`.
//! * Copilot names it `<server>-<tool>` and offers it in `tools` from the first request.
//!
//! The server itself is `mock_server`'s, as for the other mock APIs.

// Each test binary that includes this file uses a different subset of it.
#![allow(dead_code)]

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

pub use super::reply::Reply;

/// Answer to anything that is not the main conversation turn. Short and harmless, whatever the CLI uses it for.
const AUX_TEXT: &str = "OK";

struct State {
    reply: Reply,
    requests: Vec<Value>,
    /// The credential of each `POST /v1/messages`, as sent: `x-api-key`, else the `Authorization` header.
    credentials: Vec<String>,
    /// Makes ids unique across the mock's life: the CLI keys its transcript on message and tool_use ids.
    counter: u64,
}

type Shared = super::mock_server::Shared<State>;

use super::mock_server::MockServer;

pub struct MockAnthropic {
    server: MockServer,
    shared: Shared,
}

impl MockAnthropic {
    /// Starts the server and returns once the port is bound, so the URL can be handed to a CLI right away.
    pub fn start(reply: Reply) -> MockAnthropic {
        let shared = Shared::new(State {
            reply,
            requests: Vec::new(),
            credentials: Vec::new(),
            counter: 0,
        });
        let server = MockServer::start("mock-anthropic", shared.clone(), |cfg| {
            cfg.route("/v1/messages", web::post().to(messages))
                .route("/v1/messages/count_tokens", web::post().to(count_tokens))
                .default_service(web::to(not_found));
        });
        MockAnthropic { server, shared }
    }

    /// `http://127.0.0.1:PORT`, the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// JSON bodies of every `POST /v1/messages` received (auxiliary ones included), in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().requests.clone()
    }

    /// The credential each `POST /v1/messages` carried (`x-api-key`, else `Authorization`), in order.
    pub fn credentials(&self) -> Vec<String> {
        self.shared.lock().credentials.clone()
    }

    /// Changes the behaviour for the following requests, e.g. between two jobs of one test.
    pub fn set_reply(&self, reply: Reply) {
        self.shared.lock().reply = reply;
    }
}

async fn messages(shared: web::Data<Shared>, req: actix_web::HttpRequest, body: web::Bytes) -> HttpResponse {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, "mock: request body is not JSON");
    };
    if !request.is_object() {
        return error_response(400, "mock: request body is not a JSON object");
    }
    let (reply, n) = {
        let credential = ["x-api-key", "authorization"]
            .iter()
            .find_map(|name| req.headers().get(*name)?.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut state = shared.lock();
        state.requests.push(request.clone());
        state.credentials.push(credential);
        state.counter += 1;
        (state.reply.clone(), state.counter)
    };
    let is_main = request
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| !tools.is_empty());

    let (blocks, stop_reason) = match reply {
        Reply::Status(code) => {
            return error_response(code, &format!("mock: scripted status {code}"));
        }
        Reply::Text(text) => (vec![Block::Text(text)], "end_turn"),
        _ if !is_main => (vec![Block::Text(AUX_TEXT.to_string())], "end_turn"),
        Reply::Stall => return super::reply::stall().await,
        Reply::RunCommand { final_text, .. } if last_message_has_tool_result(&request) => {
            (vec![Block::Text(final_text)], "end_turn")
        }
        // The shell tool, run in the CLI's working directory: Claude Code's `Bash`, Copilot's `bash`.
        Reply::RunCommand { cmd, .. } => (
            vec![Block::ToolUse {
                id: format!("toolu_mock_{n}"),
                name: if offers_tool(&request, "bash") && !offers_tool(&request, "Bash") {
                    "bash".into()
                } else {
                    "Bash".into()
                },
                input: json!({ "command": cmd, "description": "Run the scripted command" }),
            }],
            "tool_use",
        ),
        Reply::ThinkingThenText { thinking, text } => (vec![Block::Thinking(thinking), Block::Text(text)], "end_turn"),
        Reply::WriteFile {
            file_name,
            content,
            final_text,
        } => {
            if last_message_has_tool_result(&request) {
                (vec![Block::Text(final_text)], "end_turn")
            } else {
                let Some(dir) = primary_working_directory(&request) else {
                    return error_response(400, "mock: no working-directory line in the request");
                };
                let file_path = format!("{}/{}", dir.trim_end_matches('/'), file_name);
                let (name, input) = if offers_tool(&request, "create") && !offers_tool(&request, "Write") {
                    ("create", json!({ "path": file_path, "file_text": content }))
                } else {
                    ("Write", json!({ "file_path": file_path, "content": content }))
                };
                let tool_use = Block::ToolUse {
                    id: format!("toolu_mock_{n}"),
                    name: name.to_string(),
                    input,
                };
                (vec![Block::Text(format!("Writing {file_name}.")), tool_use], "tool_use")
            }
        }
        Reply::CallMcpTool {
            server,
            tool,
            input,
            final_text,
        } => match mcp_step(&request, &server, &tool) {
            McpStep::Answered => (vec![Block::Text(final_text)], "end_turn"),
            McpStep::Call(name) => (
                vec![
                    Block::Text(format!("Calling {name}.")),
                    Block::ToolUse {
                        id: format!("toolu_mock_{n}"),
                        name,
                        input,
                    },
                ],
                "tool_use",
            ),
            McpStep::Load(name) => (
                vec![Block::ToolUse {
                    id: format!("toolu_mock_{n}"),
                    name: "ToolSearch".into(),
                    input: json!({ "query": format!("select:{name}"), "max_results": 1 }),
                }],
                "tool_use",
            ),
            McpStep::Missing => (
                vec![Block::Text(format!(
                    "mock: no tool of MCP server {server} named {tool}"
                ))],
                "end_turn",
            ),
        },
    };

    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-mock")
        .to_string();
    let message_id = format!("msg_mock_{n}");
    let request_id = format!("req_mock_{n}");
    // Claude Code falls back to a non-streaming call when a stream breaks; answer that shape too.
    if request.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("request-id", request_id))
            .body(render_sse(&message_id, &model, &blocks, stop_reason))
    } else {
        HttpResponse::Ok()
            .insert_header(("request-id", request_id))
            .json(render_message(&message_id, &model, &blocks, stop_reason))
    }
}

/// The CLI may count tokens (e.g. for context accounting); any plausible number is fine.
async fn count_tokens(body: web::Bytes) -> HttpResponse {
    if serde_json::from_slice::<Value>(&body).is_err() {
        return error_response(400, "mock: request body is not JSON");
    }
    HttpResponse::Ok().json(json!({ "input_tokens": 100 }))
}

async fn not_found() -> HttpResponse {
    error_response(404, "mock: no such endpoint")
}

/// The CLI classifies failures by status and `error.type` (e.g. 401 → "authentication_failed" and
/// `api_error_status: 401` in its result line), so the body mirrors the real API's shape.
fn error_response(code: u16, message: &str) -> HttpResponse {
    let error_type = match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if code == 429 {
        // Without it the CLI backs off on its own schedule; 0 keeps its (single) retry immediate.
        response.insert_header(("retry-after", "0"));
    }
    response.json(json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
    }))
}

enum Block {
    Text(String),
    Thinking(String),
    ToolUse { id: String, name: String, input: Value },
}

fn usage() -> Value {
    json!({
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    })
}

fn sse_event(out: &mut String, event: &str, data: &Value) {
    // `Value`'s Display is compact JSON, which never contains a raw newline: one `data:` line per event.
    out.push_str(&format!("event: {event}\ndata: {data}\n\n"));
}

/// The event sequence of the real streaming API. Each block is sent as start / one delta / stop, which the CLI
/// turns into one `assistant` stream-json line per block.
fn render_sse(message_id: &str, model: &str, blocks: &[Block], stop_reason: &str) -> String {
    let mut out = String::new();
    sse_event(
        &mut out,
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage(),
            },
        }),
    );
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas) = match block {
            Block::Text(text) => (
                json!({ "type": "text", "text": "" }),
                vec![json!({ "type": "text_delta", "text": text })],
            ),
            Block::Thinking(thinking) => (
                json!({ "type": "thinking", "thinking": "", "signature": "" }),
                // The CLI sends thinking blocks back in later turns; the real API requires their signature.
                vec![
                    json!({ "type": "thinking_delta", "thinking": thinking }),
                    json!({ "type": "signature_delta", "signature": "bW9jaw==" }),
                ],
            ),
            Block::ToolUse { id, name, input } => (
                json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                vec![json!({ "type": "input_json_delta", "partial_json": input.to_string() })],
            ),
        };
        sse_event(
            &mut out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index, "content_block": start }),
        );
        for delta in deltas {
            sse_event(
                &mut out,
                "content_block_delta",
                &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
            );
        }
        sse_event(
            &mut out,
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": index }),
        );
    }
    sse_event(
        &mut out,
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": 5 },
        }),
    );
    sse_event(&mut out, "message_stop", &json!({ "type": "message_stop" }));
    out
}

fn render_message(message_id: &str, model: &str, blocks: &[Block], stop_reason: &str) -> Value {
    let content: Vec<Value> = blocks
        .iter()
        .map(|block| match block {
            Block::Text(text) => json!({ "type": "text", "text": text }),
            Block::Thinking(thinking) => {
                json!({ "type": "thinking", "thinking": thinking, "signature": "bW9jaw==" })
            }
            Block::ToolUse { id, name, input } => {
                json!({ "type": "tool_use", "id": id, "name": name, "input": input })
            }
        })
        .collect();
    json!({
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason, "stop_sequence": null,
        "usage": { "input_tokens": 10, "output_tokens": 5 },
    })
}

fn last_message_has_tool_result(request: &Value) -> bool {
    request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.last())
        .and_then(|message| message.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|content| {
            content
                .iter()
                .any(|block| block.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

enum McpStep {
    /// The last message holds the result of the MCP tool's call.
    Answered,
    /// The tool is offered under this name: call it.
    Call(String),
    /// The tool is only named (deferred): load it through `ToolSearch`.
    Load(String),
    Missing,
}

/// Where a conversation that should call `tool` of MCP server `server` stands. Every CLI spells the tool's name
/// its own way, but each keeps the server's and the tool's names in it.
fn mcp_step(request: &Value, server: &str, tool: &str) -> McpStep {
    let is_it = |name: &str| name != tool && name.contains(server) && name.ends_with(tool);
    let messages = request.get("messages").and_then(Value::as_array);
    let called_before_last = messages
        .and_then(|m| m.len().checked_sub(2).map(|i| &m[i]))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks.iter().any(|b| {
                b.get("type").and_then(Value::as_str) == Some("tool_use")
                    && b.get("name").and_then(Value::as_str).is_some_and(is_it)
            })
        });
    if called_before_last && last_message_has_tool_result(request) {
        return McpStep::Answered;
    }
    let offered = request.get("tools").and_then(Value::as_array).and_then(|tools| {
        tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .find(|name| is_it(name))
    });
    if let Some(name) = offered {
        return McpStep::Call(name.to_string());
    }
    let deferred = format!("mcp__{server}__{tool}");
    if offers_tool(request, "ToolSearch") && request.to_string().contains(&deferred) {
        return McpStep::Load(deferred);
    }
    McpStep::Missing
}

/// Claude Code's line, then Copilot's.
const PWD_MARKERS: [&str; 2] = ["Primary working directory:", "Current working directory:"];

fn offers_tool(request: &Value, name: &str) -> bool {
    request.get("tools").and_then(Value::as_array).is_some_and(|tools| {
        tools
            .iter()
            .any(|t| t.get("name").and_then(Value::as_str) == Some(name))
    })
}

/// The CLI's working directory as named in the prompt. Messages are searched from the newest so that an
/// "Environment update" after a resume from another directory wins over the original environment block.
fn primary_working_directory(request: &Value) -> Option<String> {
    let newest_first = request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .rev();
    newest_first.chain(request.get("system")).find_map(|part| {
        let mut texts = Vec::new();
        collect_strings(part, &mut texts);
        texts.iter().rev().find_map(|text| last_pwd_in(text))
    })
}

fn last_pwd_in(text: &str) -> Option<String> {
    let (line, marker) = text
        .lines()
        .rev()
        .find_map(|line| PWD_MARKERS.iter().find(|m| line.contains(*m)).map(|m| (line, *m)))?;
    let (_, rest) = line.split_once(marker)?;
    let mut dir = rest.trim();
    // "/new (was /old)" after a resume in another directory.
    if let Some(idx) = dir.rfind(" (was ")
        && dir.ends_with(')')
    {
        dir = dir[..idx].trim_end();
    }
    dir.starts_with('/').then(|| dir.to_string())
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}
