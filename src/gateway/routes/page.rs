//! `GET /` of the gateway: the fleet dashboard.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::{
    dashboard::{self, Role},
    gateway::state::Gateway,
};

#[utoipa::path(get, path = "/", tag = "gateway",
    responses((status = 200, description = "The dashboard: workers, the line, the last hour, and any job's stream (an HTML page; open, it holds no secret)", content_type = "text/html", body = String)))]
pub async fn page(gw: web::Data<Arc<Gateway>>) -> HttpResponse {
    dashboard::page(Role::Fleet, &gw.settings.common)
}
