//! `GET /openapi.json`: the worker's published contract (OpenAPI 3.1), generated from the handlers' annotations
//! and the request, error and event types themselves. A copy is committed as `openapi.json`; a test fails when the
//! code and the copy disagree, so contract changes show in review.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::OpenApi;

use crate::http::openapi::{Bearer, render};

#[derive(OpenApi)]
#[openapi(
    info(title = "unified-worker", description = "One coding-assistant job per process, streamed as Server-Sent Events (docs/api.md, docs/events.md)."),
    paths(
        crate::dashboard::worker_page,
        super::execute::execute,
        super::events::events,
        super::events::job_events,
        super::cancel::cancel,
        super::cancel::cancel_named,
        super::permissions::answer,
        super::conversation::message,
        super::conversation::interrupt,
        super::conversation::close,
        super::jobs::job,
        super::status::status,
        super::health::health,
        super::metrics::metrics,
        openapi_json,
    ),
    modifiers(&Bearer),
    tags((name = "worker", description = "One job per process"), (name = "jobs", description = "A job by its id")),
)]
pub struct WorkerApi;

/// The worker's document, rendered once.
pub static WORKER: LazyLock<String> = LazyLock::new(|| render(WorkerApi::openapi()));

#[utoipa::path(get, path = "/openapi.json", tag = "worker",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(WORKER.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::sse_wire::schema::EVENT_TYPES;

    #[test]
    fn event_types_follow_the_variants_in_order() {
        let kinds = [
            EventKind::Connected {
                worker_id: String::new(),
                provider: String::new(),
                version: String::new(),
            },
            EventKind::info(""),
            EventKind::GithubPullProgress(Default::default()),
            EventKind::Session {
                session_id: String::new(),
            },
            EventKind::AssistantMessage { text: String::new() },
            EventKind::Thinking { text: String::new() },
            EventKind::ToolUse {
                id: String::new(),
                name: String::new(),
                input: serde_json::Value::Null,
            },
            EventKind::ToolResult {
                tool_use_id: String::new(),
                output: String::new(),
                is_error: false,
            },
            EventKind::PermissionRequest(Box::new(crate::event::PermissionRequest {
                request_id: String::new(),
                tool_call_id: None,
                title: String::new(),
                kind: None,
                input: None,
                diff: None,
                options: Vec::new(),
                timeout_seconds: 0,
                on_timeout: crate::approvals::OnTimeout::Reject,
            })),
            EventKind::PermissionResolved {
                request_id: String::new(),
                option_id: None,
                by: crate::event::ResolvedBy::Client,
            },
            EventKind::Plan { entries: Vec::new() },
            EventKind::unparsed_stdout(""),
            EventKind::GitChanges(Default::default()),
            EventKind::GitPush {
                branch: String::new(),
                commit: String::new(),
                remote: String::new(),
            },
            EventKind::PullRequest(crate::event::PullRequestRef {
                url: String::new(),
                number: 0,
            }),
            EventKind::TurnStarted {
                turn: 0,
                text: String::new(),
            },
            EventKind::TurnCompleted(Default::default()),
            EventKind::TurnFailed {
                turn: 0,
                code: crate::event::ErrorCode::Interrupted,
                message: String::new(),
            },
            EventKind::Completed(Default::default()),
            crate::event::Failure::new(crate::event::ErrorCode::Internal, "").into(),
        ];
        let names: Vec<&str> = kinds.iter().map(EventKind::type_name).collect();
        assert_eq!(names, EVENT_TYPES);
        let doc: serde_json::Value = serde_json::from_str(&WORKER).unwrap();
        let variants = doc["components"]["schemas"]["EventKind"]["oneOf"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(variants, EVENT_TYPES.len());
        assert_eq!(
            doc["components"]["schemas"]["Event"]["oneOf"].as_array().unwrap().len(),
            EVENT_TYPES.len() + 1
        );
    }
}
