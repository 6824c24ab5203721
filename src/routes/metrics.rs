//! `GET /metrics`: the worker's Prometheus metrics, open like `/health`.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::worker::Worker;

pub async fn metrics(worker: web::Data<Arc<Worker>>) -> HttpResponse {
    worker.metrics.response()
}
