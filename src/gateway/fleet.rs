//! The gateway's picture of the fleet and its line, under one lock: which worker is idle, busy or gone, who waits
//! in what order, and the hand-over of a freed worker to the head of the line (FIFO).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Instant, SystemTime},
};

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
    since: Instant,
    /// `None` while a worker handed to it is being asked: the waiter keeps its place until that worker takes the
    /// job, so nobody behind it moves up and back down when the worker says 429.
    assign: Option<oneshot::Sender<String>>,
}

#[derive(Default)]
struct State {
    workers: BTreeMap<String, Entry>,
    line: VecDeque<Waiter>,
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

/// The line is full (or there is no line at all, `GATEWAY_QUEUE_MAX=0`).
#[derive(Debug)]
pub struct Full;

/// Missed probes in a row after which a worker's streams are given up.
const GONE_AFTER: u32 = 3;

pub struct Fleet {
    state: Mutex<State>,
    queue_max: usize,
    /// Bumped whenever the line or the workers change, so waiters recompute their place.
    changed: watch::Sender<u64>,
}

impl Fleet {
    pub fn new(queue_max: usize) -> Arc<Self> {
        Arc::new(Fleet {
            state: Mutex::new(State::default()),
            queue_max,
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

    /// A place at the end of the line; an idle worker, if there is one for it, is handed over at once.
    pub fn admit(self: &Arc<Self>, job_id: &str) -> Result<Ticket, Full> {
        let mut st = self.lock();
        if st.line.len() >= self.queue_max && !(st.line.is_empty() && has_idle(&st)) {
            return Err(Full);
        }
        let (assign, assigned) = oneshot::channel();
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.line.push_back(Waiter {
            ticket,
            job_id: job_id.to_string(),
            since: Instant::now(),
            assign: Some(assign),
        });
        drop(st);
        self.pump();
        self.bump();
        Ok(Ticket {
            id: ticket,
            fleet: self.clone(),
            assigned,
        })
    }

    /// Hands idle workers to the waiters nearest the head that have none in hand, in order.
    pub fn pump(&self) {
        let mut st = self.lock();
        let State { workers, line, .. } = &mut *st;
        for waiter in line.iter_mut().filter(|w| w.assign.is_some()) {
            let Some((address, entry)) = workers
                .iter_mut()
                .find(|(_, e)| e.state == WorkerState::Idle && !e.reserved)
            else {
                break;
            };
            // A waiter whose client left between our look and now simply does not take the worker.
            if let Some(assign) = waiter.assign.take()
                && assign.send(address.clone()).is_ok()
            {
                entry.reserved = true;
                entry.job_id = Some(waiter.job_id.clone());
                entry.provider = None;
            }
        }
    }

    pub fn place(&self, ticket: u64) -> Option<LinePosition> {
        let st = self.lock();
        let position = st.line.iter().position(|w| w.ticket == ticket)? + 1;
        let (workers, busy) = counts(&st);
        Some(LinePosition {
            position,
            length: st.line.len(),
            workers,
            busy,
        })
    }

    /// The place of a queued job by its id (for `GET /jobs/{jobId}`).
    pub fn place_of(&self, job_id: &str) -> Option<(LinePosition, Instant)> {
        let st = self.lock();
        let index = st.line.iter().position(|w| w.job_id == job_id)?;
        let (workers, busy) = counts(&st);
        let place = LinePosition {
            position: index + 1,
            length: st.line.len(),
            workers,
            busy,
        };
        Some((place, st.line[index].since))
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

    /// Each waiting job with its wait so far, head first.
    pub fn line(&self) -> Vec<(String, Instant)> {
        self.lock().line.iter().map(|w| (w.job_id.clone(), w.since)).collect()
    }
}

fn has_idle(st: &State) -> bool {
    st.workers.values().any(|e| e.state == WorkerState::Idle && !e.reserved)
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

    fn fleet_with(idle: &[&str], busy: &[&str], queue_max: usize) -> Arc<Fleet> {
        let fleet = Fleet::new(queue_max);
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

    fn queued(a: Result<Ticket, Full>) -> Ticket {
        let mut t = a.expect("a place in the line");
        assert_eq!(t.try_assigned(), None, "expected to wait");
        t
    }

    #[tokio::test]
    async fn a_free_worker_is_taken_at_once_and_only_once() {
        let fleet = fleet_with(&["w1"], &[], 10);
        let mut t1 = fleet.admit("j1").unwrap();
        assert_eq!(t1.try_assigned().as_deref(), Some("w1"));
        // The worker took it: out of the line.
        fleet.started("w1", "j1", "cursor");
        drop(t1);
        let t = queued(fleet.admit("j2"));
        assert_eq!(
            fleet.place(t.id).map(|p| (p.position, p.workers, p.busy)),
            Some((1, 1, 1))
        );
    }

    #[tokio::test]
    async fn freed_workers_go_to_the_line_in_order() {
        let fleet = fleet_with(&[], &["w1", "w2"], 10);
        let mut t1 = queued(fleet.admit("j1"));
        let mut t2 = queued(fleet.admit("j2"));
        let t3 = queued(fleet.admit("j3"));
        fleet.polled("w2", Instant::now(), WorkerState::Idle, None);
        assert_eq!(t1.assigned().await.as_deref(), Some("w2"));
        fleet.started("w2", "j1", "cursor");
        drop(t1);
        assert_eq!(fleet.place(t2.id).map(|p| p.position), Some(1));
        fleet.polled("w1", Instant::now(), WorkerState::Idle, None);
        assert_eq!(t2.assigned().await.as_deref(), Some("w1"));
        fleet.started("w1", "j2", "cursor");
        drop(t2);
        assert_eq!(fleet.place(t3.id).map(|p| (p.position, p.length)), Some((1, 1)));
    }

    #[tokio::test]
    async fn a_full_line_refuses_and_a_zero_line_never_queues() {
        let fleet = fleet_with(&[], &["w1"], 1);
        let _t = queued(fleet.admit("j1"));
        assert!(fleet.admit("j2").is_err());
        let fleet = fleet_with(&[], &["w1"], 0);
        assert!(fleet.admit("j1").is_err());
    }

    #[tokio::test]
    async fn leaving_the_line_moves_everyone_behind_up() {
        let fleet = fleet_with(&[], &["w1"], 10);
        let t1 = queued(fleet.admit("j1"));
        let t2 = queued(fleet.admit("j2"));
        drop(t1);
        assert_eq!(fleet.place(t2.id).map(|p| (p.position, p.length)), Some((1, 1)));
    }

    #[tokio::test]
    async fn a_worker_handed_to_a_client_that_left_goes_to_the_next() {
        let fleet = fleet_with(&[], &["w1"], 10);
        let t1 = queued(fleet.admit("j1"));
        let mut t2 = queued(fleet.admit("j2"));
        fleet.polled("w1", Instant::now(), WorkerState::Idle, None);
        // t1 was handed w1 but never took it.
        drop(t1);
        assert_eq!(t2.assigned().await.as_deref(), Some("w1"));
    }

    #[tokio::test]
    async fn a_request_whose_worker_said_429_keeps_its_place_and_nobody_moves() {
        let fleet = fleet_with(&[], &["w1", "w2"], 10);
        let mut t1 = queued(fleet.admit("j1"));
        let t2 = queued(fleet.admit("j2"));
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
    async fn a_status_answer_older_than_a_dispatch_is_ignored() {
        let fleet = fleet_with(&["w1"], &[], 10);
        let asked = Instant::now();
        let a = fleet.admit("j1").unwrap().try_assigned().unwrap();
        fleet.started(&a, "j1", "claude-code");
        fleet.polled(&a, asked, WorkerState::Idle, None);
        assert_eq!(fleet.state_of(&a), Some(WorkerState::Busy));
    }
}
