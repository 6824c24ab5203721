//! A local stand-in for the OpenAI Responses API, so integration tests can run the **real** Codex CLI on a
//! machine without internet and still make it do real work: write a file in the workspace with its own
//! `apply_patch` tool, run a command, think, or fail with a chosen HTTP status.
//!
//! Point the CLI at it with a model provider in `$CODEX_HOME/config.toml` (`config_toml()` writes one, with the
//! CLI's retries turned off so that a refusal ends the run at once).
//!
//! Facts about Codex 0.169.0 this mock relies on (recorded against the real CLI):
//! * Every model call is `POST /v1/responses` with `stream: true` and the whole conversation in `input`: message
//!   items (`developer`, `user`, `assistant`), `function_call` / `function_call_output`, `custom_tool_call` /
//!   `custom_tool_call_output`. A custom provider with `wire_api = "responses"` calls no other endpoint.
//! * The answer is server-sent events: `response.created`, `response.output_item.added` / `.done` per output item,
//!   `response.output_text.delta`, and `response.completed` with the response `id` and `usage`.
//! * The workspace is named in a user message, inside `<environment_context>` as `<cwd>…</cwd>`; a resumed thread
//!   carries the old context and a newer one, so the newest wins.
//! * A `custom_tool_call` named `apply_patch` whose `input` is a patch (`*** Begin Patch` … `*** End Patch`) makes the
//!   CLI write the file itself (a `file_change` item); a `function_call` named `exec_command` with arguments
//!   `{"cmd": …}` runs a command (a `command_execution` item). The next request ends with the tool's output, so
//!   only the last input item decides which phase of a scripted reply we are in (older outputs stay in the history
//!   of a resumed thread).
//! * MCP tools are deferred: the first request names only their namespace (`mcp__<server>`, in a `<tools>` list
//!   of the prompt) and offers `tool_search` (a tool of type `tool_search`, executed by the client). A
//!   `tool_search_call` item makes the CLI answer with a `tool_search_output` listing the namespace and its
//!   functions; a `function_call` with `namespace: "mcp__<server>"` and the tool's `name` then calls it (an
//!   `mcp_tool_call` item), and the next request ends with its `function_call_output`.
//! * Request bodies start at ~40 KB (instructions and tool schemas), so actix-web's payload limit is raised.

#![allow(dead_code)]

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use serde_json::{Value, json};

pub use super::reply::Reply;

struct State {
    reply: Reply,
    requests: Vec<Value>,
    authorizations: Vec<String>,
    counter: u64,
}

type Shared = super::mock_server::Shared<State>;

use super::mock_server::MockServer;

pub struct MockOpenAi {
    server: MockServer,
    shared: Shared,
}

impl MockOpenAi {
    /// Starts the server on its own thread and actix `System` (tests are plain tokio tests) and returns once the
    /// port is bound.
    pub fn start(reply: Reply) -> MockOpenAi {
        let shared = Shared::new(State {
            reply,
            requests: Vec::new(),
            authorizations: Vec::new(),
            counter: 0,
        });
        let server = MockServer::start("mock-openai", shared.clone(), |cfg| {
            cfg.route("/v1/responses", web::post().to(responses))
                .default_service(web::to(not_found));
        });
        MockOpenAi { server, shared }
    }

    /// `http://127.0.0.1:PORT/v1`, a model provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr)
    }

    /// A Codex `config.toml` that makes this mock the model provider. The key comes from `OPENAI_API_KEY`, as the
    /// worker hands it to the CLI; retries are off so that a refusal ends the run within seconds.
    pub fn config_toml(&self) -> String {
        format!(
            "model_provider = \"mock\"\nmodel = \"gpt-5.5\"\n\n[model_providers.mock]\nname = \"Mock\"\n\
             base_url = \"{}\"\nwire_api = \"responses\"\nenv_key = \"OPENAI_API_KEY\"\n\
             stream_max_retries = 0\nrequest_max_retries = 0\n",
            self.base_url()
        )
    }

    /// JSON bodies of every `POST /v1/responses`, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().requests.clone()
    }

    /// The `Authorization` header of every request, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.shared.lock().authorizations.clone()
    }

    pub fn set_reply(&self, reply: Reply) {
        self.shared.lock().reply = reply;
    }
}

async fn responses(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
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
        state.counter += 1;
        (state.reply.clone(), state.counter)
    };
    let after_tool = last_input_is_tool_output(&request);
    let items = match reply {
        Reply::Status(code) => return error_response(code, &format!("mock: scripted status {code}")),
        Reply::Stall => return super::reply::stall().await,
        Reply::Text(text) => vec![message(n, &text)],
        Reply::ThinkingThenText { thinking, text } => vec![reasoning(n, &thinking), message(n, &text)],
        Reply::WriteFile { final_text, .. }
        | Reply::RunCommand { final_text, .. }
        | Reply::CallMcpTool { final_text, .. }
            if after_tool =>
        {
            vec![message(n, &final_text)]
        }
        Reply::CallMcpTool {
            server, tool, input, ..
        } => {
            let namespace = format!("mcp__{server}");
            if last_input_kind(&request) == Some("tool_search_output") {
                vec![json!({
                    "type": "function_call", "id": format!("fc_mock_{n}"), "call_id": format!("call_mock_{n}"),
                    "namespace": namespace, "name": tool, "arguments": input.to_string(),
                })]
            } else if request.to_string().contains(&namespace) {
                vec![json!({
                    "type": "tool_search_call", "id": format!("ts_mock_{n}"), "call_id": format!("call_mock_{n}"),
                    "execution": "client", "status": "completed",
                    "arguments": { "query": format!("{server} {tool}"), "limit": 8 },
                })]
            } else {
                vec![message(n, &format!("mock: no MCP server {server} offered"))]
            }
        }
        Reply::WriteFile { file_name, content, .. } => {
            let Some(cwd) = working_directory(&request) else {
                return error_response(400, "mock: no <cwd> in the request");
            };
            let added: String = content.lines().map(|line| format!("+{line}\n")).collect();
            let patch = format!(
                "*** Begin Patch\n*** Add File: {}/{file_name}\n{added}*** End Patch\n",
                cwd.trim_end_matches('/')
            );
            vec![
                message(n, &format!("Writing {file_name}.")),
                json!({"type": "custom_tool_call", "id": format!("ctc_mock_{n}"), "call_id": format!("call_mock_{n}"),
                       "name": "apply_patch", "input": patch}),
            ]
        }
        Reply::RunCommand { cmd, .. } => vec![json!({
            "type": "function_call", "id": format!("fc_mock_{n}"), "call_id": format!("call_mock_{n}"),
            "name": "exec_command", "arguments": json!({ "cmd": cmd }).to_string(),
        })],
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .body(render_sse(&format!("resp_mock_{n}"), &items))
}

async fn not_found() -> HttpResponse {
    error_response(404, "mock: no such endpoint")
}

fn error_response(code: u16, message: &str) -> HttpResponse {
    let (kind, error_code) = match code {
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        _ => ("server_error", "mock"),
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(json!({
        "error": { "message": message, "type": kind, "code": error_code, "param": null },
    }))
}

fn message(n: u64, text: &str) -> Value {
    json!({"type": "message", "id": format!("msg_mock_{n}_{}", text.len()), "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn reasoning(n: u64, summary: &str) -> Value {
    json!({"type": "reasoning", "id": format!("rs_mock_{n}"),
           "summary": [{"type": "summary_text", "text": summary}], "content": []})
}

fn sse_event(out: &mut String, data: &Value) {
    // `Value`'s Display is compact JSON: one `data:` line per event.
    let kind = data["type"].as_str().unwrap_or_default();
    out.push_str(&format!("event: {kind}\ndata: {data}\n\n"));
}

/// The event sequence of the real streaming API: each item added, its text as one delta, done; then completed.
fn render_sse(response_id: &str, items: &[Value]) -> String {
    let mut out = String::new();
    sse_event(
        &mut out,
        &json!({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}}),
    );
    for (index, item) in items.iter().enumerate() {
        let mut added = item.clone();
        if item["type"] == "message" {
            added["content"] = json!([]);
        }
        sse_event(
            &mut out,
            &json!({"type": "response.output_item.added", "output_index": index, "item": added}),
        );
        if let Some(text) = item["content"][0]["text"].as_str() {
            sse_event(
                &mut out,
                &json!({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                        "content_index": 0, "delta": text}),
            );
        }
        sse_event(
            &mut out,
            &json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }
    sse_event(
        &mut out,
        &json!({"type": "response.completed", "response": {"id": response_id, "status": "completed", "usage": {
            "input_tokens": 100, "input_tokens_details": {"cached_tokens": 20},
            "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 110,
        }}}),
    );
    out
}

fn last_input_kind(request: &Value) -> Option<&str> {
    request["input"]
        .as_array()
        .and_then(|items| items.last())
        .and_then(|item| item["type"].as_str())
}

fn last_input_is_tool_output(request: &Value) -> bool {
    last_input_kind(request).is_some_and(|kind| matches!(kind, "function_call_output" | "custom_tool_call_output"))
}

/// The CLI's working directory from the newest `<cwd>…</cwd>` of the conversation.
fn working_directory(request: &Value) -> Option<String> {
    request["input"].as_array()?.iter().rev().find_map(|item| {
        item["content"].as_array()?.iter().rev().find_map(|part| {
            let text = part["text"].as_str()?;
            let start = text.rfind("<cwd>")? + "<cwd>".len();
            let end = start + text[start..].find("</cwd>")?;
            Some(text[start..end].trim().to_string())
        })
    })
}

/// The texts of the conversation's messages, flattened, to look for an earlier turn in a resumed request.
pub fn conversation_text(request: &Value) -> String {
    let mut out = String::new();
    for item in request["input"].as_array().into_iter().flatten() {
        for part in item["content"].as_array().into_iter().flatten() {
            if let Some(text) = part["text"].as_str() {
                out.push_str(text);
                out.push('\n');
            }
        }
    }
    out
}
