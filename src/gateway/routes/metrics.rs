//! `GET /metrics` of the gateway.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::gateway::state::Gateway;

#[utoipa::path(get, path = "/metrics", tag = "gateway",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format", content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    gw.metrics.response(&gw.fleet)
}
