//! What a mock model API answers, the same scenarios for every API: each mock renders them in its own wire format
//! (Anthropic Messages, OpenAI Responses, chat completions, Gemini) and says there how.

// Each test binary that includes this file uses a different subset of it.
#![allow(dead_code)]

use serde_json::Value;

#[derive(Clone, Debug)]
pub enum Reply {
    /// First request of a turn: a short message and the CLI's own file-writing tool creating
    /// `<working directory>/<file_name>` with `content`; the request carrying the tool's result: `final_text`.
    WriteFile {
        file_name: String,
        content: String,
        final_text: String,
    },
    /// First request of a turn: a shell command running `cmd`; the request carrying its output: `final_text`
    /// (every mock).
    RunCommand { cmd: String, final_text: String },
    /// Every conversation request: the model's reasoning, then the text (not the Gemini mock).
    ThinkingThenText { thinking: String, text: String },
    /// Every request: plain text.
    Text(String),
    /// Every request: this HTTP status with the API's own JSON error body.
    Status(u16),
    /// Every conversation request: no answer for ten minutes, as a model still at work, so a turn can be
    /// interrupted while it waits.
    Stall,
    /// A call of tool `tool` of MCP server `server` with `input`, under the name the CLI gives it (found or loaded
    /// first where the CLI defers MCP tools); the request carrying its result: `final_text`.
    CallMcpTool {
        server: String,
        tool: String,
        input: Value,
        final_text: String,
    },
}

/// What `Reply::Stall` answers, if the CLI is still there to hear it.
pub async fn stall() -> actix_web::HttpResponse {
    actix_web::rt::time::sleep(std::time::Duration::from_secs(600)).await;
    actix_web::HttpResponse::InternalServerError().body("mock: stalled")
}

impl Reply {
    /// What a mock answers a scenario its API does not script.
    pub fn unscripted(&self) -> String {
        format!("mock: {self:?} is not scripted for this API")
    }
}
