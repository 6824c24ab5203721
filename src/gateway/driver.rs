//! One job's way through this gateway: its wait in the fleet's line (with `queued` events for its client), its
//! hand-over to a worker (back at the head of the line if the worker refuses), the relay of the worker's stream
//! into the store and to its client, and its one terminal event on every path. A job adopted from a lost gateway
//! takes the same way without a client.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    fleet::Ticket,
    history::Outcome,
    jobs::JobState,
    journal::{Journal, LEASE_TTL},
    relay::{self, Dispatch, Rejection, Terminal},
    state::Gateway,
    store::{JobPhase, JobRecord, now_ms},
};
use crate::event::ErrorCode;

/// Frames buffered towards a slow client before the relay waits for it (and the worker's stream with it).
const OUT_FRAMES: usize = 64;
/// A waiting job's request stays in the store this long past the line's timeout, for a gateway that adopts it.
pub const REQUEST_KEPT_AFTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// A claim the store could not make is tried again after this long.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// What a claim in the fleet's line came to.
enum Claim {
    Taken,
    /// Another gateway holds the job now.
    Elsewhere,
    /// Not now (the store is out of reach, or had lost the job and has it back): wait again.
    NotNow,
}

pub struct JobSpec {
    pub id: String,
    /// The request as the worker gets it.
    pub body: Bytes,
    /// `cancelOnDisconnect`.
    pub stop_with_client: bool,
    pub provider: String,
}

/// The last words of a stream whose job another gateway takes on: where to follow it.
static HANDED_OVER: Bytes = Bytes::from_static(
    b": the gateway is shutting down; the job keeps its place in the fleet's line: follow it with GET /jobs/{jobId}/events\n\n",
);

pub enum Head {
    Stream,
    Refused(Rejection),
}

pub struct Driver {
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
    /// The client left while the job waited and the job goes on without it (its stream is in the store), or the
    /// job was adopted from a lost gateway and never had a client here.
    client_gone: bool,
    admitted: Instant,
}

enum Waited {
    Assigned(String),
    ClientGone,
    Ended(Terminal),
    /// The gateway stops: the job stays in the fleet's line for another gateway to adopt.
    HandedOver,
}

impl Driver {
    /// Runs a job just admitted to the line for the client of `POST /execute`: the head resolves when the answer
    /// is known (a stream, or a refusal passed on from the worker), and the body carries the stream.
    pub fn start(
        gw: Arc<Gateway>,
        job: JobSpec,
        record: JobRecord,
        journal: Journal,
        cancel: CancellationToken,
        ticket: Ticket,
    ) -> (oneshot::Receiver<Head>, mpsc::Receiver<Bytes>) {
        let (head_tx, head_rx) = oneshot::channel();
        let (out, body) = mpsc::channel(OUT_FRAMES);
        let runtime = gw.runtime.clone();
        let driver = Driver {
            gw,
            job,
            record,
            journal,
            cancel,
            head: Some(head_tx),
            out,
            client_gone: false,
            admitted: Instant::now(),
        };
        runtime.spawn(driver.run(ticket));
        (head_rx, body)
    }

    /// A waiting job of a lost gateway, taken on by this one (which holds its lease now): it keeps its place in
    /// the fleet's line and runs from here without a client; its clients follow it in the store.
    pub async fn adopt(gw: Arc<Gateway>, record: JobRecord, body: Bytes) {
        let job_id = record.job_id.clone();
        let Ok(cancel) = gw.jobs.open(&job_id) else { return };
        let journal = Journal::start(gw.store.clone(), job_id.clone(), gw.settings.log_max_bytes);
        journal.hold_lease(&gw.owner);
        journal.watch_cancel(cancel.clone());
        // Claimed by the lost gateway for a worker that never took it: it waits again, in its place (or at the end,
        // should the store have lost it).
        let _ = gw.store.unclaim(&job_id).await;
        let kept = gw.settings.queue_timeout + REQUEST_KEPT_AFTER_TIMEOUT;
        let line = match gw.store.enqueue(&job_id, &body, usize::MAX, kept).await {
            Ok(line) => line.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%job_id, error = %e, "could not put an adopted job back in the line");
                Vec::new()
            }
        };
        let waited = std::time::Duration::from_millis(now_ms().saturating_sub(record.created_at));
        let admitted = Instant::now().checked_sub(waited).unwrap_or_else(Instant::now);
        let ticket = gw.fleet.admit(&job_id, body.clone(), line);
        let (out, _) = mpsc::channel(1);
        let driver = Driver {
            job: JobSpec {
                id: job_id,
                body,
                stop_with_client: false,
                provider: record.provider.clone(),
            },
            gw,
            record,
            journal,
            cancel,
            head: None,
            out,
            client_gone: true,
            admitted,
        };
        driver.run(ticket).await
    }

    async fn run(mut self, mut ticket: Ticket) {
        let mut waited = false;
        loop {
            let address = match ticket.try_assigned() {
                Some(address) => address,
                None => match self.wait_in_line(&mut ticket).await {
                    Waited::Assigned(address) => address,
                    Waited::ClientGone => {
                        self.leave_line().await;
                        self.gw.jobs.forget(&self.job.id);
                        self.journal.forget();
                        return;
                    }
                    Waited::Ended(terminal) => {
                        self.leave_line().await;
                        return self.end(terminal).await;
                    }
                    Waited::HandedOver => {
                        // Dropping the journal without a record gives up the lease: the next look of another
                        // gateway adopts the job, and its client follows it there by id.
                        tracing::info!(job_id = %self.job.id, "shutting down; the job stays in the fleet's line");
                        let _ = self.out.try_send(HANDED_OVER.clone());
                        self.gw.jobs.forget(&self.job.id);
                        return;
                    }
                },
            };
            // Marked as handed to this worker in the fleet's line, so that no other gateway hands it out too.
            match self.claim().await {
                Claim::Taken => {}
                Claim::Elsewhere => {
                    self.gw.fleet.release(&address);
                    return self.follow_elsewhere().await;
                }
                Claim::NotNow => {
                    // The worker stays this job's while it waits to try again, and goes back to the line only once
                    // the job is a waiter again: released earlier, it would go to the job behind this one.
                    tokio::time::sleep(CLAIM_RETRY).await;
                    ticket.retry();
                    self.gw.fleet.release(&address);
                    continue;
                }
            }
            if !waited {
                waited = true;
                self.gw.metrics.waited(self.admitted.elapsed());
                self.gw.history.waited(self.admitted.elapsed());
                self.record.queue_wait_ms = Some(self.admitted.elapsed().as_millis() as u64);
            }
            match relay::dispatch(&self.gw.upstream, &address, self.job.body.clone()).await {
                Dispatch::Stream(resp) => {
                    // Out of the line only now (the record's update to running takes it out of the store's):
                    // until a worker took the job, it kept its place.
                    self.gw.fleet.left_line(&self.job.id);
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
                    self.leave_line().await;
                    return self.refused(rejection).await;
                }
            }
            // It waits again, in its place.
            if let Err(e) = self.gw.store.unclaim(&self.job.id).await {
                tracing::warn!(job_id = %self.job.id, error = %e, "could not release the job's claim in the store");
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
                if told != Some(shown) && !self.client_gone {
                    told = Some(shown);
                    if self.out.send(relay::queued(&self.job.id, place)).await.is_err()
                        && let Some(gone) = self.lost_client()
                    {
                        return gone;
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
                    if self.gw.store.kind() != "memory" {
                        return Waited::HandedOver;
                    }
                    return Waited::Ended(self.gateway_error(ErrorCode::Shutdown, "the gateway is shutting down; send the request again"));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.gw.metrics.queue_timeouts.inc();
                    let message = format!("no worker became free within {}s", self.gw.settings.queue_timeout.as_secs_f64());
                    return Waited::Ended(self.gateway_error(ErrorCode::QueueTimeout, &message));
                }
                _ = self.out.closed(), if !self.client_gone => if let Some(gone) = self.lost_client() { return gone },
                changed = changes.changed() => if changed.is_err() { return Waited::ClientGone },
                _ = tokio::time::sleep_until(last_write + keepalive), if !self.client_gone => {
                    if self.out.send(relay::KEEP_ALIVE).await.is_err()
                        && let Some(gone) = self.lost_client()
                    {
                        return gone;
                    }
                    last_write = tokio::time::Instant::now();
                }
            }
        }
    }

    /// The client left while the job waits: with `cancelOnDisconnect` the job goes with it; otherwise it keeps its
    /// place (its stream is in the store, for a reconnect through any gateway).
    fn lost_client(&mut self) -> Option<Waited> {
        if self.job.stop_with_client {
            return Some(Waited::ClientGone);
        }
        self.client_gone = true;
        None
    }

    /// Claims the job in the fleet's line for the worker handed to it. Never dispatched without a claim: a job
    /// whose lease another gateway took (this one's lapsed while the store was out of reach) is that gateway's
    /// now, and a job the store's line lost is put back and waits again.
    async fn claim(&self) -> Claim {
        self.gw.fleet.mark_claimed(&self.job.id, true);
        let claimed = self.gw.store.claim(&self.job.id, &self.gw.owner).await;
        // Once more now that the store has it: a read of the line sent before the claim landed is older news.
        self.gw.fleet.mark_claimed(&self.job.id, true);
        match claimed {
            Ok(true) => Claim::Taken,
            Ok(false) => match self.gw.store.lease(&self.job.id, &self.gw.owner, LEASE_TTL).await {
                Ok(false) => Claim::Elsewhere,
                _ => {
                    tracing::info!(job_id = %self.job.id, "the store's line did not have the job to claim; putting it back");
                    let kept = self.gw.settings.queue_timeout + REQUEST_KEPT_AFTER_TIMEOUT;
                    if let Err(e) = self
                        .gw
                        .store
                        .enqueue(&self.job.id, &self.job.body, usize::MAX, kept)
                        .await
                    {
                        tracing::warn!(job_id = %self.job.id, error = %e, "could not put the job back in the store's line");
                    }
                    Claim::NotNow
                }
            },
            Err(e) => {
                tracing::warn!(job_id = %self.job.id, error = %e, "store unavailable; the job waits for it");
                Claim::NotNow
            }
        }
    }

    /// The job ends while it waits: out of the fleet's line, its request dropped.
    async fn leave_line(&self) {
        self.gw.fleet.left_line(&self.job.id);
        if let Err(e) = self.gw.store.leave(&self.job.id).await {
            tracing::warn!(job_id = %self.job.id, error = %e, "could not take the job out of the store's line");
        }
        self.gw.fleet.left_line(&self.job.id);
    }

    /// Another gateway runs the job: this one stops writing it, and its client follows it in the store.
    async fn follow_elsewhere(mut self) {
        tracing::warn!(job_id = %self.job.id, "another gateway adopted this job; following it in the store");
        self.start_stream();
        self.gw.jobs.forget(&self.job.id);
        drop(self.journal);
        if !self.client_gone {
            super::replay::follow(self.gw.clone(), self.job.id.clone(), None, Vec::new(), self.out).await;
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
        // The record's update took it out of the store's line: a read of the line sent before then still had it.
        self.gw.fleet.left_line(&self.job.id);
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
            let upstream = &self.gw.upstream;
            relay::confirm_terminal(
                upstream,
                &self.gw.runtime,
                address,
                &self.job.id,
                terminal.id,
                &self.journal,
            );
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
