//! The gateway's HTTP routes, one file each: `POST /execute`, the dashboard at `/`, `/health`, `/fleet` and its feed,
//! `/metrics`, the job list `/jobs`, and for every job of the fleet the job-addressed `/jobs/{jobId}`,
//! `/jobs/{jobId}/events`, `/jobs/{jobId}/cancel`, `/jobs/{jobId}/permissions/{requestId}`,
//! `/jobs/{jobId}/messages`, `/jobs/{jobId}/interrupt` and `/jobs/{jobId}/close` (docs/api.md, docs/fleet.md).

mod cancel;
mod conversation;
mod events;
mod execute;
mod fleet;
mod fleet_events;
mod health;
mod job;
mod jobs;
mod metrics;
mod openapi;
mod page;
mod permission;

use actix_web::{http::Method, web};

use crate::http::{one, query_errors};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(query_errors())
        .service(one(Method::GET, "/", page::page))
        .service(one(Method::POST, "/execute", execute::execute))
        .service(one(Method::GET, "/health", health::health))
        .service(one(Method::GET, "/fleet", fleet::fleet))
        .service(one(Method::GET, "/fleet/events", fleet_events::fleet_events))
        .service(one(Method::GET, "/metrics", metrics::metrics))
        .service(one(Method::GET, "/jobs", jobs::list))
        .service(one(Method::GET, "/jobs/{job_id}", job::job))
        .service(one(Method::GET, "/jobs/{job_id}/events", events::events))
        .service(one(Method::POST, "/jobs/{job_id}/cancel", cancel::cancel))
        .service(one(
            Method::POST,
            "/jobs/{job_id}/permissions/{request_id}",
            permission::permission,
        ))
        .service(one(Method::POST, "/jobs/{job_id}/messages", conversation::message))
        .service(one(Method::POST, "/jobs/{job_id}/interrupt", conversation::interrupt))
        .service(one(Method::POST, "/jobs/{job_id}/close", conversation::close))
        .service(one(Method::GET, "/openapi.json", openapi::openapi_json));
}
