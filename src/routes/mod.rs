//! HTTP routes, one file each (SPEC §2).

pub mod body;
mod cancel;
pub mod events;
mod execute;
mod health;
mod jobs;
mod metrics;
mod status;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(crate::dashboard::worker_page))
        .route("/execute", web::post().to(execute::execute))
        .route("/events", web::get().to(events::events))
        .route("/cancel", web::post().to(cancel::cancel))
        .route("/status", web::get().to(status::status))
        .route("/health", web::get().to(health::health))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/jobs/{job_id}", web::get().to(jobs::job))
        .route("/jobs/{job_id}/events", web::get().to(events::job_events))
        .route("/jobs/{job_id}/cancel", web::post().to(cancel::cancel_named));
}
