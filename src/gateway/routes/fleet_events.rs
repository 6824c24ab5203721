//! The fleet as one document: `GET /fleet` answers it once; `GET /fleet/events` streams it (SSE, `event: fleet`)
//! at once and again whenever a worker, the line or the last hour's history changes — what the dashboard shows.
//!
//! A feed rather than polling: the fleet already signals its changes, so an open page costs nothing while nothing
//! happens, sees a worker turn busy within milliseconds instead of up to a second, and the browser's EventSource
//! reconnects by itself.

use std::{sync::Arc, time::Duration};

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::{sync::mpsc, time::Instant};

use crate::gateway::{relay, state::Gateway};
use crate::{auth, error::ApiError, event::timestamp, sse_wire};

/// A change usually comes in a burst (a dispatch touches the line, the worker and the counters): one snapshot
/// after the burst rather than one per step.
const SETTLE: Duration = Duration::from_millis(100);

/// Sent again at least this often: counters that move without a fleet change (a full line's 429s) still show, and
/// the connection never looks idle to a proxy.
const REFRESH: Duration = Duration::from_secs(5);

/// Workers, line, counters and the last hour, with the gateway's clock (`now`) so that a page can show elapsed
/// times without trusting its own clock.
pub fn snapshot(gw: &Gateway) -> Value {
    let workers: Vec<Value> = gw
        .fleet
        .workers()
        .into_iter()
        .map(|w| {
            json!({
                "address": w.address, "state": w.state.as_str(), "jobId": w.job_id, "provider": w.provider,
                "since": timestamp(w.since),
            })
        })
        .collect();
    let line = gw.fleet.line();
    let waiting: Vec<Value> = line
        .iter()
        .enumerate()
        .map(|(i, (job_id, waited))| json!({ "jobId": job_id, "position": i + 1, "waitMs": waited.as_millis() as u64 }))
        .collect();
    let m = &gw.metrics;
    json!({
        "now": timestamp(std::time::SystemTime::now()),
        "workers": workers,
        "queue": {
            "length": line.len(),
            "oldestWaitMs": line.first().map(|(_, waited)| waited.as_millis() as u64),
            "jobs": waiting,
        },
        "counters": {
            "dispatched": m.dispatches.get(),
            "busyRetries": m.busy_retries.get(),
            "workerLost": m.worker_lost.get(),
            "queueTimeouts": m.queue_timeouts.get(),
            "queueFull": m.queue_full.get(),
        },
        "history": gw.history.snapshot(),
    })
}

/// `GET /fleet/events`: the bearer token like `/fleet` (it shows the same), ends when the gateway shuts down.
#[utoipa::path(get, path = "/fleet/events", tag = "gateway",
    responses(
        (status = 200, description = "The `/fleet` document as Server-Sent Events (`event: fleet`, no `id`): at once, after every change of the workers, the line or the history, and at least every 5 s", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn fleet_events(req: HttpRequest, gw: web::Data<Arc<Gateway>>) -> Result<HttpResponse, ApiError> {
    // The workers' internal addresses, job ids and the line are not for anyone who can reach the gateway.
    auth::require_token(&req, &gw.settings.common)?;
    let (out, body) = mpsc::channel(4);
    let gw = gw.get_ref().clone();
    gw.runtime.clone().spawn(follow(gw, out));
    Ok(relay::sse_response(body))
}

async fn follow(gw: Arc<Gateway>, out: mpsc::Sender<Bytes>) {
    let mut fleet = gw.fleet.subscribe();
    let mut history = gw.history.subscribe();
    let refresh = REFRESH.min(gw.settings.common.keepalive).max(SETTLE);
    loop {
        fleet.mark_unchanged();
        history.mark_unchanged();
        let json = snapshot(&gw).to_string();
        if out
            .send(sse_wire::encode(None, "fleet", &json).0.freeze())
            .await
            .is_err()
        {
            return;
        }
        let next = Instant::now() + refresh;
        tokio::select! {
            changed = fleet.changed() => if changed.is_err() { return },
            changed = history.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep_until(next) => continue,
            _ = gw.shutdown.cancelled() => return,
            _ = out.closed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(SETTLE) => {}
            _ = gw.shutdown.cancelled() => return,
            _ = out.closed() => return,
        }
    }
}
