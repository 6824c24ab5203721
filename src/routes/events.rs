//! `GET /events`: attach to the current or last job's log, replaying after `Last-Event-ID` or `?after=N`.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::{auth, error::ApiError, sse, worker::Worker};

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
    // The header is what a browser's EventSource sends on reconnect, so it wins over the query.
    let header = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let after = match (header, &query.after) {
        (Some(h), _) => Some(parse_id("Last-Event-ID", &h)?),
        (None, Some(q)) => Some(parse_id("after", q)?),
        (None, None) => None,
    };
    let from = after.map_or(0, |id| id.saturating_add(1));
    let reader = job.log.reader(from)?;
    Ok(sse::response(reader, worker.settings.keepalive, None))
}

fn parse_id(field: &str, raw: &str) -> Result<u64, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::invalid(field, format!("{field} must be an event id (a whole number)")))
}
