//! The chaos test's clients: each posts its job, reads its stream, drops the connection at the points it drew and
//! reconnects by job id through either gateway, recording every event it gets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use super::record::Record;
use super::{LAST_ID, PACE, SILENCE, STEPS};
use crate::http::Sse;

/// splitmix64: enough randomness for a plan, and the same plan again from the same seed.
pub(super) struct Dice(pub(super) u64);

impl Dice {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where a client drops its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cut {
    /// On a `queued` event, while the job still waits for a worker.
    WhileQueued,
    /// Right after the event with this id.
    After(u64),
}

/// Zero to three cuts at distinct points of the stream, in the order it reaches them.
pub(super) fn cuts(dice: &mut Dice) -> VecDeque<Cut> {
    let mut cuts: Vec<Cut> = (0..dice.below(4))
        .map(|_| match dice.below(LAST_ID + 1) {
            LAST_ID => Cut::WhileQueued,
            id => Cut::After(id),
        })
        .collect();
    cuts.sort();
    cuts.dedup();
    cuts.into()
}

/// What the clients share with the part of the test that disturbs the fleet.
pub(super) struct Chaos {
    /// The gateways running now, as (container, base URL).
    pub(super) gateways: Mutex<Vec<(String, String)>>,
    /// Odd while the store restarts: a 404 then may be the store's absence rather than the job's.
    pub(super) store_epoch: AtomicU64,
    pub(super) board: watch::Sender<Board>,
    pub(super) http: reqwest::Client,
    pub(super) started: Instant,
    /// Every client stops here, with or without its terminal event.
    pub(super) until: tokio::time::Instant,
}

impl Chaos {
    pub(super) fn gateways(&self) -> Vec<(String, String)> {
        self.gateways.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The time since the clients started, for the report.
    pub(super) fn clock(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }

    pub(super) fn set_gateways(&self, change: impl FnOnce(&mut Vec<(String, String)>)) {
        change(&mut self.gateways.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(super) fn pick(&self, dice: &mut Dice) -> String {
        let gateways = self.gateways();
        gateways[dice.below(gateways.len() as u64) as usize].1.clone()
    }
}

/// Each client's progress, so that the disturbances can choose their moment.
#[derive(Clone, Default)]
pub(super) struct Board(pub(super) Vec<Seat>);

#[derive(Clone, Copy, Default)]
pub(super) struct Seat {
    /// The gateway (index in the first list) the job was posted to.
    pub(super) via: usize,
    pub(super) started: bool,
    pub(super) done: bool,
}

impl Board {
    pub(super) fn done(&self) -> usize {
        self.0.iter().filter(|s| s.done).count()
    }

    /// Jobs between their first event and their terminal one, posted to gateway `via` or to any.
    pub(super) fn mid_stream(&self, via: Option<usize>) -> usize {
        let relayed = |s: &&Seat| via.is_none_or(|v| s.via == v);
        self.0.iter().filter(relayed).filter(|s| s.started && !s.done).count()
    }
}

/// Client `i`: posts its job through gateway `i` mod 2 and follows it to its terminal event, dropping the
/// connection at `cuts` and after any break, then checks that a gateway answers the terminal id with 204.
pub(super) async fn client(
    chaos: Arc<Chaos>,
    i: usize,
    job: String,
    mut cuts: VecDeque<Cut>,
    mut dice: Dice,
) -> Record {
    let mut record = Record {
        job: job.clone(),
        ..Default::default()
    };
    let via = chaos.gateways()[i % 2].1.clone();
    let body = json!({
        "userRequest": format!("run={job} steps={STEPS} pace={PACE}"),
        "codingAssistantProvider": "claude-code",
        "jobId": job,
    });
    let mut stream = match chaos.http.post(format!("{via}/execute")).json(&body).send().await {
        Ok(r) if r.status() == 200 => Sse::new(r),
        Ok(r) => {
            record.failure = Some(format!("at {}: POST through {via}: {}", chaos.clock(), r.status()));
            return record;
        }
        Err(e) => {
            record.failure = Some(format!("at {}: POST through {via}: {e}", chaos.clock()));
            return record;
        }
    };
    record.trail.push(format!("POST {via}"));
    loop {
        let cut = match read(&chaos, i, &mut stream, &mut cuts, &mut record).await {
            Ok(cut) => cut,
            Err(failure) => {
                record.failure = Some(format!("at {}: {failure}", chaos.clock()));
                return record;
            }
        };
        if let Some(&(terminal, _)) = record.terminals.first() {
            if let Err(failure) = confirm(&chaos, &mut dice, &mut record, terminal).await {
                record.failure = Some(format!("at {}: {failure}", chaos.clock()));
            }
            return record;
        }
        if cut {
            record.cuts += 1;
        }
        // Dropping the stream closes its connection: the cut, or the end of one that broke.
        stream = match reopen(&chaos, &mut dice, &mut record).await {
            Ok(stream) => stream,
            Err(failure) => {
                record.failure = Some(format!("at {}: {failure}", chaos.clock()));
                return record;
            }
        };
    }
}

/// Reads `stream` until its end or a planned cut (true). After a terminal event it reads on to the end, so that
/// anything sent after it shows.
async fn read(
    chaos: &Chaos,
    i: usize,
    stream: &mut Sse,
    cuts: &mut VecDeque<Cut>,
    record: &mut Record,
) -> Result<bool, String> {
    while let Some(frame) = stream.next_frame(SILENCE, chaos.until).await {
        let Some(id) = frame.id else {
            if frame.name != "queued" {
                return Err(format!("`{}` without an id: {}", frame.name, frame.data));
            }
            record.queued += 1;
            if record.ids.is_empty() && cuts.front() == Some(&Cut::WhileQueued) {
                cuts.pop_front();
                record.queued_cuts += 1;
                return Ok(true);
            }
            continue;
        };
        record.ids.push(id);
        if matches!(frame.name.as_str(), "completed" | "error") {
            let code = match frame.name.as_str() {
                "completed" => "completed",
                _ => frame.data["code"].as_str().unwrap_or("(no code)"),
            };
            record.terminals.push((id, code.to_string()));
            chaos.board.send_modify(|b| b.0[i].done = true);
            continue;
        }
        if record.ids.len() == 1 {
            chaos.board.send_modify(|b| b.0[i].started = true);
        }
        if !record.terminals.is_empty() {
            continue;
        }
        // A cut planned while queued is moot once the job runs (it never waited, or got a worker meanwhile).
        if cuts.front() == Some(&Cut::WhileQueued) {
            cuts.pop_front();
        }
        if cuts.front().is_some_and(|c| *c <= Cut::After(id)) {
            while cuts.front().is_some_and(|c| *c <= Cut::After(id)) {
                cuts.pop_front();
            }
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reconnects by job id through either gateway, from the last id the client has. A gateway that is down, or a
/// store that is away (503, or a 404 while it restarts), is tried again after a short backoff.
async fn reopen(chaos: &Chaos, dice: &mut Dice, record: &mut Record) -> Result<Sse, String> {
    let after = record.ids.last().copied();
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some((base, answer, store_stayed)) = ask(chaos, dice, &record.job, after).await else {
            return Err(format!(
                "no gateway served the job again before the end of the run (after {after:?})"
            ));
        };
        match answer {
            Ok(r) if r.status() == 200 => {
                record.reconnects += 1;
                record.trail.push(format!("GET {base} after {after:?}"));
                return Ok(Sse::new(r));
            }
            Ok(r) if r.status() == 204 => {
                return Err(format!(
                    "{base} answered 204 after {after:?}, before any terminal event"
                ));
            }
            Ok(r) if r.status() == 404 && store_stayed => {
                let body = r.text().await.unwrap_or_default();
                return Err(format!(
                    "{base} answered 404 after {after:?}, the store up all along: {body}"
                ));
            }
            Ok(r) if matches!(r.status().as_u16(), 404 | 502 | 503) => {
                record.trail.push(format!("GET {base}: {}", r.status().as_u16()));
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                return Err(format!("{base} answered {status} after {after:?}: {body}"));
            }
            Err(_) => {}
        }
        record.refused += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The terminal event ends the job for its client: any gateway answers its id with 204. A gateway may instead
/// open a stream that ends without an event (a store that has the terminal event but not yet the finished
/// record); that is no harm to the client, which asks again, and is counted.
async fn confirm(chaos: &Chaos, dice: &mut Dice, record: &mut Record, terminal: u64) -> Result<(), String> {
    loop {
        let Some((base, answer, store_stayed)) = ask(chaos, dice, &record.job, Some(terminal)).await else {
            return Err("no gateway answered 204 to the terminal id before the end of the run".into());
        };
        match answer {
            Ok(r) if r.status() == 204 => return Ok(()),
            Ok(r) if r.status() == 200 => {
                let mut stream = Sse::new(r);
                if let Some(frame) = stream.next_frame(SILENCE, chaos.until).await {
                    return Err(format!(
                        "{base} sent `{}` (id {:?}) after the terminal id",
                        frame.name, frame.id
                    ));
                }
                record.empty_after_terminal += 1;
            }
            Ok(r) if r.status() == 404 && store_stayed => {
                let body = r.text().await.unwrap_or_default();
                return Err(format!(
                    "{base} answered 404 to the terminal id, the store up all along: {body}"
                ));
            }
            Ok(r) if matches!(r.status().as_u16(), 404 | 502 | 503) => {}
            Ok(r) => {
                return Err(format!(
                    "{base} answered {} to the terminal id: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /jobs/{jobId}/events` after `after` through a gateway picked at random: the gateway, its answer, and
/// whether the store stayed up all along (a 404 counts only then). `None` once the run is over.
async fn ask(
    chaos: &Chaos,
    dice: &mut Dice,
    job: &str,
    after: Option<u64>,
) -> Option<(String, reqwest::Result<reqwest::Response>, bool)> {
    let base = chaos.pick(dice);
    let epoch = chaos.store_epoch.load(Ordering::SeqCst);
    let mut request = chaos.http.get(format!("{base}/jobs/{job}/events"));
    if let Some(after) = after {
        request = request.header("Last-Event-ID", after.to_string());
    }
    let answer = tokio::time::timeout_at(chaos.until, request.send()).await.ok()?;
    let store_stayed = epoch.is_multiple_of(2) && chaos.store_epoch.load(Ordering::SeqCst) == epoch;
    Some((base, answer, store_stayed))
}
