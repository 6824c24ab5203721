//! `GET /status`: the phase and the current job, open without a token and free of secrets.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::{event::timestamp, worker::Worker};

pub async fn status(worker: web::Data<Arc<Worker>>) -> HttpResponse {
    let job = worker.job();
    HttpResponse::Ok().json(json!({
        "status": worker.phase().as_str(),
        "jobId": job.as_ref().map(|j| j.id.clone()),
        "provider": job.as_ref().map(|j| j.provider.as_str()),
        "startedAt": job.as_ref().map(|j| timestamp(j.started_at)),
        "lastEventId": job.as_ref().and_then(|j| j.log.last_seq()),
    }))
}
