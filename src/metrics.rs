//! Prometheus metrics in the text exposition format (OpenMetrics 1.0 text, which Prometheus scrapes natively):
//! the worker's jobs by outcome, their duration, events and refused requests. The gateway has its own set.

use actix_web::HttpResponse;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// The content type Prometheus expects for the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Job lengths range from seconds to the one-hour default limit.
pub const DURATION_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `completed`, or the terminal error code.
    pub outcome: String,
}

pub struct WorkerMetrics {
    registry: Registry,
    jobs: Family<OutcomeLabel, Counter>,
    duration: Histogram,
    events: Counter,
    refused_busy: Counter,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("unified_worker");
        let jobs = Family::<OutcomeLabel, Counter>::default();
        registry.register("jobs", "Jobs that ended, by outcome", jobs.clone());
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "job_duration_seconds",
            "Time from accepting a job to its terminal event",
            duration.clone(),
        );
        let events = Counter::default();
        registry.register("events", "Events appended to job streams", events.clone());
        let refused_busy = Counter::default();
        registry.register(
            "busy_refusals",
            "POST /execute answered 429 because a job runs or the worker drains",
            refused_busy.clone(),
        );
        WorkerMetrics {
            registry,
            jobs,
            duration,
            events,
            refused_busy,
        }
    }
}

impl WorkerMetrics {
    pub fn job_finished(&self, outcome: &str, seconds: f64, events: u64) {
        self.jobs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.duration.observe(seconds);
        self.events.inc_by(events);
    }

    pub fn refused_busy(&self) {
        self.refused_busy.inc();
    }

    pub fn response(&self) -> HttpResponse {
        respond(&self.registry)
    }
}

/// Encodes a registry as the `/metrics` answer.
pub fn respond(registry: &Registry) -> HttpResponse {
    let mut body = String::new();
    if let Err(e) = encode(&mut body, registry) {
        tracing::error!(error = %e, "could not encode the metrics");
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(body)
}
