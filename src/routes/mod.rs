//! HTTP routes, one file each (SPEC §2).

mod cancel;
mod events;
mod execute;
mod health;
mod status;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/execute", web::post().to(execute::execute))
        .route("/events", web::get().to(events::events))
        .route("/cancel", web::post().to(cancel::cancel))
        .route("/status", web::get().to(status::status))
        .route("/health", web::get().to(health::health));
}
