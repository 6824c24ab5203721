//! `github_pull_progress` from libgit2's transfer and checkout callbacks: one overall percentage, never going
//! backwards, at most ten events a second plus one on every phase change.

use std::time::{Duration, Instant};

use crate::event::{PullPhase, PullProgress};

pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Shares of the overall percentage: downloading dominates a clone, resolving deltas and writing files follow.
const RECEIVE_END: f64 = 70.0;
const RESOLVE_END: f64 = 90.0;
const CHECKOUT_END: f64 = 99.0;

/// A sample from libgit2's transfer callback.
pub fn transfer(stats: &git2::Progress<'_>) -> PullProgress {
    let received = stats.received_objects() as u64;
    let total = stats.total_objects() as u64;
    let (indexed_deltas, total_deltas) = (stats.indexed_deltas() as u64, stats.total_deltas() as u64);
    let receiving = total == 0 || received < total;
    let (phase, percent) = if receiving {
        (PullPhase::Receiving, share(0.0, RECEIVE_END, received, total))
    } else {
        let resolved = if total_deltas == 0 { 1 } else { indexed_deltas };
        (
            PullPhase::Resolving,
            share(RECEIVE_END, RESOLVE_END, resolved, total_deltas.max(1)),
        )
    };
    PullProgress {
        phase,
        received_objects: received,
        total_objects: total,
        indexed_deltas,
        total_deltas,
        received_bytes: stats.received_bytes() as u64,
        percent,
    }
}

/// A sample from the checkout callback, on top of the last transfer counters.
pub fn checkout(last: &PullProgress, done: usize, total: usize) -> PullProgress {
    PullProgress {
        phase: PullPhase::Checkout,
        percent: share(RESOLVE_END, CHECKOUT_END, done as u64, total.max(1) as u64),
        ..last.clone()
    }
}

fn share(from: f64, to: f64, done: u64, total: u64) -> u8 {
    if total == 0 {
        return from as u8;
    }
    let fraction = (done as f64 / total as f64).clamp(0.0, 1.0);
    (from + (to - from) * fraction).floor() as u8
}

/// Decides which samples become events. Pure, so that its promises are unit-tested without a server.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<(PullProgress, Instant)>,
}

impl Throttle {
    /// The event to emit for this sample, if any. Counters, phase and percent are clamped to what was already
    /// reported, so a consumer never sees a step back (libgit2 restarts its counters between fetch rounds).
    pub fn offer(&mut self, sample: PullProgress, now: Instant) -> Option<PullProgress> {
        let Some((last, at)) = &self.last else {
            self.last = Some((sample.clone(), now));
            return Some(sample);
        };
        let next = PullProgress {
            phase: sample.phase.max(last.phase),
            received_objects: sample.received_objects.max(last.received_objects),
            total_objects: sample.total_objects.max(last.total_objects),
            indexed_deltas: sample.indexed_deltas.max(last.indexed_deltas),
            total_deltas: sample.total_deltas.max(last.total_deltas),
            received_bytes: sample.received_bytes.max(last.received_bytes),
            percent: sample.percent.max(last.percent),
        };
        let phase_changed = next.phase != last.phase;
        let due = now.duration_since(*at) >= MIN_INTERVAL && next != *last;
        if phase_changed || due {
            self.last = Some((next.clone(), now));
            return Some(next);
        }
        None
    }

    /// The last values reported (or offered first), for the next phase to build on.
    pub fn last(&self) -> PullProgress {
        self.last.as_ref().map(|(p, _)| p.clone()).unwrap_or_default()
    }

    /// The final event: everything at 100%.
    pub fn done(&mut self, now: Instant) -> PullProgress {
        let done = PullProgress {
            phase: PullPhase::Done,
            percent: 100,
            ..self.last()
        };
        self.last = Some((done.clone(), now));
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(phase: PullPhase, received: u64, percent: u8) -> PullProgress {
        PullProgress {
            phase,
            received_objects: received,
            total_objects: 100,
            percent,
            ..PullProgress::default()
        }
    }

    #[test]
    fn at_most_ten_a_second_but_every_phase_change() {
        let start = Instant::now();
        let mut t = Throttle::default();
        assert!(t.offer(sample(PullPhase::Connecting, 0, 0), start).is_some());
        assert!(
            t.offer(sample(PullPhase::Receiving, 1, 1), start).is_some(),
            "phase change"
        );
        let within: Vec<_> = (2..50)
            .filter_map(|i| {
                t.offer(
                    sample(PullPhase::Receiving, i, i as u8),
                    start + Duration::from_millis(i),
                )
            })
            .collect();
        assert!(within.is_empty(), "{within:?}");
        assert!(
            t.offer(sample(PullPhase::Receiving, 60, 60), start + Duration::from_millis(120))
                .is_some()
        );
        assert!(
            t.offer(
                sample(PullPhase::Resolving, 100, 70),
                start + Duration::from_millis(121)
            )
            .is_some()
        );
    }

    #[test]
    fn nothing_goes_backwards() {
        let start = Instant::now();
        let mut t = Throttle::default();
        t.offer(sample(PullPhase::Resolving, 80, 75), start);
        let later = t
            .offer(sample(PullPhase::Receiving, 10, 5), start + Duration::from_secs(1))
            .unwrap_or_else(|| t.last());
        assert_eq!(later.phase, PullPhase::Resolving);
        assert_eq!(later.received_objects, 80);
        assert_eq!(later.percent, 75);
        let done = t.done(start + Duration::from_secs(2));
        assert_eq!(
            (done.phase, done.percent, done.received_objects),
            (PullPhase::Done, 100, 80)
        );
    }

    #[test]
    fn percent_is_split_between_phases() {
        assert_eq!(share(0.0, RECEIVE_END, 50, 100), 35);
        assert_eq!(share(RECEIVE_END, RESOLVE_END, 1, 1), 90);
        let c = checkout(&PullProgress::default(), 5, 10);
        assert_eq!((c.phase, c.percent), (PullPhase::Checkout, 94));
    }
}
