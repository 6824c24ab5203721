//! `GET /fleet`: the fleet as one document, as the dashboard's feed streams it.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::{auth, error::ApiError, gateway::state::Gateway};

#[utoipa::path(get, path = "/fleet", tag = "gateway",
    responses(
        (status = 200, description = "The gateway's clock (now), workers (address, state, jobId, provider, since), the line (length, oldestWaitMs, jobs), counters, and the last hour per minute (history)", body = Object),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn fleet(req: HttpRequest, gw: web::Data<Arc<Gateway>>) -> Result<HttpResponse, ApiError> {
    // The workers' internal addresses, job ids and the line are not for anyone who can reach the gateway.
    auth::require_token(&req, &gw.settings.common)?;
    Ok(HttpResponse::Ok().json(super::fleet_events::snapshot(&gw)))
}
