//! Keeps each worker's state fresh with one long poll per worker (`GET /status?wait=<state>`, answered as soon as
//! the worker's state differs from what the gateway believes), probing faster while it is down (so a replacement
//! is used as soon as its `/health` answers), and asking at once when the gateway pokes it. A worker that answers
//! without waiting (a version without long polls) is asked every `GATEWAY_POLL_MS` instead.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::time::Instant;

use super::fleet::{Fleet, PolledJob, WorkerState};

/// One probe never waits longer: a worker this slow to answer `/status` is not one to send a job to.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    status: String,
    job_id: Option<String>,
    provider: Option<String>,
}

/// How long one long poll waits at the worker (`GET /status?wait=`). A worker whose host vanished without closing
/// its connections is noticed within this plus `PROBE_TIMEOUT`; one that dies closes them, which is noticed at once.
const LONG_POLL: Duration = Duration::from_secs(10);

/// The first pause after a worker stops answering, doubled up to a fifth of `GATEWAY_POLL_MS`: a one-job replica
/// exits after its job and a new one listens at the same address within milliseconds.
const FIRST_DOWN_PAUSE: Duration = Duration::from_millis(5);

pub fn spawn(fleet: Arc<Fleet>, client: reqwest::Client, address: String, every: Duration) {
    let Some((poke, stop)) = fleet.poller_handles(&address) else {
        return;
    };
    // A down or draining worker is probed five times as often: on loopback or an overlay network a refused
    // connection costs microseconds, and it is what decides how soon a replacement replica gets work.
    let down_every = (every / 5).max(Duration::from_millis(20));
    tokio::spawn(async move {
        let mut down_pause = FIRST_DOWN_PAUSE;
        loop {
            // The long poll waits out what the gateway believes, so any difference is answered at once.
            let believed = match fleet.state_of(&address) {
                None => return,
                Some(WorkerState::Down) => None,
                Some(state) => Some(state),
            };
            let asked = Instant::now();
            let answer = tokio::select! {
                answer = probe(&fleet, &client, &address, believed) => answer,
                // The gateway's own view changed (a stream ended): ask again at once, with that view.
                _ = poke.notified() => continue,
                _ = stop.cancelled() => return,
            };
            let next = match answer {
                None => Next::Soon,
                Some(state) => next_pause(believed, state, asked.elapsed(), fleet.state_of(&address), every),
            };
            let pause = match next {
                Next::After(pause) => {
                    down_pause = FIRST_DOWN_PAUSE;
                    pause
                }
                Next::Soon => {
                    let pause = down_pause;
                    down_pause = (down_pause * 2).min(down_every);
                    pause
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = poke.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}

/// When to ask next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    After(Duration),
    /// Soon, then less and less often, up to a fifth of `GATEWAY_POLL_MS`: a worker that does not answer, or one
    /// that is about to exit and be replaced at the same address.
    Soon,
}

/// When to ask again, after a `/status` that waited out `waited` and got `state` after `took`; `now` is what the
/// gateway believes after taking the answer (or not).
fn next_pause(
    waited: Option<WorkerState>,
    state: WorkerState,
    took: Duration,
    now: Option<WorkerState>,
    every: Duration,
) -> Next {
    match waited {
        // It answers again after being down: long-poll it from now on.
        None => Next::After(Duration::ZERO),
        // It moved, and the gateway took the answer: wait out the new state at once.
        Some(waited) if state != waited && now != Some(waited) => Next::After(Duration::ZERO),
        // It moved but the gateway kept its own view (a dispatch to it is under way): the gateway's next change
        // pokes this loop, so pausing keeps it from asking in a circle meanwhile.
        Some(waited) if state != waited => Next::Soon,
        // The long poll ran out with nothing new: ask again.
        Some(_) if took >= LONG_POLL / 2 => Next::After(Duration::ZERO),
        // A draining worker answers at once when it exits (or ignored `wait`): its replacement listens within
        // milliseconds at the same address, and is what the next job waits for.
        Some(WorkerState::Draining) => Next::Soon,
        // An idle or busy worker that answers at once with the same state ignored `wait` (a version without long
        // polls): poll it at `GATEWAY_POLL_MS` as before, rather than in a loop.
        Some(_) => Next::After(every),
    }
}

/// One `/status` (after `/health` for a down worker), as a long poll that waits out `waited` when there is one.
/// Returns the state the worker answered, or None when it did not answer.
async fn probe(
    fleet: &Fleet,
    client: &reqwest::Client,
    address: &str,
    waited: Option<WorkerState>,
) -> Option<WorkerState> {
    let asked = Instant::now().into_std();
    if fleet.state_of(address) == Some(WorkerState::Down) {
        let healthy = client
            .get(format!("{address}/health"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !healthy {
            fleet.probe_failed(address);
            return None;
        }
    }
    let (url, timeout) = match waited {
        Some(state) => (
            format!(
                "{address}/status?wait={}&timeout={}",
                wire_name(state),
                LONG_POLL.as_secs()
            ),
            LONG_POLL + PROBE_TIMEOUT,
        ),
        None => (format!("{address}/status"), PROBE_TIMEOUT),
    };
    let answer = async {
        client
            .get(url)
            .timeout(timeout)
            .send()
            .await?
            .error_for_status()?
            .json::<Status>()
            .await
    };
    match answer.await {
        Ok(status) => {
            let state = match status.status.as_str() {
                "idle" => WorkerState::Idle,
                "busy" => WorkerState::Busy,
                _ => WorkerState::Draining,
            };
            let job = status.job_id.map(|id| PolledJob {
                id,
                provider: status.provider,
            });
            fleet.polled(address, asked, state, job);
            Some(state)
        }
        Err(e) => {
            if fleet.state_of(address) != Some(WorkerState::Down) {
                tracing::info!(worker = %address, error = %e, "worker stopped answering");
            }
            fleet.probe_failed(address);
            None
        }
    }
}

/// The worker's name of a state, as `/status` spells it.
fn wire_name(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Idle => "idle",
        WorkerState::Busy => "busy",
        WorkerState::Draining | WorkerState::Down => "draining",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkerState::*;

    const EVERY: Duration = Duration::from_millis(500);
    const QUICK: Duration = Duration::from_millis(3);
    const NOW: Next = Next::After(Duration::ZERO);

    fn pause(waited: Option<WorkerState>, state: WorkerState, took: Duration, now: WorkerState) -> Next {
        next_pause(waited, state, took, Some(now), EVERY)
    }

    #[test]
    fn a_change_is_waited_out_again_at_once() {
        assert_eq!(pause(Some(Busy), Idle, Duration::from_secs(3), Idle), NOW);
        assert_eq!(pause(Some(Draining), Idle, QUICK, Idle), NOW);
        assert_eq!(pause(None, Idle, QUICK, Idle), NOW);
        assert_eq!(
            pause(Some(Idle), Idle, LONG_POLL, Idle),
            NOW,
            "a long poll that ran out"
        );
    }

    #[test]
    fn nothing_asks_in_a_circle() {
        // A worker without long polls answers at once with what it had: back to the plain interval.
        assert_eq!(pause(Some(Idle), Idle, QUICK, Idle), Next::After(EVERY));
        assert_eq!(pause(Some(Busy), Busy, QUICK, Busy), Next::After(EVERY));
        // A draining one (about to exit, or without long polls): soon, then less and less often.
        assert_eq!(pause(Some(Draining), Draining, QUICK, Draining), Next::Soon);
        // An answer the gateway did not take (a dispatch under way) would be the same answer again at once.
        assert_eq!(pause(Some(Idle), Busy, QUICK, Idle), Next::Soon);
    }
}
