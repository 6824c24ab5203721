//! `POST /jobs/{jobId}/cancel` at the gateway: a waiting job leaves the line; a running one is cancelled on its
//! worker.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::{
    auth,
    error::ApiError,
    gateway::{jobs::Found, state::Gateway},
};

#[utoipa::path(post, path = "/jobs/{jobId}/cancel", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Leaving the line (its stream ends with `cancelled`), or cancelled on its worker", body = crate::http::jobs::Cancelling),
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
    match gw.jobs.locate(&gw.fleet, &gw.upstream, &*gw.store, &job_id).await? {
        Found::Queued => {
            // Waiting here: it leaves the line at once. Waiting in another gateway's line: the store carries the
            // request to that gateway, which sees it within a second.
            if !gw.jobs.cancel_queued(&job_id) {
                gw.store.request_cancel(&job_id).await.map_err(|e| {
                    tracing::warn!(%job_id, error = %e, "store unavailable for a cancel");
                    ApiError::StoreUnavailable {
                        retry_after_seconds: gw.settings.common.retry_after_seconds,
                    }
                })?;
            }
            Ok(HttpResponse::Accepted().json(json!({ "status": "cancelling", "jobId": job_id })))
        }
        Found::Finished(_) => Err(ApiError::NotRunning),
        Found::Running(worker) => {
            let req = gw.upstream.client.post(format!("{worker}/jobs/{job_id}/cancel"));
            gw.upstream.forward(req, job_id).await
        }
    }
}
