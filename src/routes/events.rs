//! `GET /events` and `GET /jobs/{jobId}/events`: attach to a job's log, replaying after `Last-Event-ID` or
//! `?after=N`, then following it live.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::{auth, error::ApiError, sse, worker::JobHandle, worker::Worker};

#[derive(Deserialize)]
pub struct Query {
    after: Option<String>,
}

pub async fn events(
    req: HttpRequest,
    query: web::Query<Query>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job().ok_or(ApiError::NoJob)?;
    attach(&req, &query, &job, &worker)
}

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
        return Ok(HttpResponse::NoContent().finish());
    }
    let from = after.map_or(0, |id| id.saturating_add(1));
    let reader = job.log.reader(from)?;
    Ok(sse::response(reader, worker.settings.keepalive, None))
}

/// The last id the client has: the `Last-Event-ID` header (what a browser's EventSource sends on reconnect) wins
/// over `?after=`.
pub fn after(req: &HttpRequest, query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let header = req.headers().get("Last-Event-ID").map(|v| v.to_str().unwrap_or("?"));
    match (header, query) {
        (Some(h), _) => parse_id("Last-Event-ID", h).map(Some),
        (None, Some(q)) => parse_id("after", q).map(Some),
        (None, None) => Ok(None),
    }
}

fn parse_id(field: &str, raw: &str) -> Result<u64, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::invalid(field, format!("{field} must be an event id (a whole number)")))
}
