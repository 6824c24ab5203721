//! `GET /openapi.json` of the gateway: its published contract, generated from the handlers' annotations; a copy
//! is committed as `openapi-gateway.json`.

use actix_web::HttpResponse;

use crate::http::openapi::Bearer;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "unified-worker gateway", description = "The fleet's front door (docs/fleet.md): a FIFO line in front of one-job workers."),
    paths(
        super::execute::execute,
        super::page::page,
        super::health::health,
        super::fleet::fleet,
        super::fleet_events::fleet_events,
        super::metrics::metrics,
        super::jobs::list,
        super::job::job,
        super::events::events,
        super::cancel::cancel,
        super::permission::permission,
        super::conversation::message,
        super::conversation::interrupt,
        super::conversation::close,
        openapi_json,
    ),
    modifiers(&Bearer),
    tags((name = "gateway", description = "The fleet as one worker with N slots"), (name = "jobs", description = "Any job of the fleet by its id")),
)]
pub struct GatewayApi;

/// The gateway's document, rendered once.
pub static DOCUMENT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::http::openapi::render(<GatewayApi as utoipa::OpenApi>::openapi()));

#[utoipa::path(get, path = "/openapi.json", tag = "gateway",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}
