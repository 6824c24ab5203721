//! Prometheus metrics in the text exposition format (OpenMetrics 1.0 text, which Prometheus scrapes natively):
//! the worker's jobs by outcome, their duration, events and refused requests, and what the model-API broker
//! counted (tokens, model calls, upstream latency). The gateway has its own set.

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    /// `input`, `output`, `cache_read` or `cache_creation`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: String,
    /// `forwarded`, `refused` (a budget's limit) or `failed` (the upstream could not be reached).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

/// Model calls answer in a fraction of a second (a refusal, a cached prompt) to a minute (a long first token).
const UPSTREAM_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// What the broker of each job records; cheap to clone (the families share their counters).
#[derive(Clone, Debug)]
pub struct ModelMetrics {
    tokens: Family<TokenLabels, Counter>,
    calls: Family<CallLabels, Counter>,
    upstream_latency: Family<ProviderLabel, Histogram>,
}

impl ModelMetrics {
    fn register(registry: &mut Registry) -> ModelMetrics {
        let metrics = ModelMetrics {
            tokens: Family::default(),
            calls: Family::default(),
            upstream_latency: Family::new_with_constructor(|| Histogram::new(UPSTREAM_BUCKETS)),
        };
        registry.register(
            "model_tokens",
            "Tokens of model calls, as the broker read them from the answers",
            metrics.tokens.clone(),
        );
        registry.register(
            "model_calls",
            "Model calls that reached the broker, by outcome",
            metrics.calls.clone(),
        );
        registry.register(
            "model_upstream_seconds",
            "Time from forwarding a model call to the upstream's response head",
            metrics.upstream_latency.clone(),
        );
        metrics
    }

    pub fn tokens(&self, provider: &str, kind: &str, count: u64) {
        if count > 0 {
            self.tokens
                .get_or_create(&TokenLabels {
                    provider: provider.to_string(),
                    kind: kind.to_string(),
                })
                .inc_by(count);
        }
    }

    pub fn call(&self, provider: &str, outcome: &str) {
        self.calls
            .get_or_create(&CallLabels {
                provider: provider.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn upstream_latency(&self, provider: &str, seconds: f64) {
        self.upstream_latency
            .get_or_create(&ProviderLabel {
                provider: provider.to_string(),
            })
            .observe(seconds);
    }
}

impl Default for ModelMetrics {
    /// Recorded nowhere: for a broker outside a worker (its tests, the benchmark).
    fn default() -> Self {
        ModelMetrics::register(&mut Registry::default())
    }
}

pub struct WorkerMetrics {
    registry: Registry,
    jobs: Family<OutcomeLabel, Counter>,
    duration: Histogram,
    events: Counter,
    refused_busy: Counter,
    pub model: ModelMetrics,
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
        let model = ModelMetrics::register(&mut registry);
        WorkerMetrics {
            registry,
            jobs,
            duration,
            events,
            refused_busy,
            model,
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
