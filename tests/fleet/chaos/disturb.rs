//! What the chaos test does to the fleet while its clients run: one gateway killed with SIGKILL, then the store
//! restarted, each at a moment chosen from the clients' progress.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bollard::query_parameters::{KillContainerOptions, StopContainerOptions};

use super::client::Chaos;
use super::{CLIENTS, WORKERS};
use crate::http::wait_json;
use crate::stack::Stack;
use crate::support::{Fleet, PATIENCE};

/// What the test did to the fleet.
#[derive(Default)]
pub(super) struct Disturbed {
    pub(super) gateway_kills: usize,
    pub(super) store_restarts: usize,
    pub(super) notes: Vec<String>,
}

pub(super) async fn disturb(fleet: &Fleet, stack: &Stack, chaos: &Chaos) -> Disturbed {
    let mut disturbed = Disturbed::default();
    let at = |what: String| format!("{:>7}: {what}", chaos.clock());
    let hit = match kill_a_gateway(fleet, stack, chaos, &at).await {
        Ok((notes, hit)) => {
            disturbed.gateway_kills += 1;
            disturbed.notes.extend(notes);
            hit
        }
        Err(note) => {
            disturbed.notes.push(note);
            return disturbed;
        }
    };
    match restart_the_store(fleet, stack, chaos, &hit, &at).await {
        Ok(notes) => {
            disturbed.store_restarts += 1;
            disturbed.notes.extend(notes);
        }
        Err(note) => disturbed.notes.push(note),
    }
    disturbed
}

/// Kills a gateway once replicas are being replaced after their jobs and jobs posted to it are in the middle of
/// their streams: it takes running relays, jobs in its line and connected clients down with it. Swarm starts a new
/// container for its task, which the clients use once it answers. Returns the clients whose jobs were mid-stream
/// when it died.
async fn kill_a_gateway(
    fleet: &Fleet,
    stack: &Stack,
    chaos: &Chaos,
    at: &impl Fn(String) -> String,
) -> Result<(Vec<String>, Vec<usize>), String> {
    let mut board = chaos.board.subscribe();
    let moment = board.wait_for(|b| b.done() >= WORKERS as usize && b.mid_stream(None) > 0);
    let Ok(Ok(moment)) = tokio::time::timeout_at(chaos.until, moment).await else {
        return Err(at("the moment to kill a gateway never came".into()));
    };
    let via = (0..2)
        .max_by_key(|via| moment.mid_stream(Some(*via)))
        .unwrap_or_default();
    let (done, posted) = (moment.done(), moment.mid_stream(Some(via)));
    let hit = (0..CLIENTS)
        .filter(|i| moment.0[*i].started && !moment.0[*i].done)
        .collect();
    drop(moment);
    let (victim, base) = chaos.gateways()[via].clone();
    let kill = KillContainerOptions {
        signal: "SIGKILL".into(),
    };
    fleet
        .docker
        .kill_container(&victim, Some(kill))
        .await
        .expect("kill the gateway");
    let mut notes = vec![at(format!(
        "gateway {base} killed, {posted} of the jobs posted to it mid-stream, {done} jobs finished"
    ))];
    chaos.set_gateways(|g| g.retain(|(id, _)| *id != victim));
    let replacement = replacement_gateway(fleet, stack, chaos).await;
    notes.push(at(format!("its replacement answers at {}", replacement.1)));
    chaos.set_gateways(|g| g.push(replacement));
    Ok((notes, hit))
}

/// Restarts the store under jobs in the middle of their streams, once the jobs `hit` by the gateway's death have
/// ended and a few more after them, so that what goes wrong can be told apart. Stopped, not `docker restart`ed:
/// the engine would start the old container again while Swarm, which saw its task end, starts a replacement too,
/// and two stores would share one AOF. Swarm starts the one replacement, on the same volume.
async fn restart_the_store(
    fleet: &Fleet,
    stack: &Stack,
    chaos: &Chaos,
    hit: &[usize],
    at: &impl Fn(String) -> String,
) -> Result<Vec<String>, String> {
    let label = format!("com.docker.swarm.service.name={}_store", stack.name);
    let store = fleet.containers(&label).await;
    assert_eq!(store.len(), 1, "one store container: {store:?}");
    let mut board = chaos.board.subscribe();
    let settled = board.wait_for(|b| hit.iter().all(|i| b.0[*i].done));
    if tokio::time::timeout_at(chaos.until, settled).await.is_err() {
        return Err(at("the jobs hit by the gateway's death never ended".into()));
    }
    let later = board.borrow().done() + WORKERS as usize;
    let moment = board.wait_for(|b| b.done() >= later && b.mid_stream(None) >= 2);
    let Ok(Ok(moment)) = tokio::time::timeout_at(chaos.until, moment).await else {
        return Err(at("the moment to restart the store never came".into()));
    };
    let (done, running) = (moment.done(), moment.mid_stream(None));
    drop(moment);
    chaos.store_epoch.fetch_add(1, Ordering::SeqCst);
    let mut notes = vec![at(format!(
        "store stopping, {running} jobs mid-stream, {done} jobs finished"
    ))];
    let stop = StopContainerOptions {
        t: Some(10),
        ..Default::default()
    };
    fleet
        .docker
        .stop_container(&store[0], Some(stop))
        .await
        .expect("stop the store");
    let deadline = Instant::now() + PATIENCE;
    while fleet.containers(&label).await.iter().all(|id| *id == store[0]) {
        assert!(Instant::now() < deadline, "Swarm did not restart the store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, base) in chaos.gateways() {
        wait_json(&format!("{base}/health"), |h| h["store"]["up"] == true).await;
    }
    chaos.store_epoch.fetch_add(1, Ordering::SeqCst);
    let stores = fleet.containers(&label).await.len();
    notes.push(at(format!(
        "every gateway reaches the store again, {stores} store container running"
    )));
    Ok(notes)
}

/// The gateway container Swarm started in place of the one killed, once it answers `/health`.
async fn replacement_gateway(fleet: &Fleet, stack: &Stack, chaos: &Chaos) -> (String, String) {
    let known: Vec<String> = chaos.gateways().into_iter().map(|(id, _)| id).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (id, base) in stack.gateways(fleet).await {
            if known.contains(&id) {
                continue;
            }
            if let Ok(r) = chaos.http.get(format!("{base}/health")).send().await
                && r.status() == 200
            {
                return (id, base);
            }
        }
        assert!(Instant::now() < deadline, "Swarm did not replace the killed gateway");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
