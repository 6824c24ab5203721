//! `POST /execute` at the gateway: the worker's own checks (token, content type, size, validation) answer at once;
//! then the request takes an idle worker or a place in line, and its stream carries `queued` events until a
//! worker takes it, then the worker's events byte for byte — ending, on every path, with one terminal event.

use std::{sync::Arc, time::Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::gateway::{
    fleet::Ticket,
    history::Outcome,
    jobs::JobState,
    journal::{Journal, LEASE_TTL},
    relay::{self, Dispatch, Rejection, Terminal},
    state::Gateway,
    store::{JobPhase, JobRecord, now_ms},
};
use crate::{auth, error::ApiError, event::ErrorCode, http::body, request};

/// Frames buffered towards a slow client before the relay waits for it (and the worker's stream with it).
const OUT_FRAMES: usize = 64;

#[utoipa::path(post, path = "/execute", tag = "gateway",
    request_body(content = crate::request::RawRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "`queued` events (no id) while the job waits, then the worker's event stream as it sent it; exactly one terminal event, last",
            content_type = "text/event-stream", body = crate::sse_wire::schema::SseEvent),
        (status = 400, description = "Not JSON, or a wrong JSON type (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_SECONDS (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid, or the jobId is already waiting or running; `field` names it", body = crate::error::ErrorBody),
        (status = 429, description = "The line is full (GATEWAY_QUEUE_MAX); retry after Retry-After", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security((), ("bearer" = [])))]
pub async fn execute(
    req: HttpRequest,
    payload: web::Payload,
    gw: web::Data<Arc<Gateway>>,
) -> Result<HttpResponse, ApiError> {
    let settings = &gw.settings.common;
    auth::require_token(&req, settings)?;
    body::require_json(&req)?;
    let raw = body::read(&req, payload, settings.max_body_bytes).await?;
    let parsed = request::parse(&raw, settings)?;
    let job = JobSpec {
        body: with_job_id(&raw, &parsed.job_id),
        stop_with_client: parsed.cancel_on_disconnect,
        provider: parsed.provider.as_str().to_string(),
        id: parsed.job_id.into(),
    };
    // The store decides whether the id is free, fleet-wide; a store that cannot answer takes nothing new.
    let record = JobRecord::queued(&job.id, &job.provider);
    match gw.store.create(&record).await {
        Ok(Ok(())) => {}
        Ok(Err(existing)) => {
            return Err(ApiError::JobExists {
                job_id: job.id,
                state: existing.state.as_str(),
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable; request refused");
            return Err(ApiError::StoreUnavailable {
                retry_after_seconds: settings.retry_after_seconds,
            });
        }
    }
    // From here the job is this gateway's: its journal writes it to the store, and holds its lease so that another
    // gateway sees it if this one dies. A job that goes no further is forgotten through the journal too.
    let journal = Journal::start(gw.store.clone(), job.id.clone(), gw.settings.log_max_bytes);
    if let Err(e) = gw.store.lease(&job.id, &gw.owner, LEASE_TTL).await {
        tracing::warn!(job_id = %job.id, error = %e, "could not take the job's lease yet");
    }
    journal.hold_lease(&gw.owner);
    let Ok(cancel) = gw.jobs.open(&job.id) else {
        // Only a store that lost the record while this gateway still runs the job gets here.
        journal.forget();
        return Err(ApiError::JobExists {
            job_id: job.id,
            state: "running",
        });
    };
    let ticket = match gw.fleet.admit(&job.id) {
        Ok(t) => t,
        Err(_) => {
            gw.jobs.forget(&job.id);
            journal.forget();
            gw.metrics.queue_full.inc();
            return Err(ApiError::Busy {
                phase: crate::error::Phase::Busy,
                retry_after_seconds: settings.retry_after_seconds,
            });
        }
    };
    journal.watch_cancel(cancel.clone());
    let (head_tx, head_rx) = oneshot::channel();
    let (out, body) = mpsc::channel(OUT_FRAMES);
    let driver = Driver {
        gw: gw.get_ref().clone(),
        job,
        record,
        journal,
        cancel,
        head: Some(head_tx),
        out,
        admitted: Instant::now(),
    };
    gw.runtime.spawn(driver.run(ticket));
    match head_rx.await {
        Ok(Head::Stream) => Ok(relay::sse_response(body)),
        Ok(Head::Refused(rejection)) => Ok(rejection.into_response()),
        Err(_) => Err(ApiError::Internal),
    }
}

/// The gateway names every job before it waits, so that it can be followed and cancelled while in line: a body
/// without `jobId` gets the id validation chose, spliced in so that every other byte is the client's.
fn with_job_id(raw: &Bytes, job_id: &str) -> Bytes {
    let value: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
    if value.get("jobId").is_some() {
        return raw.clone();
    }
    // Validation accepted the body, so it is an object: its first non-blank byte is `{`.
    let Some(open) = raw.iter().position(|b| *b == b'{') else {
        return raw.clone();
    };
    let mut out = Vec::with_capacity(raw.len() + job_id.len() + 12);
    out.extend_from_slice(&raw[..=open]);
    out.extend_from_slice(b"\"jobId\":");
    out.extend_from_slice(serde_json::to_string(job_id).unwrap_or_default().as_bytes());
    out.push(b',');
    out.extend_from_slice(&raw[open + 1..]);
    Bytes::from(out)
}

struct JobSpec {
    id: String,
    body: Bytes,
    stop_with_client: bool,
    provider: String,
}

enum Head {
    Stream,
    Refused(Rejection),
}

struct Driver {
    gw: Arc<Gateway>,
    job: JobSpec,
    /// The job's record in the store, moved along with the job.
    record: JobRecord,
    /// Every event this gateway writes or relays for the job, on its way to the store.
    journal: Journal,
    cancel: CancellationToken,
    /// Until the response has begun: whether it is a stream or a refusal passed on from the worker.
    head: Option<oneshot::Sender<Head>>,
    out: mpsc::Sender<Bytes>,
    admitted: Instant,
}

enum Waited {
    Assigned(String),
    ClientGone,
    Ended(Terminal),
}

impl Driver {
    async fn run(mut self, mut ticket: Ticket) {
        let mut waited = false;
        loop {
            let address = match ticket.try_assigned() {
                Some(address) => address,
                None => match self.wait_in_line(&mut ticket).await {
                    Waited::Assigned(address) => address,
                    Waited::ClientGone => {
                        self.gw.jobs.forget(&self.job.id);
                        self.journal.forget();
                        return;
                    }
                    Waited::Ended(terminal) => return self.end(terminal).await,
                },
            };
            if !waited {
                waited = true;
                self.gw.metrics.waited(self.admitted.elapsed());
                self.gw.history.waited(self.admitted.elapsed());
                self.record.queue_wait_ms = Some(self.admitted.elapsed().as_millis() as u64);
            }
            match relay::dispatch(&self.gw.upstream, &address, self.job.body.clone()).await {
                Dispatch::Stream(resp) => {
                    // Out of the line only now: until a worker took the job, it kept its place.
                    drop(ticket);
                    return self.relay(&address, resp).await;
                }
                Dispatch::Busy => {
                    tracing::info!(worker = %address, job_id = %self.job.id, "worker answered 429 although it looked idle; trying the next");
                    self.gw.metrics.busy_retries.inc();
                    self.gw.fleet.refused_busy(&address);
                }
                Dispatch::Unreachable(error) => {
                    tracing::warn!(worker = %address, error = %error, "worker unreachable at dispatch; trying the next");
                    self.gw.fleet.unreachable(&address);
                }
                Dispatch::Refused(rejection) => {
                    drop(ticket);
                    self.gw.fleet.release(&address);
                    return self.refused(rejection).await;
                }
            }
            ticket.retry();
        }
    }

    fn start_stream(&mut self) {
        if let Some(head) = self.head.take() {
            let _ = head.send(Head::Stream);
        }
    }

    async fn wait_in_line(&mut self, ticket: &mut Ticket) -> Waited {
        self.start_stream();
        let deadline = tokio::time::Instant::from_std(self.admitted + self.gw.settings.queue_timeout);
        let mut changes = self.gw.fleet.subscribe();
        let mut told = None;
        let keepalive = self.gw.settings.common.keepalive;
        let mut last_write = tokio::time::Instant::now();
        loop {
            if let Some(place) = self.gw.fleet.place(ticket.id) {
                let shown = (place.position, place.length);
                if told != Some(shown) {
                    told = Some(shown);
                    if self.out.send(relay::queued(&self.job.id, place)).await.is_err() {
                        return Waited::ClientGone;
                    }
                    last_write = tokio::time::Instant::now();
                }
            }
            tokio::select! {
                biased;
                address = ticket.assigned() => match address {
                    Some(address) => return Waited::Assigned(address),
                    None => return Waited::Ended(self.gateway_error(ErrorCode::Internal, "the gateway lost this request's place in line")),
                },
                _ = self.cancel.cancelled() => {
                    return Waited::Ended(self.gateway_error(ErrorCode::Cancelled, "cancelled while waiting for a worker"));
                }
                _ = self.gw.shutdown.cancelled() => {
                    return Waited::Ended(self.gateway_error(ErrorCode::Shutdown, "the gateway is shutting down; send the request again"));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.gw.metrics.queue_timeouts.inc();
                    let message = format!("no worker became free within {}s", self.gw.settings.queue_timeout.as_secs_f64());
                    return Waited::Ended(self.gateway_error(ErrorCode::QueueTimeout, &message));
                }
                _ = self.out.closed() => return Waited::ClientGone,
                changed = changes.changed() => if changed.is_err() { return Waited::ClientGone },
                _ = tokio::time::sleep_until(last_write + keepalive) => {
                    if self.out.send(relay::KEEP_ALIVE).await.is_err() {
                        return Waited::ClientGone;
                    }
                    last_write = tokio::time::Instant::now();
                }
            }
        }
    }

    fn gateway_error(&self, code: ErrorCode, message: &str) -> Terminal {
        relay::terminal_error(&self.job.id, 0, code.as_str(), message, code.retryable())
    }

    async fn relay(mut self, address: &str, resp: reqwest::Response) {
        // Counted before the fleet changes, so that the fleet feed's snapshot of that change includes it.
        self.gw.metrics.dispatches.inc();
        self.gw.fleet.started(address, &self.job.id, &self.job.provider);
        self.gw.jobs.move_to(
            &self.job.id,
            JobState::Running {
                worker: address.to_string(),
            },
        );
        tracing::info!(worker = %address, job_id = %self.job.id, "dispatched");
        self.record.state = JobPhase::Running;
        self.record.worker = Some(address.to_string());
        self.record.started_at = Some(now_ms());
        // Written before the first event is relayed, so that a gateway taking this relay over knows the worker.
        // A store out of reach is no reason to hold the job back: the journal writes it once the store answers.
        if let Err(e) = self.gw.store.update(&self.record).await {
            tracing::warn!(job_id = %self.job.id, error = %e, "could not record the dispatch yet");
        }
        // Through the journal as well: it writes it if the store did not answer, and stops watching for a cancel
        // asked elsewhere (one for a running job goes to its worker).
        self.journal.record(self.record.clone());
        self.start_stream();
        let gone = self.gw.fleet.gone_signal(address);
        let end = relay::relay(
            resp,
            &self.out,
            gone,
            self.job.stop_with_client,
            None,
            Some(&self.journal),
        )
        .await;
        self.gw.fleet.stream_ended(address);
        if let Some(terminal) = end.terminal {
            self.finished(terminal);
            return;
        }
        if end.client_gone && self.job.stop_with_client {
            // The worker cancels the job because its client left (`cancelOnDisconnect`); it holds the end.
            self.gw.history.finished(Outcome::Cancelled);
            self.gw.jobs.forget(&self.job.id);
            self.journal.forget();
            return;
        }
        tracing::warn!(worker = %address, job_id = %self.job.id, "the worker's stream broke before its terminal event");
        self.gw.metrics.worker_lost.inc();
        let lost = relay::worker_lost(&self.job.id, end.last_id);
        self.end(lost).await;
    }

    async fn refused(mut self, rejection: Rejection) {
        if let Some(head) = self.head.take() {
            self.gw.jobs.forget(&self.job.id);
            self.journal.forget();
            let _ = head.send(Head::Refused(rejection));
            return;
        }
        let (code, message) = rejection.code_and_message();
        let terminal = relay::terminal_error(&self.job.id, 0, &code, &message, false);
        self.end(terminal).await;
    }

    /// Sends the gateway's own terminal event and remembers it.
    async fn end(mut self, terminal: Terminal) {
        self.start_stream();
        self.journal.event(terminal.stored());
        let _ = self.out.send(terminal.frame.clone()).await;
        self.finished(terminal);
    }

    /// The job's end, whoever wrote its terminal event: kept for `GET /jobs/{jobId}…` and counted for the chart.
    fn finished(mut self, terminal: Terminal) {
        self.gw.history.finished(Outcome::of_terminal(&terminal.json));
        terminal.finish(&mut self.record);
        self.journal.record(self.record.clone());
        self.gw.jobs.move_to(&self.job.id, JobState::Finished { terminal });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_job_id_is_spliced_in_and_everything_else_kept() {
        let raw = Bytes::from_static(b" {\"userRequest\":\"x\",\"codingAssistantProvider\":\"cursor\"}");
        let out = with_job_id(&raw, "j-1");
        assert_eq!(
            &out[..],
            &b" {\"jobId\":\"j-1\",\"userRequest\":\"x\",\"codingAssistantProvider\":\"cursor\"}"[..]
        );
        let given = Bytes::from_static(b"{\"jobId\":\"mine\",\"userRequest\":\"x\"}");
        assert_eq!(with_job_id(&given, "other"), given);
    }
}
