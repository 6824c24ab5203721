//! `GET /jobs/{jobId}`: where this worker's job stands — running, or finished with its terminal event.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::{auth, error::ApiError, event::timestamp, worker::Worker};

pub async fn job(
    req: HttpRequest,
    path: web::Path<String>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job_named(&path)?;
    let terminal = job
        .log
        .terminal()
        .and_then(|frame| serde_json::from_slice::<Value>(&frame.json()).ok());
    Ok(HttpResponse::Ok().json(json!({
        "jobId": job.id,
        "state": if terminal.is_some() { "finished" } else { "running" },
        "provider": job.provider.as_str(),
        "worker": worker.settings.worker_id,
        "startedAt": timestamp(job.started_at),
        "lastEventId": job.log.last_seq(),
        "terminal": terminal,
    })))
}
