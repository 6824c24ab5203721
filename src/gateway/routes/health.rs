//! `GET /health` of the gateway: up, and how many workers it sees in each state.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::gateway::state::Gateway;

#[utoipa::path(get, path = "/health", tag = "gateway",
    responses((status = 200, description = "`{\"status\":\"ok\",\"role\":\"gateway\",\"version\",\"workers\":{\"total\",\"idle\",\"busy\",\"down\"}}`", body = Object)))]
pub async fn health(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    let workers = gw.fleet.workers();
    let count = |s: &str| workers.iter().filter(|w| w.state.as_str() == s).count();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": "gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "workers": { "total": workers.len(), "idle": count("idle"), "busy": count("busy") + count("draining"), "down": count("down") },
    }))
}
