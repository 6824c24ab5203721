//! A local stand-in for the Gemini API (`generativelanguage`, v1beta), so integration tests can run the **real**
//! Gemini CLI on a machine without internet and still make it do real work: write a file in the workspace, or
//! fail with a chosen HTTP status.
//!
//! Point the CLI at it with `GOOGLE_GEMINI_BASE_URL=<base_url()>`, an API key and a settings file that selects
//! API-key authentication (the worker writes one for every job).
//!
//! Facts about Gemini CLI 0.61.0 this mock relies on (recorded against the real CLI):
//! * Every conversation turn is `POST /v1beta/models/<model>:streamGenerateContent?alt=sse` with the key in the
//!   `x-goog-api-key` header and a body `{"contents", "systemInstruction", "tools", "generationConfig"}`. The
//!   answer is server-sent events, each `data: {"candidates":[{"content":{"role":"model","parts":[…]}}]}`; the
//!   last one carries `finishReason` and `usageMetadata`. With `-m` given no classifier or other side call
//!   reached the mock; should one appear (`:generateContent`, `:countTokens`), it gets a short harmless answer.
//! * The workspace is named in the first user message, in a list under `Workspace Directories:`.
//! * A tool call is a part `{"functionCall":{"name":"write_file","args":{"file_path","content"}}}`; the CLI runs
//!   it and sends a new request whose last content holds the `functionResponse`. Older responses stay in the
//!   history of a resumed session, so only the last content decides which phase of `Reply::WriteFile` this is.
//! * Errors are `{"error":{"code","message","status"}}`; the CLI exits with the HTTP status (mod 256).
//!
//! The server itself is `mock_server`'s.

// Each test binary that includes this file uses a different subset of it.
#![allow(dead_code)]

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

pub use super::reply::Reply;

/// What one call brought.
#[derive(Clone, Debug)]
pub struct Call {
    /// `gemini-2.5-flash:streamGenerateContent`.
    pub method: String,
    pub api_key: Option<String>,
    pub body: Value,
}

/// Reported on every answer: per call 100 prompt tokens (10 of them from the cache) and 20 answer tokens.
pub const PROMPT_TOKENS: u64 = 100;
pub const CACHED_TOKENS: u64 = 10;
pub const ANSWER_TOKENS: u64 = 20;

struct State {
    reply: Reply,
    calls: Vec<Call>,
}

type Shared = super::mock_server::Shared<State>;

use super::mock_server::MockServer;

pub struct MockGemini {
    server: MockServer,
    shared: Shared,
}

impl MockGemini {
    /// Starts the server and returns once the port is bound.
    pub fn start(reply: Reply) -> MockGemini {
        let shared = Shared::new(State {
            reply,
            calls: Vec::new(),
        });
        let server = MockServer::start("mock-gemini", shared.clone(), |cfg| {
            cfg.route("/v1beta/models/{method}", web::post().to(model_call))
                .default_service(web::to(not_found));
        });
        MockGemini { server, shared }
    }

    /// `http://127.0.0.1:PORT`, the value for `GOOGLE_GEMINI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The bodies of the conversation turns (`streamGenerateContent`), in order.
    pub fn turns(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.ends_with(":streamGenerateContent"))
            .map(|c| c.body)
            .collect()
    }

    pub fn set_reply(&self, reply: Reply) {
        self.shared.lock().reply = reply;
    }
}

async fn model_call(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let method = req.match_info().get("method").unwrap_or_default().to_string();
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, "mock: request body is not JSON");
    };
    let api_key = req
        .headers()
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let reply = {
        let mut state = shared.lock();
        state.calls.push(Call {
            method: method.clone(),
            api_key,
            body: request.clone(),
        });
        state.reply.clone()
    };
    if let Reply::Status(code) = reply {
        return error_response(code, &format!("mock: scripted status {code}"));
    }
    if method.ends_with(":countTokens") {
        return HttpResponse::Ok().json(json!({ "totalTokens": PROMPT_TOKENS }));
    }
    let parts = match reply {
        Reply::Status(_) => unreachable!("answered above"),
        Reply::Stall => return super::reply::stall().await,
        unscripted @ Reply::ThinkingThenText { .. } => {
            return error_response(500, &unscripted.unscripted());
        }
        Reply::Text(text) => vec![json!({ "text": text })],
        _ if !method.ends_with(":streamGenerateContent") => vec![json!({ "text": "OK" })],
        Reply::RunCommand { final_text, .. } if last_content_has_function_response(&request) => {
            vec![json!({ "text": final_text })]
        }
        // Gemini CLI's shell tool, run in its working directory.
        Reply::RunCommand { cmd, .. } => vec![json!({ "functionCall": { "name": "run_shell_command",
            "args": { "command": cmd, "description": "Run the scripted command" } } })],
        Reply::WriteFile {
            file_name,
            content,
            final_text,
        } => {
            if last_content_has_function_response(&request) {
                vec![json!({ "text": final_text })]
            } else {
                let Some(dir) = workspace_directory(&request) else {
                    return error_response(400, "mock: no workspace directory in the request");
                };
                let file_path = format!("{}/{file_name}", dir.trim_end_matches('/'));
                vec![
                    json!({ "text": format!("Writing {file_name}.") }),
                    json!({ "functionCall": { "name": "write_file", "args": { "file_path": file_path, "content": content } } }),
                ]
            }
        }
        Reply::CallMcpTool { final_text, .. } if last_content_has_function_response(&request) => {
            vec![json!({ "text": final_text })]
        }
        Reply::CallMcpTool {
            server, tool, input, ..
        } => vec![
            json!({ "text": format!("Calling {tool}.") }),
            json!({ "functionCall": { "name": format!("mcp_{server}_{tool}"), "args": input } }),
        ],
    };
    if method.ends_with(":streamGenerateContent") {
        HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("cache-control", "no-cache"))
            .body(render_sse(parts))
    } else {
        HttpResponse::Ok().json(candidate(parts, true))
    }
}

async fn not_found() -> HttpResponse {
    error_response(404, "mock: no such endpoint")
}

/// The CLI classifies failures by the HTTP status; the body mirrors the real API's shape.
fn error_response(code: u16, message: &str) -> HttpResponse {
    let status_name = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(json!({
        "error": { "code": code, "message": message, "status": status_name },
    }))
}

fn candidate(parts: Vec<Value>, last: bool) -> Value {
    let mut chunk = json!({ "candidates": [{ "content": { "role": "model", "parts": parts }, "index": 0 }] });
    if last {
        chunk["candidates"][0]["finishReason"] = json!("STOP");
        chunk["usageMetadata"] = json!({
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": ANSWER_TOKENS,
            "cachedContentTokenCount": CACHED_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + ANSWER_TOKENS,
        });
    }
    chunk
}

/// One chunk per part, and text in two pieces, as the real API streams it, so the CLI prints it as several
/// deltas. The last chunk carries the finish reason and the token counts.
fn render_sse(parts: Vec<Value>) -> String {
    let mut pieces = Vec::new();
    for part in parts {
        match part["text"].as_str() {
            Some(text) => {
                let middle = (0..=text.len() / 2)
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                let halves = [&text[..middle], &text[middle..]];
                pieces.extend(
                    halves
                        .into_iter()
                        .filter(|h| !h.is_empty())
                        .map(|h| json!({ "text": h })),
                );
            }
            None => pieces.push(part),
        }
    }
    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| format!("data: {}\n\n", candidate(vec![piece], i + 1 == count)))
        .collect()
}

fn last_content_has_function_response(request: &Value) -> bool {
    request
        .get("contents")
        .and_then(Value::as_array)
        .and_then(|contents| contents.last())
        .and_then(|content| content.get("parts"))
        .and_then(Value::as_array)
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()))
}

/// The workspace as the CLI describes it: `- **Workspace Directories:**` followed by `  - <path>` lines.
fn workspace_directory(request: &Value) -> Option<String> {
    let text = conversation_text(request);
    let (_, after) = text.split_once("Workspace Directories:")?;
    after
        .lines()
        .skip(1)
        .map(str::trim)
        .find_map(|line| line.strip_prefix("- ").filter(|p| p.starts_with('/')))
        .map(String::from)
}

/// Every text of the request's conversation (`contents`), flattened, to look for what an earlier turn said.
pub fn conversation_text(request: &Value) -> String {
    super::all_text(&request["contents"])
}
