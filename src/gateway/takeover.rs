//! Jobs outlive their gateway: every second each gateway looks in the store for unfinished jobs whose lease lapsed
//! (their gateway died) and takes the lease of one it finds. A job that runs on a worker is resumed from the last
//! event stored — no gap, no duplicate — until the terminal event; a worker gone too gets exactly one
//! `worker_lost`, written by the one gateway that holds the lease. A job that was still waiting in the fleet's
//! line is adopted: it keeps its place and runs from here, its request read from the store. Only a waiting job
//! whose request the store no longer has ends with `gateway_lost`, so that its client gets its one terminal event.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    fleet::WorkerState,
    journal::{Journal, LEASE_TTL},
    relay::{self, Terminal},
    state::Gateway,
    store::{JobPhase, JobRecord, now_ms},
};

/// How often the store is asked for orphaned relays.
const LOOK_EVERY: Duration = Duration::from_secs(1);

pub async fn watch(gw: Arc<Gateway>, stop: CancellationToken) {
    let mut every = tokio::time::interval(LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After the store was out of reach every lease has lapsed, those of gateways that live too: they renew theirs
    // within a second of its return, so nothing is taken over until a lease's time has passed since.
    let mut quiet_until: Option<tokio::time::Instant> = None;
    let mut reached = true;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        let orphans = match gw.store.orphans().await {
            Ok(orphans) => orphans,
            Err(e) => {
                tracing::debug!(error = %e, "could not look for orphaned relays");
                reached = false;
                continue;
            }
        };
        if !std::mem::replace(&mut reached, true) {
            quiet_until = Some(tokio::time::Instant::now() + 2 * LEASE_TTL);
        }
        if quiet_until.is_some_and(|until| tokio::time::Instant::now() < until) {
            continue;
        }
        for record in orphans {
            // This gateway's own jobs are never orphans: a lease that lapsed while the store was slow is renewed
            // by their journal, not taken over a second time beside the relay that runs. A job admitted a moment
            // ago may not hold its lease yet.
            if gw.jobs.get(&record.job_id).is_some()
                || now_ms().saturating_sub(record.created_at) < 2 * LEASE_TTL.as_millis() as u64
            {
                continue;
            }
            let Some(claim) = Claim::take(&gw, &record.job_id) else {
                continue;
            };
            match gw.store.lease(&record.job_id, &gw.owner, LEASE_TTL).await {
                Ok(true) => {
                    tracing::info!(job_id = %record.job_id, worker = ?record.worker, "taking over a job of a lost gateway");
                    gw.metrics.relay_takeovers.inc();
                    gw.runtime.spawn(take_over(claim, record));
                }
                // Another gateway was quicker.
                Ok(false) => {}
                Err(e) => tracing::debug!(job_id = %record.job_id, error = %e, "could not take a relay lease"),
            }
        }
    }
}

/// A job this gateway is taking over, marked so that the next look does not start a second takeover of it; the
/// mark goes with the takeover.
struct Claim {
    gw: Arc<Gateway>,
    job_id: String,
}

impl Claim {
    fn take(gw: &Arc<Gateway>, job_id: &str) -> Option<Claim> {
        let fresh = gw
            .taking_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.to_string());
        fresh.then(|| Claim {
            gw: gw.clone(),
            job_id: job_id.to_string(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.gw
            .taking_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.job_id);
    }
}

async fn take_over(claim: Claim, record: JobRecord) {
    take_over_job(&claim.gw, record).await;
}

async fn take_over_job(gw: &Arc<Gateway>, mut record: JobRecord) {
    if record.state == JobPhase::Queued {
        // Dispatched just before its gateway died, the workers' status says where; else it was still waiting.
        match gw.fleet.worker_with_job(&record.job_id) {
            Some(worker) => {
                record.state = JobPhase::Running;
                record.worker = Some(worker);
                record.started_at = Some(now_ms());
            }
            None => match gw.store.request(&record.job_id).await {
                Ok(Some(body)) => return super::driver::Driver::adopt(gw.clone(), record, body).await,
                Ok(None) => return end_lost_in_line(gw, record).await,
                Err(e) => {
                    // The next look tries again.
                    tracing::warn!(job_id = %record.job_id, error = %e, "store unavailable; the adoption waits");
                    let _ = gw.store.release(&record.job_id, &gw.owner).await;
                    return;
                }
            },
        }
    }
    resume(gw.clone(), record).await
}

async fn end_lost_in_line(gw: &Gateway, mut record: JobRecord) {
    let journal = Journal::start(gw.store.clone(), record.job_id.clone(), gw.settings.log_max_bytes);
    journal.hold_lease(&gw.owner);
    let id = gw
        .store
        .last_id(&record.job_id)
        .await
        .ok()
        .flatten()
        .map_or(0, |last| last + 1);
    let code = crate::event::ErrorCode::GatewayLost;
    let terminal = relay::terminal_error(
        &record.job_id,
        id,
        code.as_str(),
        "the gateway that held this job was lost before a worker took it, and the store no longer has its request; send the request again",
        code.retryable(),
    );
    journal.event(terminal.stored());
    terminal.finish(&mut record);
    journal.record(record);
}

/// Relays the rest of the job from its worker into the store; nobody is connected here, the job's clients read
/// the store through whichever gateway they reach.
async fn resume(gw: Arc<Gateway>, mut record: JobRecord) {
    let job_id = record.job_id.clone();
    let journal = Journal::start(gw.store.clone(), job_id.clone(), gw.settings.log_max_bytes);
    journal.hold_lease(&gw.owner);
    let last = match gw.store.last_id(&job_id).await {
        Ok(last) => last,
        Err(e) => {
            // Without the last id a resume could duplicate events; the lease lapses and the next look tries again.
            tracing::warn!(%job_id, error = %e, "store unavailable; the takeover waits");
            let _ = gw.store.release(&job_id, &gw.owner).await;
            return;
        }
    };
    let worker = record.worker.clone().unwrap_or_default();
    let mut upstream = gw
        .upstream
        .authorized(gw.upstream.client.get(format!("{worker}/jobs/{job_id}/events")))
        .header(crate::http::CONFIRMS_TERMINAL, "1");
    if let Some(last) = last {
        upstream = upstream.header("Last-Event-ID", last.to_string());
    }
    let terminal = match upstream.send().await {
        Ok(resp) if resp.status() == 200 => {
            // No client here: the relay reads the worker's stream to its end and writes it to the store only.
            let (out, _) = mpsc::channel(1);
            let gone = gw.fleet.gone_signal(&worker);
            let end = relay::relay(resp, &out, gone, false, last, Some(&journal)).await;
            match end.terminal {
                Some(terminal) => {
                    relay::confirm_terminal(&gw.upstream, &gw.runtime, &worker, &job_id, terminal.id, &journal);
                    terminal
                }
                None => lost(&gw, &journal, &job_id, end.last_id),
            }
        }
        // The worker says the client (the store) already has the terminal event: only the record was missing.
        Ok(resp) if resp.status() == 204 => match stored_terminal_after(&gw, &job_id, last).await {
            Some(terminal) => terminal,
            None => lost(&gw, &journal, &job_id, last),
        },
        // The worker no longer has the job, or cannot be reached and the fleet sees it gone: what it had not sent
        // is lost with it.
        Ok(resp) if resp.status() == 404 => lost(&gw, &journal, &job_id, last),
        Err(_) if gw.fleet.state_of(&worker).is_none_or(|s| s == WorkerState::Down) => {
            lost(&gw, &journal, &job_id, last)
        }
        // Any other answer (a worker busy or briefly unreachable): let go; the next look tries again.
        _ => {
            drop(journal);
            let _ = gw.store.release(&job_id, &gw.owner).await;
            return;
        }
    };
    terminal.finish(&mut record);
    journal.record(record);
}

fn lost(gw: &Gateway, journal: &Journal, job_id: &str, last: Option<u64>) -> Terminal {
    gw.metrics.worker_lost.inc();
    let terminal = relay::worker_lost(job_id, last);
    journal.event(terminal.stored());
    terminal
}

async fn stored_terminal_after(gw: &Gateway, job_id: &str, last: Option<u64>) -> Option<Terminal> {
    super::jobs::stored_terminal(&*gw.store, job_id, last?).await
}
