//! A job's stream served from the store, for a client that reconnects through any gateway: every event after its
//! `Last-Event-ID`, then the live ones as the relaying gateway writes them, up to and including the terminal
//! event — whether or not the worker, or the gateway that relayed the job, still lives.

use std::{sync::Arc, time::Duration};

use actix_web::HttpResponse;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{
    relay::{self, Terminal},
    state::Gateway,
    store::{JobPhase, JobRecord, Read, StoredEvent},
};
use crate::error::ApiError;

/// Frames buffered towards a slow client before the reader waits for it.
const OUT_FRAMES: usize = 64;
/// How often a follower of a waiting job looks whether its place changed.
const QUEUED_LOOK: Duration = Duration::from_millis(500);
/// A store that failed is asked again after this long; the client gets a keep-alive meanwhile.
const RETRY: Duration = Duration::from_millis(500);

/// The response to `GET /jobs/{jobId}/events` for a job the store knows.
pub async fn serve(gw: Arc<Gateway>, record: JobRecord, after: Option<u64>) -> Result<HttpResponse, ApiError> {
    // At or past the terminal event there is nothing left: 204 stops a reconnecting EventSource.
    if let (Some(terminal), Some(after)) = (record.terminal_id, after)
        && after >= terminal
    {
        return Ok(HttpResponse::NoContent().finish());
    }
    // Read once before the answer starts, so that what is no longer held is a 410, not a silent gap.
    let first = match gw.store.read(&record.job_id, after, Duration::ZERO).await {
        Ok(Read::Events(events)) => events,
        Ok(Read::Evicted { first_available }) => return Err(ApiError::EventsEvicted { first_available }),
        Err(e) => {
            tracing::warn!(job_id = %record.job_id, error = %e, "store unavailable for a replay");
            return Err(ApiError::StoreUnavailable {
                retry_after_seconds: gw.settings.common.retry_after_seconds,
            });
        }
    };
    // The record may not say finished yet while the store already has the terminal event the client names.
    if first.is_empty()
        && let Some(after) = after
        && super::jobs::stored_terminal(&*gw.store, &record.job_id, after)
            .await
            .is_some()
    {
        return Ok(HttpResponse::NoContent().finish());
    }
    let (out, body) = mpsc::channel(OUT_FRAMES);
    let runtime = gw.runtime.clone();
    runtime.spawn(follow(gw, record.job_id, after, first, out));
    Ok(relay::sse_response(body))
}

pub(crate) async fn follow(
    gw: Arc<Gateway>,
    job_id: String,
    mut last: Option<u64>,
    first: Vec<StoredEvent>,
    out: mpsc::Sender<Bytes>,
) {
    let keepalive = gw.settings.common.keepalive;
    let mut pending = first;
    // A job still in the fleet's line says where it stands, as its own stream does, whenever that changes.
    let mut told = None;
    let mut last_write = tokio::time::Instant::now();
    loop {
        let place = if last.is_none() && pending.is_empty() {
            gw.fleet.place_of(&job_id)
        } else {
            None
        };
        if place.is_none() {
            told = None;
        }
        if let Some((place, _)) = place {
            let shown = (place.position, place.length);
            if told != Some(shown) {
                told = Some(shown);
                if out.send(relay::queued(&job_id, place)).await.is_err() {
                    return;
                }
                last_write = tokio::time::Instant::now();
            }
        }
        for event in pending.drain(..) {
            let terminal = Terminal::of_frame(event.id, event.frame.clone()).is_some();
            last = Some(event.id);
            if out.send(event.frame).await.is_err() || terminal {
                return;
            }
        }
        let wait = if told.is_some() { QUEUED_LOOK } else { keepalive };
        match gw.store.read(&job_id, last, wait).await {
            Ok(Read::Events(events)) if !events.is_empty() => pending = events,
            Ok(Read::Events(_)) => {
                // A quiet keep-alive interval: is there still something to wait for?
                match gw.store.get(&job_id).await {
                    // Forgotten (its client left before it started) or past the memory time.
                    Ok(None) => return,
                    // Finished: the terminal event may have been written just after the read above timed out,
                    // so one more look; without it, end as a stream that broke (the reconnect gets the rest).
                    Ok(Some(record)) if record.state == JobPhase::Finished => {
                        if let Ok(Read::Events(events)) = gw.store.read(&job_id, last, Duration::ZERO).await
                            && !events.is_empty()
                        {
                            pending = events;
                            continue;
                        }
                        return;
                    }
                    _ => {}
                }
                if last_write.elapsed() >= keepalive {
                    if out.send(relay::KEEP_ALIVE).await.is_err() {
                        return;
                    }
                    last_write = tokio::time::Instant::now();
                }
            }
            // The client fell behind the store's bound: end, so that its reconnect is answered 410.
            Ok(Read::Evicted { .. }) => return,
            Err(e) => {
                tracing::debug!(%job_id, error = %e, "store read failed; retrying");
                if out.send(relay::KEEP_ALIVE).await.is_err() {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
