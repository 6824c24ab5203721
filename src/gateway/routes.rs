//! The gateway's own endpoints besides `POST /execute`: the dashboard at `/`, `/health`, `/fleet` (and its feed),
//! `/metrics`, and the job-addressed `/jobs/{jobId}`, `/jobs/{jobId}/events` and `/jobs/{jobId}/cancel` for every
//! job of the fleet.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Gateway, jobs::Place, relay};
use actix_web::http::Method;

use crate::{
    auth,
    dashboard::{self, Role},
    error::ApiError,
    openapi::Bearer,
    routes::{events::after, one, query_errors},
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(query_errors())
        .service(one(Method::GET, "/", page))
        .service(one(Method::POST, "/execute", super::execute::execute))
        .service(one(Method::GET, "/health", health))
        .service(one(Method::GET, "/fleet", fleet))
        .service(one(Method::GET, "/fleet/events", super::feed::fleet_events))
        .service(one(Method::GET, "/metrics", metrics))
        .service(one(Method::GET, "/jobs/{job_id}", job))
        .service(one(Method::GET, "/jobs/{job_id}/events", events))
        .service(one(Method::POST, "/jobs/{job_id}/cancel", cancel))
        .service(one(Method::POST, "/jobs/{job_id}/permissions/{request_id}", permission))
        .service(one(Method::GET, "/openapi.json", openapi_json));
}

#[utoipa::path(get, path = "/health", tag = "gateway",
    responses((status = 200, description = "`{\"status\":\"ok\",\"role\":\"gateway\",\"version\",\"workers\":{\"total\",\"idle\",\"busy\",\"down\"}}`", body = Object)))]
pub async fn health(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    let workers = gw.fleet.workers();
    let count = |s: &str| workers.iter().filter(|w| w.state.as_str() == s).count();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": "gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "workers": { "total": workers.len(), "idle": count("idle"), "busy": count("busy") + count("draining"), "down": count("down") },
    }))
}

#[utoipa::path(get, path = "/", tag = "gateway",
    responses((status = 200, description = "The dashboard: workers, the line, the last hour, and any job's stream (an HTML page; open, it holds no secret)", content_type = "text/html", body = String)))]
pub async fn page(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    dashboard::page(Role::Fleet, &gw.settings.common)
}

#[utoipa::path(get, path = "/fleet", tag = "gateway",
    responses((status = 200, description = "The gateway's clock (now), workers (address, state, jobId, provider, since), the line (length, oldestWaitMs, jobs), counters, and the last hour per minute (history)", body = Object)))]
pub async fn fleet(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    HttpResponse::Ok().json(super::feed::snapshot(&gw))
}

#[utoipa::path(get, path = "/metrics", tag = "gateway",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    gw.metrics.response(&gw.fleet)
}

/// Where a job is: this gateway's own record, else the worker whose `/status` names it.
enum Found {
    Queued,
    Running(String),
    Finished(super::jobs::Terminal),
}

async fn locate(gw: &Gateway, job_id: &str) -> Result<Found, ApiError> {
    match gw.jobs.get(job_id).map(|(place, _)| place) {
        Some(Place::Queued) => return Ok(Found::Queued),
        Some(Place::Running { worker }) => return Ok(Found::Running(worker)),
        Some(Place::Finished { terminal }) => return Ok(Found::Finished(terminal)),
        None => {}
    }
    // Another gateway dispatched it (or this one restarted): the workers know.
    if let Some(worker) = gw.fleet.worker_with_job(job_id) {
        return Ok(Found::Running(worker));
    }
    for w in gw.fleet.workers() {
        let req = gw
            .upstream
            .authorized(gw.upstream.client.get(format!("{}/jobs/{job_id}", w.address)));
        if req.send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(Found::Running(w.address));
        }
    }
    Err(ApiError::JobNotFound {
        job_id: job_id.to_string(),
    })
}

#[utoipa::path(get, path = "/jobs/{jobId}", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "`queued` (position, queueLength, waitMs), the worker's answer plus `address`, or `finished` with its terminal event", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No gateway record and no worker has it (`job_not_found`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn job(
    req: HttpRequest,
    path: web::Path<String>,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let job_id = path.into_inner();
    Ok(match locate(&gw, &job_id).await? {
        Found::Queued => {
            let (place, since) = gw
                .fleet
                .place_of(&job_id)
                .ok_or_else(|| ApiError::JobNotFound { job_id: job_id.clone() })?;
            HttpResponse::Ok().json(json!({
                "jobId": job_id, "state": "queued", "position": place.position, "queueLength": place.length,
                "waitMs": since.elapsed().as_millis() as u64,
            }))
        }
        Found::Running(worker) => {
            let req = gw
                .upstream
                .authorized(gw.upstream.client.get(format!("{worker}/jobs/{job_id}")));
            let mut body: Value = match req.send().await {
                Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
                _ => json!({ "jobId": job_id, "state": "running" }),
            };
            body["address"] = json!(worker);
            HttpResponse::Ok().json(body)
        }
        Found::Finished(terminal) => {
            let terminal: Value = serde_json::from_slice(&terminal.json).unwrap_or_default();
            HttpResponse::Ok().json(json!({ "jobId": job_id, "state": "finished", "terminal": terminal }))
        }
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The last event id the client has (the `Last-Event-ID` header wins).
    #[param(value_type = Option<u64>)]
    after: Option<String>,
}

#[utoipa::path(get, path = "/jobs/{jobId}/events", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id"), EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "The last event id the client has")),
    responses(
        (status = 200, description = "The rest of the job's stream (proxied from its worker), or the remembered terminal event once the worker is gone", content_type = "text/event-stream", body = crate::openapi::SseEvent),
        (status = 204, description = "The client already has the terminal event: stop reconnecting"),
        (status = 410, description = "The events after that id were evicted from the worker's memory", body = crate::error::ErrorBody),
        (status = 422, description = "`Last-Event-ID` or `after` is not an event id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No gateway record and no worker has it (`job_not_found`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn events(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let job_id = path.into_inner();
    let after = after(&req, query.after.as_deref())?;
    let mut found = locate(&gw, &job_id).await?;
    // A waiting job: follow it until a worker has it. The client may also just reconnect later.
    if let Found::Queued = found {
        let mut moved = gw
            .jobs
            .follow(&job_id)
            .ok_or_else(|| ApiError::JobNotFound { job_id: job_id.clone() })?;
        while let Found::Queued = found {
            if moved.changed().await.is_err() {
                return Err(ApiError::JobNotFound { job_id });
            }
            found = locate(&gw, &job_id).await?;
        }
    }
    match found {
        Found::Queued => Err(ApiError::Internal),
        Found::Finished(terminal) => Ok(remembered(&terminal, after)),
        Found::Running(worker) => {
            let mut upstream = gw
                .upstream
                .authorized(gw.upstream.client.get(format!("{worker}/jobs/{job_id}/events")));
            if let Some(after) = after {
                upstream = upstream.header("Last-Event-ID", after.to_string());
            }
            match upstream.send().await {
                Ok(resp) if resp.status() == 200 => {
                    let (out, body) = mpsc::channel(64);
                    let gw = gw.get_ref().clone();
                    let runtime = gw.runtime.clone();
                    runtime.spawn(async move {
                        let gone = gw.fleet.gone_signal(&worker);
                        let end = relay::relay(resp, &out, gone, false, after).await;
                        if end.terminal.is_none() && !end.client_gone {
                            // The driver of this job (if this gateway has it) writes the same `worker_lost`.
                            let terminal = gw.jobs.finished(&job_id).unwrap_or_else(|| {
                                let id = end.last_id.map_or(0, |l| l + 1);
                                relay::terminal_error(
                                    &job_id,
                                    id,
                                    "worker_lost",
                                    "the worker's stream ended before the job's terminal event (the worker was lost)",
                                    true,
                                )
                            });
                            let _ = out.send(terminal.frame).await;
                        }
                    });
                    Ok(super::sse_response(body))
                }
                Ok(resp) => {
                    // The worker no longer has it (or never had it): what this gateway remembers, else its answer.
                    if let Some(terminal) = gw.jobs.finished(&job_id) {
                        return Ok(remembered(&terminal, after));
                    }
                    Ok(relay::rejection(resp).await.into_response())
                }
                Err(_) => match gw.jobs.finished(&job_id) {
                    Some(terminal) => Ok(remembered(&terminal, after)),
                    None => Err(ApiError::JobNotFound { job_id }),
                },
            }
        }
    }
}

/// The end of a job whose worker is gone: its terminal event, or 204 when the client already has it (the SSE
/// standard's way to stop a reconnecting client).
fn remembered(terminal: &super::jobs::Terminal, after: Option<u64>) -> HttpResponse {
    if after.is_some_and(|a| a >= terminal.id) {
        return HttpResponse::NoContent().finish();
    }
    let mut body = Vec::new();
    if after.is_some_and(|a| a + 1 < terminal.id) {
        // The events in between went by with the worker; persistence has them.
        body.extend_from_slice(b": the events before the terminal one are no longer held here\n\n");
    }
    body.extend_from_slice(&terminal.frame);
    super::sse_headers(HttpResponse::Ok()).body(Bytes::from(body))
}

#[utoipa::path(post, path = "/jobs/{jobId}/cancel", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Leaving the line (its stream ends with `cancelled`), or cancelled on its worker", body = crate::routes::cancel::Cancelling),
        (status = 409, description = "The job is not running any more (`not_running`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No gateway record and no worker has it (`job_not_found`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let job_id = path.into_inner();
    match locate(&gw, &job_id).await? {
        Found::Queued => {
            if !gw.jobs.cancel_queued(&job_id) {
                return Err(ApiError::NotRunning);
            }
            Ok(HttpResponse::Accepted().json(json!({ "status": "cancelling", "jobId": job_id })))
        }
        Found::Finished(_) => Err(ApiError::NotRunning),
        Found::Running(worker) => {
            let req = gw.upstream.client.post(format!("{worker}/jobs/{job_id}/cancel"));
            forward(&gw, req, job_id).await
        }
    }
}

#[utoipa::path(post, path = "/jobs/{jobId}/permissions/{requestId}", tag = "jobs",
    params(
        ("jobId" = String, Path, description = "The job's id"),
        ("requestId" = String, Path, description = "The `requestId` of the `permission_request` event"),
    ),
    request_body(content = crate::routes::permissions::PermissionAnswer, content_type = "application/json"),
    responses(
        (status = 200, description = "Taken by the job's worker; a `permission_resolved` event follows", body = crate::routes::permissions::PermissionAnswered),
        (status = 400, description = "The body is not JSON (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job (`job_not_found`) or request (`permission_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "Already answered, timed out or withdrawn (`already_answered`), or the job is not running (`not_running`)", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = crate::error::ErrorBody),
        (status = 422, description = "`optionId` missing or not one of the request's options", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
/// Forwarded to the worker that runs the job; its answer (200, 404, 409, 422) is passed back as it is.
pub async fn permission(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let (job_id, request_id) = path.into_inner();
    // Checked here too, so that a bad body costs the worker nothing.
    let answer = crate::routes::permissions::read_answer(&req, payload).await?;
    match locate(&gw, &job_id).await? {
        // A job in the line has not started, so it has asked nothing yet.
        Found::Queued => Err(ApiError::PermissionNotFound { request_id }),
        Found::Finished(_) => Err(ApiError::NotRunning),
        Found::Running(worker) => {
            let url = format!("{worker}/jobs/{job_id}/permissions/{request_id}");
            forward(&gw, gw.upstream.client.post(url).json(&answer), job_id).await
        }
    }
}

/// A request about a running job, sent to its worker with the gateway's credentials; the worker's answer is the
/// client's. A worker that cannot be reached no longer has the job.
async fn forward(gw: &Gateway, req: reqwest::RequestBuilder, job_id: String) -> Result<HttpResponse, ApiError> {
    match gw.upstream.authorized(req).send().await {
        Ok(resp) => Ok(relay::rejection(resp).await.into_response()),
        Err(_) => Err(ApiError::JobNotFound { job_id }),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "unified-worker gateway", description = "The fleet's front door (SPEC §13): a FIFO line in front of one-job workers."),
    paths(super::execute::execute, page, health, fleet, super::feed::fleet_events, metrics, job, events, cancel, permission, openapi_json),
    modifiers(&Bearer),
    tags((name = "gateway", description = "The fleet as one worker with N slots"), (name = "jobs", description = "Any job of the fleet by its id")),
)]
pub struct GatewayApi;

/// The gateway's document, rendered once.
pub static DOCUMENT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::openapi::render(<GatewayApi as utoipa::OpenApi>::openapi()));

#[utoipa::path(get, path = "/openapi.json", tag = "gateway",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}
