//! The last hour of this gateway's jobs, minute by minute: how many finished with which outcome, and how long the
//! ones that got a worker had waited in line for it. It is what the dashboard's chart draws. At most sixty minutes
//! are kept, so memory stays the same whatever the load.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::event::timestamp;

/// Minutes kept and drawn: the current one and the 59 before it.
pub const MINUTES: u64 = 60;

/// How a job ended, as the chart groups it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Any terminal `error` not named below: the provider failed, a clone failed, a timeout, a refusal …
    Failed,
    /// `cancelled`, or `shutdown` of a worker or of the gateway.
    Cancelled,
    WorkerLost,
    QueueTimeout,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Completed,
        Outcome::Failed,
        Outcome::Cancelled,
        Outcome::WorkerLost,
        Outcome::QueueTimeout,
    ];

    fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::WorkerLost => "workerLost",
            Outcome::QueueTimeout => "queueTimeout",
        }
    }

    /// The outcome a terminal event's JSON (`completed`, or `error` with its `code`) stands for.
    pub fn of_terminal(json: &[u8]) -> Outcome {
        let event: Value = serde_json::from_slice(json).unwrap_or_default();
        if event["type"] == "completed" {
            return Outcome::Completed;
        }
        match event["code"].as_str() {
            Some("cancelled" | "shutdown") => Outcome::Cancelled,
            Some("worker_lost") => Outcome::WorkerLost,
            Some("queue_timeout") => Outcome::QueueTimeout,
            _ => Outcome::Failed,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Minute {
    /// Minutes since the Unix epoch.
    index: u64,
    finished: [u32; Outcome::ALL.len()],
    /// Jobs that got a worker in this minute, and their waits.
    started: u32,
    wait_total_ms: u64,
    wait_max_ms: u64,
}

pub struct History {
    minutes: Mutex<VecDeque<Minute>>,
    changed: watch::Sender<u64>,
}

impl Default for History {
    fn default() -> Self {
        History {
            minutes: Mutex::new(VecDeque::with_capacity(MINUTES as usize)),
            changed: watch::Sender::new(0),
        }
    }
}

fn minute_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

impl History {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Minute>> {
        // Each change is a few counter increments: a panic elsewhere cannot leave one half-done.
        self.minutes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bumped after every change, for the fleet feed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn finished(&self, outcome: Outcome) {
        self.finished_at(minute_of(SystemTime::now()), outcome);
    }

    /// A job got a worker after waiting this long (zero when one was idle).
    pub fn waited(&self, wait: Duration) {
        self.waited_at(minute_of(SystemTime::now()), wait);
    }

    fn finished_at(&self, minute: u64, outcome: Outcome) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.update(minute, |m| m.finished[index] += 1);
    }

    fn waited_at(&self, minute: u64, wait: Duration) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.update(minute, |m| {
            m.started += 1;
            m.wait_total_ms = m.wait_total_ms.saturating_add(ms);
            m.wait_max_ms = m.wait_max_ms.max(ms);
        });
    }

    fn update(&self, minute: u64, change: impl FnOnce(&mut Minute)) {
        let mut minutes = self.lock();
        // A clock that stepped back counts into the newest minute rather than reopening an old one.
        let minute = minutes.back().map_or(minute, |last| minute.max(last.index));
        if minutes.back().is_none_or(|last| last.index != minute) {
            minutes.push_back(Minute {
                index: minute,
                ..Minute::default()
            });
        }
        while minutes.front().is_some_and(|first| first.index + MINUTES <= minute) {
            minutes.pop_front();
        }
        if let Some(last) = minutes.back_mut() {
            change(last);
        }
        drop(minutes);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The last hour as columns of `MINUTES` values, oldest first, ending with the current minute:
    /// `{"from","minutes","finished":{"completed":[…],…},"started":[…],"waitMsAvg":[…],"waitMsMax":[…]}`
    /// (a wait is `null` in a minute in which no job got a worker).
    pub fn snapshot(&self) -> Value {
        self.snapshot_at(minute_of(SystemTime::now()))
    }

    fn snapshot_at(&self, now: u64) -> Value {
        let first = (now + 1).saturating_sub(MINUTES);
        let minutes = self.lock();
        let columns = (first..=now).map(|index| minutes.iter().find(|m| m.index == index));
        let mut finished: Vec<Vec<u32>> = vec![Vec::with_capacity(MINUTES as usize); Outcome::ALL.len()];
        let (mut started, mut avg, mut max) = (Vec::new(), Vec::new(), Vec::new());
        for minute in columns {
            for (i, column) in finished.iter_mut().enumerate() {
                column.push(minute.map_or(0, |m| m.finished[i]));
            }
            let got_worker = minute.filter(|m| m.started > 0);
            started.push(got_worker.map_or(0, |m| m.started));
            avg.push(got_worker.map(|m| m.wait_total_ms / u64::from(m.started)));
            max.push(got_worker.map(|m| m.wait_max_ms));
        }
        drop(minutes);
        let by_outcome: serde_json::Map<String, Value> = Outcome::ALL
            .iter()
            .zip(finished)
            .map(|(o, column)| (o.name().to_string(), json!(column)))
            .collect();
        json!({
            "from": timestamp(UNIX_EPOCH + Duration::from_secs(first * 60)),
            "minutes": MINUTES,
            "finished": by_outcome,
            "started": started,
            "waitMsAvg": avg,
            "waitMsMax": max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 29_000_000;

    #[test]
    fn outcomes_are_read_from_terminal_events() {
        let of = |s: &str| Outcome::of_terminal(s.as_bytes());
        assert_eq!(of(r#"{"type":"completed","costUsd":0.1}"#), Outcome::Completed);
        assert_eq!(of(r#"{"type":"error","code":"shutdown"}"#), Outcome::Cancelled);
        assert_eq!(of(r#"{"type":"error","code":"worker_lost"}"#), Outcome::WorkerLost);
        assert_eq!(of(r#"{"type":"error","code":"queue_timeout"}"#), Outcome::QueueTimeout);
        assert_eq!(of(r#"{"type":"error","code":"provider_failed"}"#), Outcome::Failed);
        assert_eq!(of("not json"), Outcome::Failed);
    }

    #[test]
    fn a_minute_counts_outcomes_and_waits() {
        let h = History::default();
        h.finished_at(T, Outcome::Completed);
        h.finished_at(T, Outcome::Completed);
        h.finished_at(T, Outcome::WorkerLost);
        h.waited_at(T, Duration::from_millis(100));
        h.waited_at(T, Duration::from_millis(300));
        let s = h.snapshot_at(T);
        let last = MINUTES as usize - 1;
        assert_eq!(s["finished"]["completed"][last], 2);
        assert_eq!(s["finished"]["workerLost"][last], 1);
        assert_eq!(s["finished"]["failed"][last], 0);
        assert_eq!(
            (s["started"][last].as_u64(), s["waitMsAvg"][last].as_u64()),
            (Some(2), Some(200))
        );
        assert_eq!(s["waitMsMax"][last], 300);
        assert_eq!(s["waitMsAvg"][last - 1], Value::Null);
        assert_eq!(
            s["finished"]["completed"].as_array().map(Vec::len),
            Some(MINUTES as usize)
        );
    }

    #[test]
    fn only_the_last_hour_is_kept_and_shown() {
        let h = History::default();
        for minute in T..T + 3 * MINUTES {
            h.finished_at(minute, Outcome::Failed);
        }
        assert_eq!(h.lock().len(), MINUTES as usize);
        let now = T + 3 * MINUTES + 9;
        let s = h.snapshot_at(now);
        let failed: Vec<u64> = s["finished"]["failed"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        // Minutes now-59 … now: the ones up to T + 3h - 1 had one failure each, the last ten none.
        assert_eq!(failed.iter().sum::<u64>(), MINUTES - 10);
        assert_eq!(&failed[failed.len() - 10..], &[0; 10]);
    }

    #[test]
    fn a_clock_that_steps_back_counts_into_the_newest_minute() {
        let h = History::default();
        h.finished_at(T, Outcome::Completed);
        h.finished_at(T - 5, Outcome::Completed);
        let s = h.snapshot_at(T);
        assert_eq!(s["finished"]["completed"][MINUTES as usize - 1], 2);
    }
}
