//! `GET /health`: 200 whenever the process serves, busy or not, with each provider's availability.

use std::{collections::BTreeMap, sync::Arc};

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::{availability::ProviderStatus, worker::Worker};

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Always `ok`: a busy worker is healthy.
    #[schema(value_type = String)]
    status: &'static str,
    #[schema(value_type = String)]
    version: &'static str,
    worker_id: String,
    /// By provider name.
    providers: BTreeMap<String, ProviderStatus>,
}

#[utoipa::path(get, path = "/health", tag = "worker",
    responses((status = 200, description = "The process serves (busy or not)", body = Health)))]
pub async fn health(worker: web::Data<Arc<Worker>>) -> HttpResponse {
    let providers = worker
        .availability
        .snapshot()
        .into_iter()
        .map(|(kind, status)| (kind.as_str().to_string(), status))
        .collect();
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        worker_id: worker.settings.worker_id.clone(),
        providers,
    })
}
