//! Keeps each worker's state fresh: `/status` every `GATEWAY_POLL_MS`, faster while it is down (so a replacement
//! is used as soon as its `/health` answers), and at once when the gateway pokes it.

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

pub fn spawn(fleet: Arc<Fleet>, client: reqwest::Client, address: String, every: Duration) {
    let Some((poke, stop)) = fleet.poller_handles(&address) else {
        return;
    };
    // A down or draining worker is probed five times as often: on loopback or an overlay network a refused
    // connection costs microseconds, and it is what decides how soon a replacement replica gets work.
    let down_every = (every / 5).max(Duration::from_millis(20));
    tokio::spawn(async move {
        loop {
            probe(&fleet, &client, &address).await;
            let wait = match fleet.state_of(&address) {
                // A draining worker is about to turn idle or exit (and be replaced): ask often, so its slot is
                // used again within a fraction of the poll interval.
                Some(WorkerState::Down | WorkerState::Draining) => down_every,
                Some(_) => every,
                None => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = poke.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}

async fn probe(fleet: &Fleet, client: &reqwest::Client, address: &str) {
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
            return;
        }
    }
    let answer = async {
        client
            .get(format!("{address}/status"))
            .timeout(PROBE_TIMEOUT)
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
        }
        Err(e) => {
            if fleet.state_of(address) != Some(WorkerState::Down) {
                tracing::info!(worker = %address, error = %e, "worker stopped answering");
            }
            fleet.probe_failed(address);
        }
    }
}
