//! HTTP routes, one file each (SPEC §2).

pub mod body;
pub mod cancel;
pub mod events;
pub mod execute;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod permissions;
pub mod status;

use actix_web::{http::Method, web};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(query_errors())
        .service(one(Method::GET, "/", crate::dashboard::worker_page))
        .service(one(Method::POST, "/execute", execute::execute))
        .service(one(Method::GET, "/events", events::events))
        .service(one(Method::POST, "/cancel", cancel::cancel))
        .service(one(Method::GET, "/status", status::status))
        .service(one(Method::GET, "/health", health::health))
        .service(one(Method::GET, "/metrics", metrics::metrics))
        .service(one(Method::GET, "/openapi.json", crate::openapi::openapi_json))
        .service(one(Method::GET, "/jobs/{job_id}", jobs::job))
        .service(one(Method::GET, "/jobs/{job_id}/events", events::job_events))
        .service(one(Method::POST, "/jobs/{job_id}/cancel", cancel::cancel_named))
        .service(one(
            Method::POST,
            "/jobs/{job_id}/permissions/{request_id}",
            permissions::answer,
        ));
}

/// A path with its one method; any other method gets 405 with `Allow`, not the 404 of an unknown path.
pub fn one<F, Args>(method: Method, path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow = method.as_str().to_string();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move {
                actix_web::HttpResponse::MethodNotAllowed()
                    .insert_header(("Allow", allow.as_str()))
                    .json(crate::error::ErrorBody {
                        error: crate::error::ErrorDetail {
                            code: "method_not_allowed",
                            message: format!("this path answers {allow} only"),
                            field: None,
                            first_available: None,
                        },
                        status: None,
                    })
            }
        }))
}

/// A query string that cannot be read (bad percent-encoding, a wrong type) is a JSON 422 naming it, like any other
/// field, not actix's plain-text 400.
pub fn query_errors() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _| crate::error::ApiError::invalid("query", format!("query string: {err}")).into())
}
