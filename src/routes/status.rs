//! `GET /status`: the phase and the current job, open without a token and free of secrets.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::{event::timestamp, worker::Worker};

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `idle`, `busy` or `draining`.
    #[schema(value_type = String)]
    status: &'static str,
    /// The current or last job.
    job_id: Option<String>,
    #[schema(value_type = Option<String>)]
    provider: Option<&'static str>,
    started_at: Option<String>,
    last_event_id: Option<u64>,
}

#[utoipa::path(get, path = "/status", tag = "worker",
    responses((status = 200, description = "The worker's phase and its current or last job", body = Status)))]
pub async fn status(worker: web::Data<Arc<Worker>>) -> HttpResponse {
    let job = worker.job();
    HttpResponse::Ok().json(Status {
        status: worker.phase().as_str(),
        job_id: job.as_ref().map(|j| j.id.clone()),
        provider: job.as_ref().map(|j| j.provider.as_str()),
        started_at: job.as_ref().map(|j| timestamp(j.started_at)),
        last_event_id: job.as_ref().and_then(|j| j.log.last_seq()),
    })
}
