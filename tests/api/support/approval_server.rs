//! A stand-in for a worker that runs a job with approvals (docs/approvals.md), for testing `exec`'s side before a worker
//! asks real questions: `POST /execute` answers a stream of `connected` and one `permission_request`, then waits.
//! `POST /jobs/{jobId}/permissions/{requestId}` records the answer and lets the stream go on with
//! `permission_resolved` and `completed`; so does `resolve_by_timeout`, as the worker's timeout would.
//!
//! The server itself is `mock_server`'s.

#![allow(dead_code)]

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use futures_util::stream;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::support::PATIENCE;
use crate::support::mock_server::{MockServer, Shared};

pub const REQUEST_ID: &str = "perm-1";

/// One answer as the server received it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub job_id: String,
    pub request_id: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// How the question was settled: the stream's `permission_resolved` says this.
#[derive(Clone, Debug)]
enum Resolution {
    Client(String),
    Timeout,
}

struct State {
    executed: Vec<Value>,
    answers: Vec<Answer>,
    /// What the answer endpoint says: 200, or 409 as if another client had answered first.
    answer_status: u16,
    resolution: Option<Resolution>,
    settled: Arc<Notify>,
}

pub struct ApprovalServer {
    pub base: String,
    state: Shared<State>,
    _server: MockServer,
}

/// The question every job asks, as in the wire contract.
pub fn question() -> Value {
    json!({
        "type": "permission_request",
        "requestId": REQUEST_ID,
        "toolCallId": "toolu_1",
        "title": "Write hello.txt",
        "kind": "edit",
        "input": {"file_path": "/w/hello.txt", "content": "hi\n"},
        "diff": {"path": "/w/hello.txt", "oldText": null, "newText": "hi\n"},
        "options": [
            {"optionId": "allow_once", "name": "Allow once", "kind": "allow_once"},
            {"optionId": "allow_always", "name": "Always allow", "kind": "allow_always"},
            {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"}
        ],
        "timeoutSeconds": 300,
        "onTimeout": "reject"
    })
}

impl ApprovalServer {
    /// `answer_status` 409 makes every answer come too late: the question is then resolved by "another client"
    /// with `reject_once`.
    pub fn start(answer_status: u16) -> ApprovalServer {
        let state = Shared::new(State {
            executed: Vec::new(),
            answers: Vec::new(),
            answer_status,
            resolution: None,
            settled: Arc::new(Notify::new()),
        });
        let server = MockServer::start("approval-server", state.clone(), |cfg| {
            cfg.route("/execute", web::post().to(execute))
                .route("/jobs/{job}/permissions/{request}", web::post().to(answer));
        });
        ApprovalServer {
            base: format!("http://{}", server.addr),
            state,
            _server: server,
        }
    }

    pub fn executed(&self) -> Vec<Value> {
        self.state.lock().executed.clone()
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.state.lock().answers.clone()
    }

    /// Waits for the first answer.
    pub async fn answer(&self) -> Answer {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(answer) = self.answers().first() {
                return answer.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no answer arrived");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Settles the question as the worker's timeout would (with `onTimeout` reject).
    pub fn resolve_by_timeout(&self) {
        let mut state = self.state.lock();
        state.resolution.get_or_insert(Resolution::Timeout);
        state.settled.notify_one();
    }
}

async fn execute(state: web::Data<Shared<State>>, body: web::Json<Value>) -> HttpResponse {
    let body = body.into_inner();
    let job_id = body["jobId"].as_str().unwrap_or("job").to_string();
    let settled = {
        let mut s = state.lock();
        s.executed.push(body);
        s.settled.clone()
    };
    let state = state.get_ref().clone();
    let (tx, rx) = mpsc::unbounded_channel::<web::Bytes>();
    actix_web::rt::spawn(async move {
        let mut seq = 0;
        let mut send = |mut event: Value| {
            event["seq"] = json!(seq);
            event["jobId"] = json!(job_id);
            event["ts"] = json!("2026-11-20T12:00:00.000Z");
            let frame = format!(
                "id: {seq}\nevent: {}\ndata: {event}\n\n",
                event["type"].as_str().unwrap_or("")
            );
            seq += 1;
            let _ = tx.send(web::Bytes::from(frame));
        };
        send(json!({"type": "connected", "workerId": "fake", "provider": "copilot", "version": "0"}));
        send(question());
        // notify_one keeps a permit when nobody waits yet, so a resolution between the check and the wait is seen.
        let resolution = loop {
            if let Some(resolution) = state.lock().resolution.take() {
                break resolution;
            }
            settled.notified().await;
        };
        let (option, by) = match resolution {
            Resolution::Client(option) => (json!(option), "client"),
            Resolution::Timeout => (json!("reject_once"), "timeout"),
        };
        send(json!({"type": "permission_resolved", "requestId": REQUEST_ID, "optionId": option, "by": by}));
        send(
            json!({"type": "completed", "sessionId": "s1", "result": "done", "durationMs": 1200, "numTurns": 1,
            "costUsd": null, "usage": {"inputTokens": 1, "outputTokens": 1, "cacheReadTokens": 0,
            "cacheCreationTokens": 0}, "changes": null, "pullRequest": null}),
        );
    });
    let body = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok::<_, actix_web::Error>(frame), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body)
}

async fn answer(
    state: web::Data<Shared<State>>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let (job_id, request_id) = path.into_inner();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = state.lock();
    state.answers.push(Answer {
        job_id,
        request_id: request_id.clone(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: body.clone(),
    });
    let status = state.answer_status;
    let option = if status == 409 {
        "reject_once".to_string()
    } else {
        body["optionId"].as_str().unwrap_or_default().to_string()
    };
    state.resolution.get_or_insert(Resolution::Client(option.clone()));
    state.settled.notify_one();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if status == StatusCode::OK {
        HttpResponse::Ok().json(json!({"requestId": request_id, "optionId": option}))
    } else {
        HttpResponse::build(status)
            .json(json!({"error": {"code": "already_answered", "message": "the question was already answered"}}))
    }
}
