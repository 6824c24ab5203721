//! The worker's HTTP routes, one file each (docs/api.md).

pub mod cancel;
pub mod conversation;
pub mod events;
pub mod execute;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod permissions;
pub mod status;

use actix_web::{http::Method, web};

use crate::http::{one, query_errors};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(query_errors())
        .service(one(Method::GET, "/", crate::dashboard::worker_page))
        .service(one(Method::POST, "/execute", execute::execute))
        .service(one(Method::GET, "/events", events::events))
        .service(one(Method::POST, "/cancel", cancel::cancel))
        .service(one(Method::GET, "/status", status::status))
        .service(one(Method::GET, "/health", health::health))
        .service(one(Method::GET, "/metrics", metrics::metrics))
        .service(one(Method::GET, "/openapi.json", openapi::openapi_json))
        .service(one(Method::GET, "/jobs/{job_id}", jobs::job))
        .service(one(Method::GET, "/jobs/{job_id}/events", events::job_events))
        .service(one(Method::POST, "/jobs/{job_id}/cancel", cancel::cancel_named))
        .service(one(
            Method::POST,
            "/jobs/{job_id}/permissions/{request_id}",
            permissions::answer,
        ))
        .service(one(Method::POST, "/jobs/{job_id}/messages", conversation::message))
        .service(one(Method::POST, "/jobs/{job_id}/interrupt", conversation::interrupt))
        .service(one(Method::POST, "/jobs/{job_id}/close", conversation::close));
}
