//! The gateway's picture of the fleet and its line, under one lock: which worker is idle, busy or gone, the
//! fleet's line as the store last showed it (every gateway's waiting jobs, in order), and the hand-over of a freed
//! worker to this gateway's waiters whose turn it is (FIFO across the fleet).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use super::store::{Waiting, now_ms};

use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Discovered, or stopped answering: probed until its `/health` answers.
    Down,
    Idle,
    Busy,
    Draining,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Down => "down",
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Draining => "draining",
        }
    }
}

/// One worker as the gateway sees it.
#[derive(Clone, Debug)]
pub struct WorkerView {
    pub address: String,
    pub state: WorkerState,
    pub job_id: Option<String>,
    /// The job's provider, once the gateway dispatched it or the worker's `/status` named it.
    pub provider: Option<String>,
    pub since: SystemTime,
}

struct Entry {
    state: WorkerState,
    job_id: Option<String>,
    provider: Option<String>,
    since: SystemTime,
    /// Handed to a waiter whose `POST /execute` to it is in flight: not idle for anyone else.
    reserved: bool,
    /// When the gateway last learned something itself (a dispatch, a 429, the end of a stream): a `/status`
    /// answer to a request sent before then is older news and is ignored.
    learned_at: Option<Instant>,
    /// Wakes the worker's poller at once (a stream just ended, so it is about to change state).
    poke: Arc<Notify>,
    /// Cancelled when the worker goes away: relays from it stop waiting for bytes that will never come.
    gone: CancellationToken,
    /// Probes in a row that got no answer.
    failures: u32,
    stop_polling: CancellationToken,
}

struct Waiter {
    ticket: u64,
    job_id: String,
    /// Its request, to put it back in the store's line should the store lose it (a restart that lost the last
    /// writes).
    request: bytes::Bytes,
    /// Reads of the store's line in a row that did not have it.
    missing: u8,
    /// `None` while a worker handed to it is being asked: the waiter keeps its place until that worker takes the
    /// job, so nobody behind it moves up and back down when the worker says 429.
    assign: Option<oneshot::Sender<String>>,
}

#[derive(Default)]
struct State {
    workers: BTreeMap<String, Entry>,
    /// This gateway's waiters.
    line: VecDeque<Waiter>,
    /// The fleet's line, head first: what the store last answered, with this gateway's own changes since.
    fleet_line: Vec<Waiting>,
    /// Bumped by each change this gateway makes to the line, so that a store answer read before it is not taken
    /// for newer.
    line_version: u64,
    /// Jobs that left the line here, until a read of the store's line no longer has them: a read sent just before
    /// the store took one out would otherwise bring it back for a moment, and move everyone behind it back.
    gone: std::collections::HashSet<String>,
    next_ticket: u64,
}

/// The job a worker's `/status` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolledJob {
    pub id: String,
    pub provider: Option<String>,
}

/// Where a waiter stands, as its `queued` events tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePosition {
    /// 1 = next.
    pub position: usize,
    pub length: usize,
    pub workers: usize,
    pub busy: usize,
}

/// Missed probes in a row after which a worker's streams are given up.
const GONE_AFTER: u32 = 3;

pub struct Fleet {
    state: Mutex<State>,
    /// Wakes the task that reads the fleet's line from the store (docs/fleet.md).
    line_changed: Notify,
    /// Bumped whenever the line or the workers change, so waiters recompute their place.
    changed: watch::Sender<u64>,
}

impl Fleet {
    pub fn new() -> Arc<Self> {
        Arc::new(Fleet {
            state: Mutex::new(State::default()),
            line_changed: Notify::new(),
            changed: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below is a handful of field writes, so a panic elsewhere cannot leave it half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Idle workers nobody was handed yet: that many new jobs do not wait, whatever the line's bound.
    pub fn idle(&self) -> usize {
        let st = self.lock();
        st.workers
            .values()
            .filter(|e| e.state == WorkerState::Idle && !e.reserved)
            .count()
    }

    /// A job the store just put in the fleet's line (`line`, as the store answered then) waits here; a worker is
    /// handed over at once if it is its turn.
    pub fn admit(self: &Arc<Self>, job_id: &str, request: bytes::Bytes, line: Vec<Waiting>) -> Ticket {
        let mut st = self.lock();
        let (assign, assigned) = oneshot::channel();
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.line.push_back(Waiter {
            ticket,
            job_id: job_id.to_string(),
            request,
            missing: 0,
            assign: Some(assign),
        });
        st.fleet_line = line;
        let State { fleet_line, gone, .. } = &mut *st;
        fleet_line.retain(|w| !gone.contains(&w.job_id));
        if !st.fleet_line.iter().any(|w| w.job_id == job_id) {
            st.fleet_line.push(Waiting {
                job_id: job_id.to_string(),
                since: now_ms(),
                claimed: false,
            });
        }
        st.line_version += 1;
        drop(st);
        self.pump();
        self.bump();
        self.line_changed.notify_one();
        Ticket {
            id: ticket,
            fleet: self.clone(),
            assigned,
        }
    }

    /// The fleet's line as the store holds it, read when the version was `version`: taken unless this gateway
    /// changed the line since.
    /// Answers this gateway's waiting jobs that the store's line has lost (missing from two reads in a row), with
    /// their requests, to be put back.
    pub fn set_line(&self, mut line: Vec<Waiting>, version: u64) -> Vec<(String, bytes::Bytes)> {
        let mut st = self.lock();
        if st.line_version != version {
            return Vec::new();
        }
        st.gone.retain(|id| line.iter().any(|w| &w.job_id == id));
        line.retain(|w| !st.gone.contains(&w.job_id));
        let mut lost = Vec::new();
        for waiter in st.line.iter_mut().filter(|w| w.assign.is_some()) {
            if line.iter().any(|w| w.job_id == waiter.job_id) {
                waiter.missing = 0;
            } else {
                waiter.missing = waiter.missing.saturating_add(1);
                if waiter.missing >= 2 {
                    lost.push((waiter.job_id.clone(), waiter.request.clone()));
                }
            }
        }
        if st.fleet_line == line {
            return lost;
        }
        st.fleet_line = line;
        drop(st);
        self.bump();
        self.pump();
        lost
    }

    /// The version a read of the line starts from, and whether anything waits (then the line is read often).
    pub fn line_version(&self) -> (u64, bool) {
        let st = self.lock();
        (st.line_version, !st.fleet_line.is_empty() || !st.line.is_empty())
    }

    /// Resolves when this gateway changed the line.
    pub async fn line_changed(&self) {
        self.line_changed.notified().await
    }

    /// The job left the fleet's line (it started, or ended): others move up now, not at the next read, and its
    /// waiter here is no longer one (nothing puts it back in the store's line).
    pub fn left_line(&self, job_id: &str) {
        let mut st = self.lock();
        st.fleet_line.retain(|w| w.job_id != job_id);
        st.line.retain(|w| w.job_id != job_id);
        st.gone.insert(job_id.to_string());
        st.line_version += 1;
        drop(st);
        self.bump();
        self.line_changed.notify_one();
    }

    /// The job is being handed to a worker (`true`), or waits again after a refusal: it keeps its place.
    pub fn mark_claimed(&self, job_id: &str, claimed: bool) {
        let mut st = self.lock();
        if let Some(w) = st.fleet_line.iter_mut().find(|w| w.job_id == job_id) {
            w.claimed = claimed;
        }
        st.line_version += 1;
        drop(st);
        self.line_changed.notify_one();
    }

    /// Hands idle workers to this gateway's waiters whose turn it is. The fleet's line is served in order: the
    /// n-th job of the line not yet handed a worker gets the n-th idle worker (by address), whichever gateway
    /// holds it, so that gateways with the same picture never reach for the same worker; a job of another
    /// gateway is that gateway's to dispatch.
    pub fn pump(&self) {
        let mut st = self.lock();
        let State {
            workers,
            line,
            fleet_line,
            ..
        } = &mut *st;
        let idle: Vec<&String> = workers
            .iter()
            .filter(|(_, e)| e.state == WorkerState::Idle && !e.reserved)
            .map(|(a, _)| a)
            .collect();
        let mut handed = Vec::new();
        let mut slot = 0;
        for waiting in fleet_line.iter() {
            if slot >= idle.len() {
                break;
            }
            let mine = line.iter_mut().find(|w| w.job_id == waiting.job_id);
            if waiting.claimed {
                // Handed to a worker here: that one is reserved, not among the idle. By another gateway: it took
                // the idle worker of its turn, which this gateway does not know is taken yet.
                if mine.is_none() {
                    slot += 1;
                }
                continue;
            }
            match mine {
                // Already handed a worker here: its dispatch is in flight and holds no idle one.
                Some(waiter) if waiter.assign.is_none() => continue,
                Some(waiter) => {
                    let address = idle[slot];
                    // A waiter whose driver ended between our look and now simply does not take the worker.
                    if let Some(assign) = waiter.assign.take()
                        && assign.send(address.clone()).is_ok()
                    {
                        handed.push((address.clone(), waiter.job_id.clone()));
                    }
                }
                None => {}
            }
            slot += 1;
        }
        for (address, job_id) in handed {
            if let Some(entry) = workers.get_mut(&address) {
                entry.reserved = true;
                entry.job_id = Some(job_id);
                entry.provider = None;
            }
        }
    }

    pub fn place(&self, ticket: u64) -> Option<LinePosition> {
        let st = self.lock();
        let job_id = &st.line.iter().find(|w| w.ticket == ticket)?.job_id;
        place_in(&st, job_id).map(|(place, _)| place)
    }

    /// The place of a queued job by its id, and how long it waits (for `GET /jobs/{jobId}`).
    pub fn place_of(&self, job_id: &str) -> Option<(LinePosition, Duration)> {
        place_in(&self.lock(), job_id)
    }

    fn leave(&self, ticket: u64) {
        let mut st = self.lock();
        let before = st.line.len();
        st.line.retain(|w| w.ticket != ticket);
        let left = st.line.len() != before;
        drop(st);
        if left {
            self.bump();
        }
    }

    /// The worker took the job: busy with it, whatever a `/status` answer already on its way says.
    pub fn started(&self, address: &str, job_id: &str, provider: &str) {
        self.learn(
            address,
            WorkerState::Busy,
            Some(job_id.to_string()),
            Some(provider.to_string()),
        );
    }

    /// The worker answered 429 although it looked idle.
    pub fn refused_busy(&self, address: &str) {
        self.learn(address, WorkerState::Busy, None, None);
    }

    /// The worker refused the request itself (not for being busy): still idle for the next one.
    pub fn release(&self, address: &str) {
        let mut st = self.lock();
        if let Some(e) = st.workers.get_mut(address) {
            e.reserved = false;
            e.job_id = None;
            e.provider = None;
        }
        drop(st);
        self.bump();
        self.pump();
    }

    /// Its stream ended: the worker drains and exits or turns idle; ask it now rather than at the next tick.
    pub fn stream_ended(&self, address: &str) {
        let (job, provider) = match self.lock().workers.get(address) {
            Some(e) => (e.job_id.clone(), e.provider.clone()),
            None => (None, None),
        };
        self.learn(address, WorkerState::Draining, job, provider);
        if let Some(e) = self.lock().workers.get(address) {
            e.poke.notify_one();
        }
    }

    pub fn unreachable(&self, address: &str) {
        self.set_down(address);
    }

    fn learn(&self, address: &str, state: WorkerState, job_id: Option<String>, provider: Option<String>) {
        let mut st = self.lock();
        if let Some(e) = st.workers.get_mut(address) {
            if e.state != state || e.job_id != job_id {
                e.since = SystemTime::now();
            }
            e.state = state;
            e.job_id = job_id;
            e.provider = provider;
            e.reserved = false;
            e.learned_at = Some(Instant::now());
        }
        drop(st);
        self.bump();
    }

    /// A `/status` answer to a request sent at `asked`.
    pub fn polled(&self, address: &str, asked: Instant, state: WorkerState, job: Option<PolledJob>) {
        let mut st = self.lock();
        let Some(e) = st.workers.get_mut(address) else { return };
        e.failures = 0;
        if e.reserved || e.learned_at.is_some_and(|t| t > asked) {
            return;
        }
        let (job_id, provider) = job.map_or((None, None), |j| (Some(j.id), j.provider));
        let moved = e.state != state || e.job_id != job_id;
        if moved || e.provider != provider {
            if moved {
                e.since = SystemTime::now();
            }
            e.state = state;
            e.job_id = job_id;
            e.provider = provider;
            drop(st);
            self.bump();
            if state == WorkerState::Idle {
                self.pump();
            }
        }
    }

    /// Gets no more jobs until it answers again.
    pub fn set_down(&self, address: &str) {
        let mut st = self.lock();
        let Some(e) = st.workers.get_mut(address) else { return };
        if e.state == WorkerState::Down {
            return;
        }
        e.state = WorkerState::Down;
        e.since = SystemTime::now();
        e.reserved = false;
        e.job_id = None;
        e.provider = None;
        e.learned_at = Some(Instant::now());
        drop(st);
        self.bump();
    }

    /// A probe got no answer. One miss only stops new jobs (a loaded worker can be slow to answer); after
    /// `GONE_AFTER` in a row the worker counts as gone and streams from it stop waiting. A killed process closes
    /// its connections anyway; this is for a host that vanished without a word.
    pub fn probe_failed(&self, address: &str) {
        self.set_down(address);
        let mut st = self.lock();
        let Some(e) = st.workers.get_mut(address) else { return };
        e.failures += 1;
        if e.failures == GONE_AFTER {
            // The next incarnation at this address gets a new token.
            e.gone.cancel();
            e.gone = CancellationToken::new();
        }
    }

    /// Makes the set of workers equal to what discovery found; returns the addresses that are new.
    pub fn sync(&self, found: &[String]) -> Vec<String> {
        let mut st = self.lock();
        let mut removed = Vec::new();
        st.workers.retain(|address, e| {
            let keep = found.contains(address);
            if !keep {
                e.gone.cancel();
                e.stop_polling.cancel();
                removed.push(address.clone());
            }
            keep
        });
        let mut added = Vec::new();
        for address in found {
            if !st.workers.contains_key(address) {
                st.workers.insert(
                    address.clone(),
                    Entry {
                        state: WorkerState::Down,
                        job_id: None,
                        provider: None,
                        since: SystemTime::now(),
                        reserved: false,
                        learned_at: None,
                        poke: Arc::new(Notify::new()),
                        gone: CancellationToken::new(),
                        failures: 0,
                        stop_polling: CancellationToken::new(),
                    },
                );
                added.push(address.clone());
            }
        }
        drop(st);
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(?added, ?removed, "workers changed");
            self.bump();
        }
        added
    }

    /// What a poller of `address` needs: its wake-up, its stop signal and the state it is in.
    pub fn poller_handles(&self, address: &str) -> Option<(Arc<Notify>, CancellationToken)> {
        let st = self.lock();
        let e = st.workers.get(address)?;
        Some((e.poke.clone(), e.stop_polling.clone()))
    }

    pub fn state_of(&self, address: &str) -> Option<WorkerState> {
        self.lock().workers.get(address).map(|e| e.state)
    }

    /// Cancelled when `address` goes down or away.
    pub fn gone_signal(&self, address: &str) -> CancellationToken {
        let st = self.lock();
        st.workers.get(address).map_or_else(
            || {
                let t = CancellationToken::new();
                t.cancel();
                t
            },
            |e| e.gone.clone(),
        )
    }

    pub fn workers(&self) -> Vec<WorkerView> {
        self.lock()
            .workers
            .iter()
            .map(|(address, e)| WorkerView {
                address: address.clone(),
                state: if e.reserved { WorkerState::Busy } else { e.state },
                job_id: e.job_id.clone(),
                provider: e.provider.clone(),
                since: e.since,
            })
            .collect()
    }

    /// The worker whose last `/status` (or dispatch) named this job.
    pub fn worker_with_job(&self, job_id: &str) -> Option<String> {
        let st = self.lock();
        st.workers
            .iter()
            .find(|(_, e)| e.job_id.as_deref() == Some(job_id) && e.state != WorkerState::Down)
            .map(|(a, _)| a.clone())
    }

    /// The fleet's waiting jobs with their wait so far, head first.
    pub fn line(&self) -> Vec<(String, Duration)> {
        let now = now_ms();
        self.lock()
            .fleet_line
            .iter()
            .map(|w| (w.job_id.clone(), waited(now, w.since)))
            .collect()
    }
}

fn waited(now: u64, since: u64) -> Duration {
    Duration::from_millis(now.saturating_sub(since))
}

fn place_in(st: &State, job_id: &str) -> Option<(LinePosition, Duration)> {
    let index = st.fleet_line.iter().position(|w| w.job_id == job_id)?;
    let (workers, busy) = counts(st);
    let place = LinePosition {
        position: index + 1,
        length: st.fleet_line.len(),
        workers,
        busy,
    };
    Some((place, waited(now_ms(), st.fleet_line[index].since)))
}

/// (workers that answer, of those the ones not free)
fn counts(st: &State) -> (usize, usize) {
    let live = st.workers.values().filter(|e| e.state != WorkerState::Down);
    let (mut workers, mut busy) = (0, 0);
    for e in live {
        workers += 1;
        if e.reserved || e.state != WorkerState::Idle {
            busy += 1;
        }
    }
    (workers, busy)
}

/// A place in the line. Dropping it leaves the line; a worker handed to it in the same moment goes back.
pub struct Ticket {
    pub id: u64,
    fleet: Arc<Fleet>,
    assigned: oneshot::Receiver<String>,
}

impl Ticket {
    /// Resolves with the worker reserved for this request.
    pub async fn assigned(&mut self) -> Option<String> {
        (&mut self.assigned).await.ok()
    }

    /// The worker reserved for this request, if one was handed over already.
    pub fn try_assigned(&mut self) -> Option<String> {
        self.assigned.try_recv().ok()
    }

    /// The worker it was handed did not take the job: wait for the next one, in the same place.
    pub fn retry(&mut self) {
        let (assign, assigned) = oneshot::channel();
        self.assigned = assigned;
        let mut st = self.fleet.lock();
        if let Some(w) = st.line.iter_mut().find(|w| w.ticket == self.id) {
            w.assign = Some(assign);
            let job_id = w.job_id.clone();
            if let Some(w) = st.fleet_line.iter_mut().find(|w| w.job_id == job_id) {
                w.claimed = false;
            }
            st.line_version += 1;
        }
        drop(st);
        self.fleet.pump();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.fleet.leave(self.id);
        if let Ok(address) = self.assigned.try_recv() {
            self.fleet.release(&address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet_with(idle: &[&str], busy: &[&str]) -> Arc<Fleet> {
        let fleet = Fleet::new();
        let all: Vec<String> = idle.iter().chain(busy).map(|s| s.to_string()).collect();
        fleet.sync(&all);
        for a in idle {
            fleet.polled(a, Instant::now(), WorkerState::Idle, None);
        }
        for a in busy {
            let job = PolledJob {
                id: "other".into(),
                provider: Some("cursor".into()),
            };
            fleet.polled(a, Instant::now(), WorkerState::Busy, Some(job));
        }
        fleet
    }

    /// At the end of the line, as the store would put it.
    fn admit(fleet: &Arc<Fleet>, job_id: &str) -> Ticket {
        let mut line: Vec<Waiting> = fleet.line().into_iter().map(|(job_id, _)| waiting(&job_id)).collect();
        line.push(waiting(job_id));
        fleet.admit(job_id, bytes::Bytes::new(), line)
    }

    fn waiting(job_id: &str) -> Waiting {
        Waiting {
            job_id: job_id.into(),
            since: 0,
            claimed: false,
        }
    }

    fn queued(fleet: &Arc<Fleet>, job_id: &str) -> Ticket {
        let mut t = admit(fleet, job_id);
        assert_eq!(t.try_assigned(), None, "expected to wait");
        t
    }

    /// The worker took the job: out of the fleet's line, as the driver does.
    fn took(fleet: &Arc<Fleet>, address: &str, job_id: &str, ticket: Ticket) {
        fleet.left_line(job_id);
        fleet.started(address, job_id, "cursor");
        drop(ticket);
    }

    #[tokio::test]
    async fn a_free_worker_is_taken_at_once_and_only_once() {
        let fleet = fleet_with(&["w1"], &[]);
        let mut t1 = admit(&fleet, "j1");
        assert_eq!(t1.try_assigned().as_deref(), Some("w1"));
        // The worker took it: out of the line.
        took(&fleet, "w1", "j1", t1);
        let t = queued(&fleet, "j2");
        assert_eq!(
            fleet.place(t.id).map(|p| (p.position, p.workers, p.busy)),
            Some((1, 1, 1))
        );
    }

    #[tokio::test]
    async fn freed_workers_go_to_the_line_in_order() {
        let fleet = fleet_with(&[], &["w1", "w2"]);
        let mut t1 = queued(&fleet, "j1");
        let mut t2 = queued(&fleet, "j2");
        let t3 = queued(&fleet, "j3");
        fleet.polled("w2", Instant::now(), WorkerState::Idle, None);
        assert_eq!(t1.assigned().await.as_deref(), Some("w2"));
        took(&fleet, "w2", "j1", t1);
        assert_eq!(fleet.place(t2.id).map(|p| p.position), Some(1));
        fleet.polled("w1", Instant::now(), WorkerState::Idle, None);
        assert_eq!(t2.assigned().await.as_deref(), Some("w1"));
        took(&fleet, "w1", "j2", t2);
        assert_eq!(fleet.place(t3.id).map(|p| (p.position, p.length)), Some((1, 1)));
    }

    #[tokio::test]
    async fn leaving_the_line_moves_everyone_behind_up() {
        let fleet = fleet_with(&[], &["w1"]);
        let t1 = queued(&fleet, "j1");
        let t2 = queued(&fleet, "j2");
        fleet.left_line("j1");
        drop(t1);
        assert_eq!(fleet.place(t2.id).map(|p| (p.position, p.length)), Some((1, 1)));
    }

    #[tokio::test]
    async fn a_worker_handed_to_a_client_that_left_goes_to_the_next() {
        let fleet = fleet_with(&[], &["w1"]);
        let t1 = queued(&fleet, "j1");
        let mut t2 = queued(&fleet, "j2");
        fleet.polled("w1", Instant::now(), WorkerState::Idle, None);
        // t1 was handed w1 but never took it.
        fleet.left_line("j1");
        drop(t1);
        assert_eq!(t2.assigned().await.as_deref(), Some("w1"));
    }

    #[tokio::test]
    async fn a_request_whose_worker_said_429_keeps_its_place_and_nobody_moves() {
        let fleet = fleet_with(&[], &["w1", "w2"]);
        let mut t1 = queued(&fleet, "j1");
        let t2 = queued(&fleet, "j2");
        fleet.polled("w1", Instant::now(), WorkerState::Idle, None);
        assert_eq!(t1.assigned().await.as_deref(), Some("w1"));
        // While j1's dispatch is in flight, j2 is still second.
        assert_eq!(fleet.place(t2.id).map(|p| p.position), Some(2));
        fleet.refused_busy("w1");
        t1.retry();
        assert_eq!(fleet.place(t1.id).map(|p| p.position), Some(1));
        assert_eq!(fleet.place(t2.id).map(|p| p.position), Some(2));
        fleet.polled("w2", Instant::now(), WorkerState::Idle, None);
        assert_eq!(t1.assigned().await.as_deref(), Some("w2"));
    }

    #[tokio::test]
    async fn the_head_of_the_fleet_line_is_another_gateways_and_waits_for_it() {
        let fleet = fleet_with(&[], &["w1", "w2"]);
        let mut mine = queued(&fleet, "mine");
        // Another gateway's job came first: the fleet's line as the store shows it.
        let (version, _) = fleet.line_version();
        fleet.set_line(vec![waiting("theirs"), waiting("mine")], version);
        assert_eq!(fleet.place(mine.id).map(|p| p.position), Some(2));
        // One worker frees up: it is the other gateway's head's.
        fleet.polled("w1", Instant::now(), WorkerState::Idle, None);
        assert_eq!(mine.try_assigned(), None);
        // A second one: the second of the line takes the second idle worker.
        fleet.polled("w2", Instant::now(), WorkerState::Idle, None);
        assert_eq!(mine.assigned().await.as_deref(), Some("w2"));
    }

    #[tokio::test]
    async fn a_line_read_before_a_change_here_is_not_taken_for_newer() {
        let fleet = fleet_with(&[], &["w1"]);
        let (version, _) = fleet.line_version();
        let t = queued(&fleet, "j1");
        fleet.set_line(Vec::new(), version);
        assert_eq!(fleet.place(t.id).map(|p| p.position), Some(1));
    }

    #[tokio::test]
    async fn a_status_answer_older_than_a_dispatch_is_ignored() {
        let fleet = fleet_with(&["w1"], &[]);
        let asked = Instant::now();
        let a = admit(&fleet, "j1").try_assigned().unwrap();
        fleet.started(&a, "j1", "claude-code");
        fleet.polled(&a, asked, WorkerState::Idle, None);
        assert_eq!(fleet.state_of(&a), Some(WorkerState::Busy));
    }
}
