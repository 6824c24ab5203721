//! `GET /health`: 200 whenever the process serves, busy or not, with each provider's availability.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::{Map, json};

use crate::worker::Worker;

pub async fn health(worker: web::Data<Arc<Worker>>) -> HttpResponse {
    let providers: Map<String, serde_json::Value> = worker
        .availability
        .snapshot()
        .into_iter()
        .map(|(kind, status)| (kind.as_str().to_string(), json!(status)))
        .collect();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "workerId": worker.settings.worker_id,
        "providers": providers,
    }))
}
