//! The published contract (`GET /openapi.json`, OpenAPI 3.1), generated from the handlers' annotations and the
//! request, error and event types themselves. A copy is committed as `openapi.json` (and `openapi-gateway.json`);
//! a test fails when the code and the copies disagree, so contract changes show in review.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "unified-worker", description = "One coding-assistant job per process, streamed as Server-Sent Events (SPEC §2–§4)."),
    paths(
        crate::dashboard::worker_page,
        routes::execute::execute,
        routes::events::events,
        routes::events::job_events,
        routes::cancel::cancel,
        routes::cancel::cancel_named,
        routes::permissions::answer,
        routes::jobs::job,
        routes::status::status,
        routes::health::health,
        routes::metrics::metrics,
        openapi_json,
    ),
    modifiers(&Bearer),
    tags((name = "worker", description = "One job per process"), (name = "jobs", description = "A job by its id")),
)]
pub struct WorkerApi;

pub struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("WORKER_API_TOKEN, when the worker has one"))
                    .build(),
            ),
        );
    }
}

/// The worker's document, rendered once.
pub static WORKER: LazyLock<String> = LazyLock::new(|| render(WorkerApi::openapi()));

pub fn render(mut api: utoipa::openapi::OpenApi) -> String {
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut doc = serde_json::to_value(&api).unwrap_or_default();
    describe_events(&mut doc);
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Each SSE message of a stream, as SSE tools validate it: `id` (absent on a gateway's `queued`), `event` (the
/// type) and `data`, one line of JSON whose schema is `Event`.
pub struct SseEvent;

impl utoipa::PartialSchema for SseEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("One SSE message; `data` is the event as JSON (schema `Event`)"))
            .property(
                "id",
                ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$")),
            )
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(EVENT_TYPES.iter().copied().chain(["queued"]))),
            )
            .property("data", ObjectBuilder::new().schema_type(Type::String))
            .required("event")
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for SseEvent {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push((
            "Envelope".into(),
            <crate::event::Envelope as utoipa::PartialSchema>::schema(),
        ));
        <crate::event::EventKind as utoipa::ToSchema>::schemas(schemas);
        schemas.push((
            "EventKind".into(),
            <crate::event::EventKind as utoipa::PartialSchema>::schema(),
        ));
        schemas.push((
            "Queued".into(),
            <crate::gateway::Queued as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// The `type` of each `EventKind` variant, in declaration order (a unit test holds the two together).
const EVENT_TYPES: [&str; 17] = [
    "connected",
    "message",
    "github_pull_progress",
    "session",
    "assistant_message",
    "thinking",
    "tool_use",
    "tool_result",
    "permission_request",
    "permission_resolved",
    "plan",
    "log",
    "git_changes",
    "git_push",
    "pull_request",
    "completed",
    "error",
];

/// `Event`: the untagged `EventKind` made into a union discriminated by `type` (each variant's fields plus the
/// envelope, with `type` fixed), and `queued`; `SseEvent.data` points at it. Done on the rendered document
/// because JSON Schema's `const` and `contentSchema` have no builder here.
fn describe_events(doc: &mut serde_json::Value) {
    use serde_json::json;
    let schemas = &mut doc["components"]["schemas"];
    let variants = schemas["EventKind"]["oneOf"].as_array().cloned().unwrap_or_default();
    let mut one_of: Vec<serde_json::Value> = variants
        .into_iter()
        .zip(EVENT_TYPES)
        .map(|(fields, name)| {
            json!({
                "title": name,
                "allOf": [
                    fields,
                    {
                        "type": "object",
                        "required": ["type", "seq", "jobId", "ts"],
                        "properties": {
                            "type": { "const": name },
                            "seq": { "type": "integer", "minimum": 0, "description": "= the SSE id; from 0, no gaps" },
                            "jobId": { "type": "string" },
                            "ts": { "type": "string", "format": "date-time" }
                        }
                    }
                ]
            })
        })
        .collect();
    one_of.push(json!({ "title": "queued", "$ref": "#/components/schemas/Queued" }));
    schemas["Event"] = json!({
        "description": "An event of SPEC §4 as it appears in `data`: the envelope (`type`, `seq`, `jobId`, `ts`) and the type's fields",
        "oneOf": one_of,
    });
    if let Some(sse) = schemas.get_mut("SseEvent") {
        sse["properties"]["data"]["contentMediaType"] = json!("application/json");
        sse["properties"]["data"]["contentSchema"] = json!({ "$ref": "#/components/schemas/Event" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

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

#[utoipa::path(get, path = "/openapi.json", tag = "worker",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(WORKER.as_str())
}
