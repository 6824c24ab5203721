//! The gateway's configuration (docs/fleet.md): where the workers are, how often to ask them, and the queue's bounds.
//! Everything the worker also reads (`PORT`, `WORKER_API_TOKEN`, `RETRY_AFTER_SECONDS`, `MAX_BODY_BYTES`, the URL
//! policies that validation applies, `LOG_FORMAT` …) comes from the worker's own `Settings`, so that the gateway
//! validates a request exactly as the workers behind it will.

use std::{sync::Arc, time::Duration};

use super::store::{RequestSeal, StoreConfig};
use crate::{
    secret::Secret,
    settings::{Env, Settings, SettingsError, invalid},
};

/// Where the workers are found (`GATEWAY_WORKERS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `http://…,http://…`: a fixed list (compose, tests). An address that stops answering stays on the list and
    /// is used again once it answers.
    Static(Vec<String>),
    /// `dns:tasks.<service>:<port>`: Swarm's embedded DNS, one address per running task, re-resolved every second.
    Dns { host: String, port: u16 },
    /// `docker:<service>[:<port>]`: the service's running tasks, from the Docker engine's API and its events.
    Docker { service: String, port: u16 },
}

#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// The variables both servers read, read exactly as a worker reads them.
    pub common: Settings,
    pub workers: Source,
    pub poll: Duration,
    /// 0 = no queue: with no idle worker, answer 429 at once.
    pub queue_max: usize,
    pub queue_timeout: Duration,
    /// How long a finished job and its events are kept for `GET /jobs/{jobId}…`.
    pub job_memory: Duration,
    /// Where fleet state lives (`GATEWAY_STORE`).
    pub store: StoreConfig,
    /// Events kept per job for replay (`GATEWAY_LOG_MAX_BYTES`); also the bound of what a relay buffers while the
    /// store is down.
    pub log_max_bytes: usize,
}

impl GatewaySettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let common = Settings::from_lookup(&lookup)?;
        let env = Env(&lookup);
        let raw = env
            .string("GATEWAY_WORKERS")
            .ok_or_else(|| invalid("GATEWAY_WORKERS", "required: dns:tasks.<service>:<port>, docker:<service>[:<port>] or a comma-separated list of http:// URLs"))?;
        let poll_ms: u64 = env.parse("GATEWAY_POLL_MS", 500)?;
        if poll_ms == 0 {
            return Err(invalid("GATEWAY_POLL_MS", "must be greater than 0"));
        }
        Ok(GatewaySettings {
            workers: parse_source(&raw).map_err(|m| invalid("GATEWAY_WORKERS", m))?,
            poll: Duration::from_millis(poll_ms),
            queue_max: env.parse("GATEWAY_QUEUE_MAX", 1000)?,
            queue_timeout: env.seconds("GATEWAY_QUEUE_TIMEOUT_SECONDS", 600)?,
            job_memory: env.seconds("GATEWAY_JOB_MEMORY_SECONDS", 600)?,
            store: store_config(&env)?,
            log_max_bytes: env.positive("GATEWAY_LOG_MAX_BYTES", 64 * 1024 * 1024)?,
            common,
        })
    }
}

/// `GATEWAY_STORE`: `memory` (the default) or a Redis URL; its password may come from a file (a Swarm secret).
fn store_config(env: &Env<'_>) -> Result<StoreConfig, SettingsError> {
    const VAR: &str = "GATEWAY_STORE";
    let password = match env.string("GATEWAY_STORE_PASSWORD_FILE") {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid("GATEWAY_STORE_PASSWORD_FILE", format!("cannot read {path}: {e}")))?;
            Some(Secret::new(text.trim()))
        }
    };
    // Read whatever the store, so that a bad value is found at once; only a shared store keeps requests to seal.
    let seal = store_seal(env)?;
    match env.string(VAR).as_deref() {
        None | Some("memory") => Ok(StoreConfig::Memory),
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            // Checked now, so that a typo stops the gateway instead of every request; the message never repeats
            // the URL, which may hold the password.
            redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(|e| invalid(VAR, format!("not a Redis URL: {:?}", e.kind())))?;
            Ok(StoreConfig::Redis {
                url: url.to_string(),
                password,
                seal,
            })
        }
        Some(_) => Err(invalid(
            VAR,
            "expected memory, redis://[user:password@]host:port[/db] or rediss://…",
        )),
    }
}

/// `GATEWAY_STORE_KEY`, or the file `GATEWAY_STORE_KEY_FILE` names (a Swarm secret): what seals the waiting
/// requests in a shared store. Every gateway of the fleet needs the same one.
fn store_seal(env: &Env<'_>) -> Result<Option<Arc<RequestSeal>>, SettingsError> {
    let (var, secret) = match (env.string("GATEWAY_STORE_KEY"), env.string("GATEWAY_STORE_KEY_FILE")) {
        (Some(key), _) => ("GATEWAY_STORE_KEY", Secret::new(key.trim())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid("GATEWAY_STORE_KEY_FILE", format!("cannot read {path}: {e}")))?;
            ("GATEWAY_STORE_KEY_FILE", Secret::new(text.trim()))
        }
        (None, None) => return Ok(None),
    };
    RequestSeal::new(&secret)
        .map(|seal| Some(Arc::new(seal)))
        .map_err(|e| invalid(var, e))
}

const DEFAULT_WORKER_PORT: u16 = 5000;

fn parse_source(raw: &str) -> Result<Source, String> {
    if let Some(rest) = raw.strip_prefix("dns:") {
        let (host, port) = host_port(rest)?;
        return Ok(Source::Dns { host, port });
    }
    if let Some(rest) = raw.strip_prefix("docker:") {
        let (service, port) = host_port(rest)?;
        return Ok(Source::Docker { service, port });
    }
    let urls = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| match reqwest::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() && url.path() == "/" => {
                Ok(u.trim_end_matches('/').to_string())
            }
            _ => Err(format!("{u:?} is not an http(s) base URL (scheme, host and port only)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("names no worker".into());
    }
    Ok(Source::Static(urls))
}

fn host_port(raw: &str) -> Result<(String, u16), String> {
    let (host, port) = match raw.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| format!("{port:?} is not a port"))?),
        None => (raw, DEFAULT_WORKER_PORT),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{raw:?} does not name a host or service"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<GatewaySettings, SettingsError> {
        GatewaySettings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn a_store_key_seals_a_redis_store_and_a_short_one_stops_start_up() {
        let workers = ("GATEWAY_WORKERS", "http://127.0.0.1:9");
        let redis = ("GATEWAY_STORE", "redis://127.0.0.1:6379");
        let key = ("GATEWAY_STORE_KEY", "a-fleet-store-key-of-more-than-32-characters");
        let s = settings(&[workers, redis, key]).unwrap();
        assert!(matches!(s.store, StoreConfig::Redis { seal: Some(_), .. }));
        let s = settings(&[workers, redis]).unwrap();
        assert!(matches!(s.store, StoreConfig::Redis { seal: None, .. }));

        let error = settings(&[workers, ("GATEWAY_STORE_KEY", "short")]).unwrap_err();
        assert_eq!(error.var, "GATEWAY_STORE_KEY");
        let error = settings(&[workers, ("GATEWAY_STORE_KEY_FILE", "/nonexistent/store-key")]).unwrap_err();
        assert_eq!(error.var, "GATEWAY_STORE_KEY_FILE");
    }

    #[test]
    fn the_three_discovery_forms_parse() {
        let s = settings(&[("GATEWAY_WORKERS", "dns:tasks.worker:5000")]).unwrap();
        assert_eq!(
            s.workers,
            Source::Dns {
                host: "tasks.worker".into(),
                port: 5000
            }
        );
        let s = settings(&[("GATEWAY_WORKERS", "docker:fleet_worker")]).unwrap();
        assert_eq!(
            s.workers,
            Source::Docker {
                service: "fleet_worker".into(),
                port: 5000
            }
        );
        let s = settings(&[("GATEWAY_WORKERS", "http://127.0.0.1:15001, http://127.0.0.1:15002/")]).unwrap();
        assert_eq!(
            s.workers,
            Source::Static(vec!["http://127.0.0.1:15001".into(), "http://127.0.0.1:15002".into()])
        );
        assert_eq!((s.poll, s.queue_max), (Duration::from_millis(500), 1000));
        assert_eq!(
            (s.queue_timeout, s.job_memory),
            (Duration::from_secs(600), Duration::from_secs(600))
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(settings(&[]).unwrap_err().var, "GATEWAY_WORKERS");
        assert_eq!(
            settings(&[("GATEWAY_WORKERS", "dns:tasks.w:port")]).unwrap_err().var,
            "GATEWAY_WORKERS"
        );
        assert_eq!(
            settings(&[("GATEWAY_WORKERS", "ftp://x")]).unwrap_err().var,
            "GATEWAY_WORKERS"
        );
        assert_eq!(
            settings(&[("GATEWAY_WORKERS", "http://x/path")]).unwrap_err().var,
            "GATEWAY_WORKERS"
        );
        let bad = [("GATEWAY_WORKERS", "http://x:1"), ("GATEWAY_POLL_MS", "0")];
        assert_eq!(settings(&bad).unwrap_err().var, "GATEWAY_POLL_MS");
        let bad = [("GATEWAY_WORKERS", "http://x:1"), ("GATEWAY_QUEUE_MAX", "-1")];
        assert_eq!(settings(&bad).unwrap_err().var, "GATEWAY_QUEUE_MAX");
    }
}
