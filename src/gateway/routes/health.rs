//! `GET /health` of the gateway: up, how many workers it sees in each state, and whether its store answers. It says
//! nothing of jobs: it is open to anyone who can reach the gateway.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::gateway::{state::Gateway, store::StoreConfig};

#[utoipa::path(get, path = "/health", tag = "gateway",
    responses((status = 200, description = "`{\"status\":\"ok\",\"role\":\"gateway\",\"version\",\"workers\":{\"total\",\"idle\",\"busy\",\"down\"},\"store\":{\"kind\":\"memory|redis\",\"up\",\"sealed\"}}`; still 200 while the store is down (relays in flight go on); `sealed`: waiting requests are sealed in the store (`GATEWAY_STORE_KEY`)", body = Object)))]
pub async fn health(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    let workers = gw.fleet.workers();
    let count = |s: &str| workers.iter().filter(|w| w.state.as_str() == s).count();
    // A store that does not answer within its timeout is down; the gateway itself still serves what is in flight.
    let store_up = gw.store.ping().await.is_ok();
    // What an operator checks after rolling out the key: this gateway seals what it puts in line.
    let sealed = matches!(gw.settings.store, StoreConfig::Redis { seal: Some(_), .. });
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": "gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "workers": { "total": workers.len(), "idle": count("idle"), "busy": count("busy") + count("draining"), "down": count("down") },
        "store": { "kind": gw.store.kind(), "up": store_up, "sealed": sealed },
    }))
}
