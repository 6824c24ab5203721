//! `GET /metrics`: the worker's Prometheus metrics, open like `/health`.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::worker::Worker;

#[utoipa::path(get, path = "/metrics", tag = "worker",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format",
        content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(worker: web::Data<Arc<Worker>>) -> HttpResponse {
    worker.metrics.response()
}
