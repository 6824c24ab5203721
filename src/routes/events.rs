//! `GET /events` and `GET /jobs/{jobId}/events`: attach to a job's log, replaying after `Last-Event-ID` or
//! `?after=N`, then following it live.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::{auth, error::ApiError, http::last_event_id::after, sse, worker::JobHandle, worker::Worker};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// The last event id the client has (the `Last-Event-ID` header wins).
    #[param(value_type = Option<u64>)]
    after: Option<String>,
}

#[utoipa::path(get, path = "/events", tag = "worker",
    params(Query, ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "The last event id the client has")),
    responses(
        (status = 200, description = "Replay after the given id, then live", content_type = "text/event-stream", body = crate::sse_wire::schema::SseEvent),
        (status = 204, description = "The client already has the terminal event: stop reconnecting"),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job here (`no_job`, `job_not_found`)", body = crate::error::ErrorBody),
        (status = 410, description = "The events after that id were evicted from memory (`events_evicted`, `firstAvailable`)", body = crate::error::ErrorBody),
        (status = 422, description = "`Last-Event-ID` or `after` is not an event id", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn events(
    req: HttpRequest,
    query: web::Query<Query>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job().ok_or(ApiError::NoJob)?;
    attach(&req, &query, &job, &worker)
}

#[utoipa::path(get, path = "/jobs/{jobId}/events", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id"), Query,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "The last event id the client has")),
    responses(
        (status = 200, description = "Replay after the given id, then live", content_type = "text/event-stream", body = crate::sse_wire::schema::SseEvent),
        (status = 204, description = "The client already has the terminal event: stop reconnecting"),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job here (`no_job`, `job_not_found`)", body = crate::error::ErrorBody),
        (status = 410, description = "The events after that id were evicted from memory (`events_evicted`, `firstAvailable`)", body = crate::error::ErrorBody),
        (status = 422, description = "`Last-Event-ID` or `after` is not an event id", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn job_events(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<Query>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job_named(&path)?;
    attach(&req, &query, &job, &worker)
}

fn attach(req: &HttpRequest, query: &Query, job: &Arc<JobHandle>, worker: &Worker) -> Result<HttpResponse, ApiError> {
    let after = after(req, query.after.as_deref())?;
    // At or past the terminal event there is nothing left to send: 204 is how the SSE standard tells a client
    // (a browser's EventSource, say) to stop reconnecting, where an empty 200 would make it retry forever.
    if let (Some(after), Some(terminal)) = (after, job.log.terminal())
        && after >= terminal.seq
    {
        // The client has the terminal event: a worker waiting to hand it over may exit.
        job.log.mark_terminal_delivered();
        return Ok(HttpResponse::NoContent().finish());
    }
    let from = after.map_or(0, |id| id.saturating_add(1));
    let reader = job.log.reader(from)?;
    Ok(sse::response(
        reader,
        worker.settings.keepalive,
        None,
        crate::http::confirms_terminal(req),
    ))
}
