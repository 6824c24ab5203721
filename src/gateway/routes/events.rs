//! `GET /jobs/{jobId}/events` at the gateway: a job's stream for a client that reconnects, through any gateway.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{
    auth,
    error::ApiError,
    gateway::{
        jobs::Found,
        relay::{self, Terminal},
        replay,
        state::Gateway,
    },
    http::last_event_id::after,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The last event id the client has (the `Last-Event-ID` header wins).
    #[param(value_type = Option<u64>)]
    after: Option<String>,
}

#[utoipa::path(get, path = "/jobs/{jobId}/events", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id"), EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "The last event id the client has")),
    responses(
        (status = 200, description = "Every event after the given id from the fleet's store (whether or not the worker or the relaying gateway still lives), then live ones, up to the terminal event; a job no store holds is proxied from its worker", content_type = "text/event-stream", body = crate::sse_wire::schema::SseEvent),
        (status = 204, description = "The client already has the terminal event: stop reconnecting"),
        (status = 410, description = "The events after that id are no longer held (`events_evicted`, `firstAvailable`): past GATEWAY_LOG_MAX_BYTES, or evicted from the worker's memory", body = crate::error::ErrorBody),
        (status = 503, description = "The fleet's store cannot be reached (`store_unavailable`); retry after Retry-After", body = crate::error::ErrorBody),
        (status = 422, description = "`Last-Event-ID` or `after` is not an event id", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No gateway record and no worker has it (`job_not_found`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn events(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &gw.settings.common)?;
    let job_id = path.into_inner();
    let after = after(&req, query.after.as_deref())?;
    // The store has every event a gateway relayed: served from there, whoever relayed it and whether or not its
    // worker still lives.
    let stored = gw.store.get(&job_id).await;
    if let Ok(Some(record)) = stored {
        return replay::serve(gw.get_ref().clone(), record, after).await;
    }
    let store_failed = stored.is_err();
    let retry_after = gw.settings.common.retry_after_seconds;
    // Not in the store (a gateway that keeps its own store in memory did not relay it, or the store is down):
    // the worker that runs it still has its events. A store that did not answer may well have it: that is a 503
    // to retry, not a 404 that tells the client to give up.
    let mut found = match gw.jobs.locate(&gw.fleet, &gw.upstream, &*gw.store, &job_id).await {
        Err(ApiError::JobNotFound { .. }) if store_failed => {
            return Err(ApiError::StoreUnavailable {
                retry_after_seconds: retry_after,
            });
        }
        found => found?,
    };
    // A waiting job: follow it until a worker has it. The client may also just reconnect later.
    if let Found::Queued = found {
        let mut moved = gw
            .jobs
            .follow(&job_id)
            .ok_or_else(|| ApiError::JobNotFound { job_id: job_id.clone() })?;
        while let Found::Queued = found {
            if moved.changed().await.is_err() {
                return Err(ApiError::JobNotFound { job_id });
            }
            found = gw.jobs.locate(&gw.fleet, &gw.upstream, &*gw.store, &job_id).await?;
        }
    }
    match found {
        Found::Queued => Err(ApiError::Internal),
        Found::Finished(terminal) => remembered(&terminal, after, store_failed, retry_after),
        Found::Running(worker) => {
            let mut upstream = gw
                .upstream
                .authorized(gw.upstream.client.get(format!("{worker}/jobs/{job_id}/events")));
            if let Some(after) = after {
                upstream = upstream.header("Last-Event-ID", after.to_string());
            }
            match upstream.send().await {
                Ok(resp) if resp.status() == 200 => {
                    let (out, body) = mpsc::channel(64);
                    let gw = gw.get_ref().clone();
                    let runtime = gw.runtime.clone();
                    runtime.spawn(async move {
                        let gone = gw.fleet.gone_signal(&worker);
                        let end = relay::relay(resp, &out, gone, false, after, None).await;
                        if end.terminal.is_none() && !end.client_gone {
                            // The driver of this job (if this gateway has it) writes the same `worker_lost`.
                            let terminal = gw
                                .jobs
                                .finished(&job_id)
                                .unwrap_or_else(|| relay::worker_lost(&job_id, end.last_id));
                            let _ = out.send(terminal.frame).await;
                        }
                    });
                    Ok(relay::sse_response(body))
                }
                Ok(resp) => {
                    // The worker no longer has it (or never had it): what this gateway remembers, else its answer.
                    if let Some(terminal) = gw.jobs.finished(&job_id) {
                        return remembered(&terminal, after, store_failed, retry_after);
                    }
                    Ok(relay::rejection(resp).await.into_response())
                }
                Err(_) => match gw.jobs.finished(&job_id) {
                    Some(terminal) => remembered(&terminal, after, store_failed, retry_after),
                    None => Err(ApiError::JobNotFound { job_id }),
                },
            }
        }
    }
}

/// The end of a job whose worker is gone, as this gateway remembers it: its terminal event, or 204 when the client
/// already has it (the SSE standard's way to stop a reconnecting client). Events between the client's and the
/// terminal one are never skipped: a store that did not answer may have them (503, retry), else they are gone with
/// the worker (410, from the terminal event on; persistence has them).
fn remembered(
    terminal: &Terminal,
    after: Option<u64>,
    store_failed: bool,
    retry_after_seconds: u64,
) -> Result<HttpResponse, ApiError> {
    if after.is_some_and(|a| a >= terminal.id) {
        return Ok(HttpResponse::NoContent().finish());
    }
    if after.map_or(0, |a| a + 1) < terminal.id {
        if store_failed {
            return Err(ApiError::StoreUnavailable { retry_after_seconds });
        }
        return Err(ApiError::EventsEvicted {
            first_available: terminal.id,
        });
    }
    Ok(relay::sse_headers(HttpResponse::Ok()).body(terminal.frame.clone()))
}
