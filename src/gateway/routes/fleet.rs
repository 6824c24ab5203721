//! `GET /fleet`: the fleet as one document, as the dashboard's feed streams it.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::gateway::state::Gateway;

#[utoipa::path(get, path = "/fleet", tag = "gateway",
    responses((status = 200, description = "The gateway's clock (now), workers (address, state, jobId, provider, since), the line (length, oldestWaitMs, jobs), counters, and the last hour per minute (history)", body = Object)))]
pub async fn fleet(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    HttpResponse::Ok().json(super::fleet_events::snapshot(&gw))
}
