//! The per-job model-API broker (docs/providers.md#the-model-api-broker): the CLI gets a loopback address of the
//! job's own as its API's base URL and a random placeholder as its key; the broker checks the placeholder, puts
//! the real credential in its place, forwards to the real API and streams the answer back, counting the tokens
//! on the way (`meter`) and refusing calls past the job's budget (`budget`). The HTTP side lives in `proxy`.
//!
//! The real key stays in the worker's memory: it is never in the CLI's environment, argv, files or home, so an
//! agent talked into printing or sending its credentials has only a placeholder that dies with the job.

mod budget;
mod meter;
mod proxy;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, OnceLock},
};

pub use budget::{Budget, Exceeded, Price, Prices};
pub use meter::{ApiStyle, CallMeter};
use tokio_util::sync::CancellationToken;

use crate::{
    event::{BudgetUsed, ErrorCode, Failure, Usage},
    metrics::ModelMetrics,
    secret::Secret,
};

/// The worker's settings for its brokers (`Settings::broker`; None there is `BROKER=off`).
#[derive(Clone, Debug, Default)]
pub struct BrokerConfig {
    /// `BROKER_ALLOW_INSECURE_UPSTREAM`: plain http to an upstream that is not loopback.
    pub allow_insecure_upstream: bool,
    /// The real model APIs by setting (`ANTHROPIC_UPSTREAM_URL`, …), as the providers' endpoints name them.
    pub upstreams: HashMap<&'static str, String>,
    /// What the budget's dollars come from.
    pub prices: Arc<Prices>,
}

/// How a provider's CLI reaches its model API: the variables that carry its endpoint and its key.
#[derive(Clone, Copy, Debug)]
pub struct ModelEndpoint {
    /// Where the CLI takes its API's base URL from (`ANTHROPIC_BASE_URL`): the broker's address goes there.
    pub base_url_var: &'static str,
    /// Where the CLI may take its credential from; each one the run sets holds the placeholder instead, so that
    /// the CLI sends it the way it would have sent the key (`x-api-key`, a bearer token, `x-goog-api-key`).
    pub key_vars: &'static [&'static str],
    /// The worker's setting for the real API (`ANTHROPIC_UPSTREAM_URL`), if the provider has one.
    pub upstream_var: Option<&'static str>,
    /// The vendor's API, used when neither the setting nor the CLI's base URL is set. None: without a base URL
    /// the CLI does not use a model-API key at all (Copilot signs in to GitHub) and keeps its own path.
    pub default_upstream: Option<&'static str>,
}

impl ModelEndpoint {
    /// Where calls go: the upstream setting, else the base URL the operator gave the CLI (an LLM gateway keeps
    /// working), else the vendor's API.
    fn upstream(&self, config: &BrokerConfig, env: &[(String, String)]) -> Option<String> {
        let configured = self.upstream_var.and_then(|var| config.upstreams.get(var)).cloned();
        configured
            .or_else(|| value(env, self.base_url_var).map(|url| url.trim_end_matches('/').to_string()))
            .or_else(|| self.default_upstream.map(String::from))
    }

    /// Whether a run of this provider goes through a broker (`config`: None when the broker is off), given the
    /// usual credential.
    pub fn brokered(&self, config: Option<&BrokerConfig>) -> bool {
        config.is_some_and(|config| {
            self.default_upstream.is_some()
                || self.upstream_var.is_some_and(|var| config.upstreams.contains_key(var))
                || std::env::var(self.base_url_var).is_ok_and(|v| !v.trim().is_empty())
        })
    }
}

fn value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// One job's broker. Stopped when the job's CLI has ended (or dropped): its port closes, and its placeholder
/// opens nothing anywhere else.
pub struct Broker {
    base_url: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// What the broker's connections share.
struct Shared {
    provider: &'static str,
    placeholder: String,
    /// Where calls go and with what; set once, before the CLI starts (`arm`).
    target: OnceLock<Target>,
    client: reqwest::Client,
    budget: Budget,
    prices: Arc<Prices>,
    metrics: ModelMetrics,
    totals: Mutex<Totals>,
    /// Cancelled when a call was refused for the budget: the job stops its CLI.
    budget_reached: CancellationToken,
}

struct Target {
    credential: Secret,
    /// Without a trailing slash; the call's path and query are appended as they came.
    upstream: String,
}

/// Where a provider that points its CLI at the broker itself (`ProviderRun::route_to_broker`) sends it: the
/// broker's address and placeholder, and the operator's upstream settings for an endpoint the CLI has built in.
pub struct BrokerAddress<'a> {
    pub base_url: &'a str,
    pub placeholder: &'a str,
    upstreams: &'a HashMap<&'static str, String>,
}

impl BrokerAddress<'_> {
    /// The operator's upstream setting `var` (`OPENAI_UPSTREAM_URL`), if set.
    pub fn upstream(&self, var: &str) -> Option<&str> {
        self.upstreams.get(var).map(String::as_str)
    }

    #[cfg(test)]
    pub fn for_tests<'a>(
        base_url: &'a str,
        placeholder: &'a str,
        upstreams: &'a HashMap<&'static str, String>,
    ) -> BrokerAddress<'a> {
        BrokerAddress {
            base_url,
            placeholder,
            upstreams,
        }
    }
}

/// What a provider that points its CLI at the broker itself (`ProviderRun::route_to_broker`) took out of the
/// run: the real credential and the API it belongs to.
pub struct ModelApi {
    pub credential: String,
    pub upstream: String,
}

#[derive(Default)]
struct Totals {
    usage: Usage,
    used: BudgetUsed,
    exceeded: Option<Exceeded>,
}

impl Broker {
    /// A broker for a run whose CLI environment is `env`, or None when the run keeps today's path: the CLI has
    /// no key in its environment (a credentials file, a GitHub sign-in) or no model API to call.
    pub async fn start(
        provider: &'static str,
        endpoint: &ModelEndpoint,
        env: &[(String, String)],
        config: &BrokerConfig,
        budget: Budget,
        metrics: ModelMetrics,
    ) -> Result<Option<Broker>, Failure> {
        let credential = endpoint.key_vars.iter().find_map(|var| value(env, var));
        let (Some(credential), Some(upstream)) = (credential, endpoint.upstream(config, env)) else {
            return Ok(None);
        };
        let broker = Broker::bind(provider, config, budget, metrics).await?;
        broker.arm(
            ModelApi {
                credential: credential.to_string(),
                upstream,
            },
            config,
            endpoint.upstream_var.unwrap_or(endpoint.base_url_var),
        )?;
        Ok(Some(broker))
    }

    /// A broker on its port with its placeholder, that forwards nothing until it is armed: for a provider that
    /// must know the broker's address before it can say what it replaced (`ProviderRun::route_to_broker`).
    pub async fn bind(
        provider: &'static str,
        config: &BrokerConfig,
        budget: Budget,
        metrics: ModelMetrics,
    ) -> Result<Broker, Failure> {
        let failed = |e: &dyn std::fmt::Display| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not start the model-API broker: {e}"),
            )
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| failed(&e))?;
        let addr = listener.local_addr().map_err(|e| failed(&e))?;
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            // Redirects would carry the real key to wherever they point.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| failed(&e))?;
        let shared = Arc::new(Shared {
            provider,
            placeholder: placeholder(),
            target: OnceLock::new(),
            client,
            budget,
            prices: config.prices.clone(),
            metrics,
            totals: Mutex::default(),
            budget_reached: CancellationToken::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(proxy::serve(listener, shared.clone(), stop.clone()));
        tracing::info!(provider, port = addr.port(), "model-API broker started");
        Ok(Broker {
            base_url: format!("http://{addr}"),
            shared,
            stop,
        })
    }

    /// Gives the broker the real credential and where it goes. `setting` names what configured the upstream,
    /// for the message when it cannot be used.
    pub fn arm(&self, api: ModelApi, config: &BrokerConfig, setting: &str) -> Result<(), Failure> {
        let upstream = api.upstream.trim_end_matches('/').to_string();
        check_upstream(&upstream, config.allow_insecure_upstream).map_err(|reason| {
            Failure::new(
                ErrorCode::Internal,
                format!(
                    "the model API upstream {upstream} cannot be used: {reason} ({setting} or \
                     BROKER_ALLOW_INSECURE_UPSTREAM)"
                ),
            )
        })?;
        let _ = self.shared.target.set(Target {
            credential: Secret::new(api.credential),
            upstream,
        });
        Ok(())
    }

    /// Whether calls are forwarded: the run goes through the broker.
    pub fn is_armed(&self) -> bool {
        self.shared.target.get().is_some()
    }

    /// Points the CLI at the broker: its base URL, and the placeholder in every key variable it has set.
    pub fn route(&self, endpoint: &ModelEndpoint, env: &mut Vec<(String, String)>) {
        for (key, value) in env.iter_mut() {
            if endpoint.key_vars.contains(&key.as_str()) && !value.trim().is_empty() {
                *value = self.shared.placeholder.clone();
            }
        }
        env.retain(|(k, _)| k != endpoint.base_url_var);
        env.push((endpoint.base_url_var.to_string(), self.base_url.clone()));
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// What a provider that routes itself needs to point its CLI here.
    pub fn address<'a>(&'a self, config: &'a BrokerConfig) -> BrokerAddress<'a> {
        BrokerAddress {
            base_url: &self.base_url,
            placeholder: &self.shared.placeholder,
            upstreams: &config.upstreams,
        }
    }

    pub fn placeholder(&self) -> &str {
        &self.shared.placeholder
    }

    /// The job's usage as the broker counted it.
    pub fn usage(&self) -> Usage {
        let totals = self.shared.lock();
        Usage {
            metered: true,
            model_calls: Some(totals.used.model_calls),
            ..totals.usage
        }
    }

    /// The limit that stopped the job, if one did.
    pub fn exceeded(&self) -> Option<Exceeded> {
        self.shared.lock().exceeded
    }

    /// Resolves when a call was refused for the job's budget.
    pub async fn budget_reached(&self) -> Exceeded {
        self.shared.budget_reached.cancelled().await;
        self.exceeded().unwrap_or(Exceeded {
            limit: "maxTokens",
            used: BudgetUsed::default(),
        })
    }

    /// Closes the port and ends the calls in flight; what was counted stays readable.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a model call about to be forwarded, or refuses it when the budget is spent.
    fn begin_call(&self) -> Result<(), Exceeded> {
        let mut totals = self.lock();
        if let Some(exceeded) = self.budget.reached(&totals.used) {
            totals.exceeded.get_or_insert(exceeded);
            drop(totals);
            self.metrics.call(self.provider, "refused");
            self.budget_reached.cancel();
            return Err(exceeded);
        }
        totals.used.model_calls += 1;
        Ok(())
    }

    /// Adds what a call's answer said it used.
    fn end_call(&self, meter: CallMeter) {
        let (usage, model) = meter.finish();
        let cost = model
            .as_deref()
            .and_then(|m| self.prices.of(m))
            .map_or(0.0, |price| price.cost(&usage));
        {
            let mut totals = self.lock();
            let t = &mut totals.usage;
            t.input_tokens += usage.input_tokens;
            t.output_tokens += usage.output_tokens;
            t.cache_read_tokens += usage.cache_read_tokens;
            t.cache_creation_tokens += usage.cache_creation_tokens;
            totals.used.tokens +=
                usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_creation_tokens;
            totals.used.cost_usd += cost;
        }
        for (kind, count) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_creation", usage.cache_creation_tokens),
        ] {
            self.metrics.tokens(self.provider, kind, count);
        }
    }
}

/// Keeps the agent out of the worker's memory. The worker holds the real keys (in its environment, and the
/// requests' in memory) and its CLIs run as the same user: without this, `cat /proc/<worker pid>/environ` would
/// hand the agent what the broker keeps from it. A process that is not dumpable has its `/proc` files owned by
/// root and cannot be traced by its own user; a CLI is dumpable again after its exec, so nothing changes for it.
/// (A root agent can read anything; the image runs the worker as a user.)
pub fn seal_worker_process() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes plain integers and changes only this process's flag.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// 256 random bits, recognisable in a dump as the broker's and worth nothing outside the job.
fn placeholder() -> String {
    format!("uwb-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The real key crosses the network only over TLS, unless the upstream is this machine (the tests' mocks, a
/// sidecar gateway) or the operator allowed plain http.
fn check_upstream(url: &str, allow_insecure: bool) -> Result<(), &'static str> {
    let url = reqwest::Url::parse(url).map_err(|_| "not a URL")?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(name)) => name == "localhost",
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("plain http is allowed only to a loopback upstream")
            }
        }
        _ => Err("not an http(s) URL"),
    }
}

#[cfg(test)]
mod tests;
