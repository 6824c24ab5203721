//! The gateway's Prometheus metrics: the line (length, waits, timeouts), dispatches, 429 retries, lost workers and
//! the workers by state (read from the fleet at each scrape), and the store's errors and latency.

use std::time::Duration;

use actix_web::HttpResponse;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::fleet::{Fleet, WorkerState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Waits from a blink to the default ten-minute queue timeout.
const WAIT_BUCKETS: [f64; 12] = [0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0];

/// A store call on loopback takes a fraction of a millisecond; a blocking read up to the keep-alive interval.
const STORE_BUCKETS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0,
];

pub struct GatewayMetrics {
    registry: Registry,
    queue_length: Gauge,
    workers: Family<StateLabel, Gauge>,
    wait: Histogram,
    pub dispatches: Counter,
    pub busy_retries: Counter,
    pub worker_lost: Counter,
    pub queue_timeouts: Counter,
    pub queue_full: Counter,
    /// Calls to the store of fleet state that failed, and how long each call took.
    pub store_errors: Counter,
    pub store_seconds: Histogram,
    /// Relays this gateway took over from a gateway that died.
    pub relay_takeovers: Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("unified_worker_gateway");
        let queue_length = Gauge::default();
        registry.register("queue_length", "Requests waiting for a worker", queue_length.clone());
        let workers = Family::<StateLabel, Gauge>::default();
        registry.register("workers", "Workers by state", workers.clone());
        let wait = Histogram::new(WAIT_BUCKETS);
        registry.register(
            "queue_wait_seconds",
            "Time from admission to the first dispatch",
            wait.clone(),
        );
        let dispatches = Counter::default();
        registry.register("dispatches", "Jobs a worker accepted", dispatches.clone());
        let busy_retries = Counter::default();
        registry.register(
            "busy_retries",
            "Dispatches a worker answered with 429, retried elsewhere",
            busy_retries.clone(),
        );
        let worker_lost = Counter::default();
        registry.register(
            "worker_lost",
            "Streams that broke before their terminal event",
            worker_lost.clone(),
        );
        let queue_timeouts = Counter::default();
        registry.register(
            "queue_timeouts",
            "Requests that waited GATEWAY_QUEUE_TIMEOUT_SECONDS",
            queue_timeouts.clone(),
        );
        let queue_full = Counter::default();
        registry.register(
            "queue_full",
            "Requests answered 429 because the line was full",
            queue_full.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Calls to the store of fleet state that failed",
            store_errors.clone(),
        );
        let store_seconds = Histogram::new(STORE_BUCKETS);
        registry.register(
            "store_seconds",
            "Time a call to the store of fleet state took (a blocking read included)",
            store_seconds.clone(),
        );
        let relay_takeovers = Counter::default();
        registry.register(
            "relay_takeovers",
            "Relays of running jobs taken over from a gateway that stopped renewing its lease",
            relay_takeovers.clone(),
        );
        GatewayMetrics {
            relay_takeovers,
            store_errors,
            store_seconds,
            registry,
            queue_length,
            workers,
            wait,
            dispatches,
            busy_retries,
            worker_lost,
            queue_timeouts,
            queue_full,
        }
    }
}

impl GatewayMetrics {
    pub fn waited(&self, wait: Duration) {
        self.wait.observe(wait.as_secs_f64());
    }

    pub fn response(&self, fleet: &Fleet) -> HttpResponse {
        self.queue_length.set(fleet.line().len() as i64);
        let views = fleet.workers();
        for state in [
            WorkerState::Down,
            WorkerState::Idle,
            WorkerState::Busy,
            WorkerState::Draining,
        ] {
            let n = views.iter().filter(|w| w.state == state).count();
            self.workers
                .get_or_create(&StateLabel { state: state.as_str() })
                .set(n as i64);
        }
        crate::metrics::respond(&self.registry)
    }
}
