//! `GET /jobs/{jobId}`: any job of the fleet: waiting here, running on a worker, or finished.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::{
    auth,
    error::ApiError,
    gateway::{jobs::Found, state::Gateway},
};

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
    Ok(
        match gw.jobs.locate(&gw.fleet, &gw.upstream, &*gw.store, &job_id).await? {
            Found::Queued => match gw.fleet.place_of(&job_id) {
                Some((place, waited)) => HttpResponse::Ok().json(json!({
                    "jobId": job_id, "state": "queued", "position": place.position, "queueLength": place.length,
                    "waitMs": waited.as_millis() as u64,
                })),
                // Waiting in another gateway's line: the store's record is what this gateway knows.
                None => HttpResponse::Ok().json(json!({ "jobId": job_id, "state": "queued" })),
            },
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
        },
    )
}
