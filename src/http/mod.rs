//! What the worker's and the gateway's HTTP servers both use: one method per path, query errors as JSON,
//! `TCP_NODELAY`, request bodies and their deadline, `Last-Event-ID`, the permission answer's body and the OpenAPI helpers. Both
//! servers sit above this module; it names neither.

pub mod body;
pub mod deadline;
pub mod jobs;
pub mod last_event_id;
pub mod openapi;

use actix_web::{http::Method, web};

/// A client that sends this header on `POST /execute` or `GET /jobs/{jobId}/events` (the gateway does) confirms the
/// terminal event itself, with `GET /jobs/{jobId}/events` and `Last-Event-ID: <terminal id>` once it has kept it;
/// writing the terminal event to its connection does not count as delivered. A peer that vanished without closing
/// its connection (a killed container) swallows writes without an error, and a one-job worker that took that for
/// delivery would exit with events nobody kept (docs/fleet.md).
pub const CONFIRMS_TERMINAL: &str = "x-confirms-terminal";

/// Whether the request's client confirms the terminal event itself.
pub fn confirms_terminal(req: &actix_web::HttpRequest) -> bool {
    req.headers().contains_key(CONFIRMS_TERMINAL)
}

/// What both servers are built with: `TCP_NODELAY`, the front door's bounds (docs/configuration.md: a head within
/// BODY_TIMEOUT_SECONDS of the connection, the body within it of the head — `http::deadline`, which each app wraps —
/// an idle connection no longer than KEEP_ALIVE_SECONDS, at most MAX_CONNECTIONS at once, a closing connection's
/// leftovers read for at most a second), few threads (more would only cost idle memory on hosts with many cores),
/// and no signal handling of actix's own: each server drains its own way on SIGTERM. A macro, because
/// `HttpServer`'s builder is generic over types that actix-web does not name for its users.
macro_rules! front_door {
    ($server:expr, $settings:expr) => {
        $server
            .on_connect($crate::http::no_delay)
            .client_request_timeout($settings.body_timeout)
            .client_disconnect_timeout(std::time::Duration::from_secs(1))
            .keep_alive($settings.keep_alive)
            .max_connections($settings.max_connections_per_thread())
            .workers($crate::settings::HTTP_THREADS)
            .disable_signals()
    };
}
pub(crate) use front_door;

/// Small SSE frames go out at once: with Nagle's algorithm a frame written while the previous one is unacknowledged
/// waits for the client's delayed ACK (up to 40 ms), which showed as the p99 of the event latency.
pub fn no_delay(conn: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Err(e) = tcp.set_nodelay(true)
    {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
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
            async move { actix_web::ResponseError::error_response(&crate::error::ApiError::MethodNotAllowed { allow }) }
        }))
}

/// A query string that cannot be read (bad percent-encoding, a wrong type) is a JSON 422 naming it, like any other
/// field, not actix's plain-text 400.
pub fn query_errors() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _| crate::error::ApiError::invalid("query", format!("query string: {err}")).into())
}
