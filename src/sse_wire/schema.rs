//! The SSE event schema of the published documents: `SseEvent` (one message of a stream) and the `Event` union
//! its `data` holds, for every event type the worker or the gateway sends.

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
            <crate::event::Queued as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// The `type` of each `EventKind` variant, in declaration order (a unit test holds the two together).
pub const EVENT_TYPES: [&str; 20] = [
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
    "turn_started",
    "turn_completed",
    "turn_failed",
    "completed",
    "error",
];

/// `Event`: the untagged `EventKind` made into a union discriminated by `type` (each variant's fields plus the
/// envelope, with `type` fixed), and `queued`; `SseEvent.data` points at it. Done on the rendered document
/// because JSON Schema's `const` and `contentSchema` have no builder here.
pub fn describe_events(doc: &mut serde_json::Value) {
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
        "description": "An event as it appears in `data` (docs/events.md): the envelope (`type`, `seq`, `jobId`, `ts`) and the type's fields",
        "oneOf": one_of,
    });
    if let Some(sse) = schemas.get_mut("SseEvent") {
        sse["properties"]["data"]["contentMediaType"] = json!("application/json");
        sse["properties"]["data"]["contentSchema"] = json!({ "$ref": "#/components/schemas/Event" });
    }
}
