//! Typed configuration read once from the environment (docs/configuration.md); a bad value stops start-up naming the variable.
//! The providers' part (where each CLI is, which of their variables are secrets) is read by walking the
//! provider registry, so a new provider needs no setting here.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::{
    broker::{BrokerConfig, Budget, Prices},
    provider::ProviderKind,
    secret::{Secret, tokens_in_json},
};

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct SettingsError {
    pub var: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub workspace_dir: PathBuf,
    pub keep_workspace: bool,
    pub worker_id: String,
    pub api_token: Option<Secret>,
    pub exit_after_job: bool,
    pub job_timeout: Duration,
    pub idle_timeout: Duration,
    pub clone_timeout: Duration,
    pub kill_grace: Duration,
    pub flush_timeout: Duration,
    pub linger: Duration,
    pub retry_after_seconds: u64,
    pub keepalive: Duration,
    pub max_body_bytes: usize,
    /// `BODY_TIMEOUT_SECONDS`: the whole request body must arrive within this of its head, and the head within
    /// this of the connection opening; a client that trickles or stalls gets `408` and its connection closed.
    pub body_timeout: Duration,
    /// `KEEP_ALIVE_SECONDS`: how long an idle connection is kept between requests; zero closes it after each one.
    pub keep_alive: Duration,
    /// `MAX_CONNECTIONS`: connections this process serves at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    pub event_log_max_bytes: usize,
    pub tool_output_max_bytes: usize,
    pub max_line_bytes: usize,
    pub git_allowed_hosts: Vec<String>,
    pub git_allow_insecure: bool,
    pub github_api_url: String,
    /// Author and committer of the commit a `github.push` makes.
    pub git_author_name: String,
    pub git_author_email: String,
    pub db_base_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    /// `WEBHOOK_SECRET` decoded once at start, so a malformed `whsec_` secret stops the worker instead of a job.
    pub webhook_key: Option<crate::webhook::SigningKey>,
    pub webhook_timeout: Duration,
    /// One persistence or webhook attempt; retries are bounded by the drain, not by this.
    pub outbound_request_timeout: Duration,
    pub callback_allowed_hosts: Vec<String>,
    pub callback_allow_insecure: bool,
    /// `MCP_ALLOWED_COMMANDS`: the programs a job's stdio MCP server may run, exactly as listed (names are
    /// case-sensitive); None: any.
    pub mcp_allowed_commands: Option<Vec<String>>,
    pub session_store_dir: Option<PathBuf>,
    /// `SESSION_SNAPSHOT_MAX_BYTES`: the most file content a work tree snapshot may add to its base commit;
    /// above it the session is saved without its work tree.
    pub session_snapshot_max_bytes: u64,
    /// Each provider's CLI: its binary variable (`CLAUDE_BIN`, …) or the provider's default program name.
    pub binaries: HashMap<ProviderKind, PathBuf>,
    pub log_format: LogFormat,
    /// Credentials the worker holds in its own environment for the providers; redacted like request secrets.
    pub provider_secrets: Vec<Secret>,
    /// `BROKER` (on by default): each job's CLI reaches its model API through a broker of the job's own and never
    /// holds the key (docs/providers.md#the-model-api-broker). None (`BROKER=off`): the key goes to the CLI.
    pub broker: Option<BrokerConfig>,
    /// `LIMIT_MAX_TOKENS`, `LIMIT_MAX_COST_USD`, `LIMIT_MAX_MODEL_CALLS`: the budget of a request without `limits`.
    pub limits: Budget,
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every variable through `lookup` so tests can build settings without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let env = Env(&lookup);
        // Registered before anything lists the providers, so that `acp:<name>` is one of them.
        if let Some(raw) = env.string("ACP_AGENTS") {
            crate::provider::acp_agents::register(
                crate::provider::acp_agents::parse(&raw).map_err(|e| invalid("ACP_AGENTS", e))?,
            );
        }
        Ok(Settings {
            host: env.string("HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: env.parse("PORT", 5000)?,
            workspace_dir: env
                .string("WORKSPACE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("unified-worker")),
            keep_workspace: env.flag("KEEP_WORKSPACE", false)?,
            worker_id: env.string("WORKER_ID").unwrap_or_else(hostname),
            api_token: env.secret("WORKER_API_TOKEN")?,
            exit_after_job: env.flag("EXIT_AFTER_JOB", true)?,
            job_timeout: env.seconds("JOB_TIMEOUT_SECONDS", 3600)?,
            idle_timeout: env.seconds("IDLE_TIMEOUT_SECONDS", 900)?,
            clone_timeout: env.seconds("CLONE_TIMEOUT_SECONDS", 600)?,
            kill_grace: env.seconds("KILL_GRACE_SECONDS", 5)?,
            flush_timeout: env.seconds("FLUSH_TIMEOUT_SECONDS", 20)?,
            linger: env.seconds("LINGER_SECONDS", 30)?,
            retry_after_seconds: env.parse("RETRY_AFTER_SECONDS", 5)?,
            keepalive: env.seconds("SSE_KEEPALIVE_SECONDS", 15)?,
            max_body_bytes: env.positive("MAX_BODY_BYTES", 2 * 1024 * 1024)?,
            body_timeout: match env.seconds("BODY_TIMEOUT_SECONDS", 10)? {
                d if d.is_zero() => return Err(invalid("BODY_TIMEOUT_SECONDS", "must be greater than 0")),
                d => d,
            },
            keep_alive: env.seconds("KEEP_ALIVE_SECONDS", 75)?,
            max_connections: env.positive("MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)?,
            event_log_max_bytes: env.positive("EVENT_LOG_MAX_BYTES", 64 * 1024 * 1024)?,
            tool_output_max_bytes: env.positive("TOOL_OUTPUT_MAX_BYTES", 64 * 1024)?,
            max_line_bytes: env.positive("MAX_LINE_BYTES", 32 * 1024 * 1024)?,
            git_allowed_hosts: env
                .list("GIT_ALLOWED_HOSTS")
                .unwrap_or_else(|| vec!["github.com".into()]),
            git_allow_insecure: env.flag("GIT_ALLOW_INSECURE", false)?,
            github_api_url: env
                .string("GITHUB_API_URL")
                .unwrap_or_else(|| "https://api.github.com".into())
                .trim_end_matches('/')
                .to_string(),
            git_author_name: env.string("GIT_AUTHOR_NAME").unwrap_or_else(|| "unified-worker".into()),
            git_author_email: env
                .string("GIT_AUTHOR_EMAIL")
                .unwrap_or_else(|| "unified-worker@localhost".into()),
            db_base_url: env.base_url("DB_BASE_URL")?,
            webhook_key: env
                .string("WEBHOOK_SECRET")
                .map(|s| crate::webhook::SigningKey::parse(&s))
                .transpose()
                .map_err(|e| invalid("WEBHOOK_SECRET", e.to_string()))?,
            webhook_secret: env.secret("WEBHOOK_SECRET")?,
            webhook_timeout: env.seconds("WEBHOOK_TIMEOUT_SECONDS", 10)?,
            outbound_request_timeout: env.seconds("OUTBOUND_REQUEST_TIMEOUT_SECONDS", 10)?,
            callback_allowed_hosts: env.list("CALLBACK_ALLOWED_HOSTS").unwrap_or_default(),
            callback_allow_insecure: env.flag("CALLBACK_ALLOW_INSECURE", false)?,
            mcp_allowed_commands: env.string("MCP_ALLOWED_COMMANDS").map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect()
            }),
            session_store_dir: env.string("SESSION_STORE_DIR").map(PathBuf::from),
            session_snapshot_max_bytes: env.positive("SESSION_SNAPSHOT_MAX_BYTES", 256 * 1024 * 1024)? as u64,
            binaries: ProviderKind::all()
                .map(|kind| {
                    let binary = kind.provider().binary();
                    (
                        kind,
                        env.string(binary.var).unwrap_or_else(|| binary.default.into()).into(),
                    )
                })
                .collect(),
            log_format: match env.string("LOG_FORMAT").as_deref() {
                None | Some("pretty") => LogFormat::Pretty,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(invalid("LOG_FORMAT", format!("expected json or pretty, got {other:?}")));
                }
            },
            provider_secrets: provider_secrets(&env),
            broker: broker(&env)?,
            limits: Budget {
                max_tokens: env.optional_positive("LIMIT_MAX_TOKENS")?,
                max_cost_usd: env.optional_dollars("LIMIT_MAX_COST_USD")?,
                max_model_calls: env.optional_positive("LIMIT_MAX_MODEL_CALLS")?,
            },
        })
    }

    /// Every secret the worker itself holds, for the redactor of each job.
    pub fn worker_secrets(&self) -> Vec<&str> {
        [&self.api_token, &self.webhook_secret]
            .into_iter()
            .flatten()
            .chain(&self.provider_secrets)
            .map(Secret::expose)
            .collect()
    }

    /// The time a SIGTERM may take before the process is gone; the stack's stop_grace_period must exceed it.
    /// The completion webhook is sent after the flush with its own bound, so it counts too.
    pub fn shutdown_bound(&self) -> Duration {
        self.kill_grace + self.flush_timeout + self.webhook_timeout
    }

    /// The CLI of `provider`.
    pub fn binary(&self, provider: ProviderKind) -> &Path {
        self.binaries
            .get(&provider)
            .map(PathBuf::as_path)
            .unwrap_or_else(|| Path::new(provider.provider().binary().default))
    }
}

/// Above the gateway's default line (`GATEWAY_QUEUE_MAX` 1000) plus the running streams and followers, and below
/// the 256 MB the stack gives a gateway with room to spare: 4096 connections that trickle their bodies took a
/// gateway to 183 MiB (`bench/run.sh abuse`), 2048 to about half of that.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;

/// Both servers run this many HTTP threads; actix counts `max_connections` per thread.
pub const HTTP_THREADS: usize = 2;

impl Settings {
    /// `MAX_CONNECTIONS` split over the HTTP threads (rounded up, so the process never serves fewer than asked).
    pub fn max_connections_per_thread(&self) -> usize {
        self.max_connections.div_ceil(HTTP_THREADS).max(1)
    }
}

/// GitHub tokens a worker may hold for other tools; no CLI gets them, and they are never emitted either.
const OTHER_SECRET_VARS: &[&str] = &["GH_TOKEN", "GITHUB_TOKEN"];

/// The credentials among the providers' variables, and the tokens inside those that are credentials files
/// (they can show up in output on their own). Too short to redact safely: skipped, as they cannot be told
/// apart from ordinary text.
fn provider_secrets(env: &Env<'_>) -> Vec<Secret> {
    let vars = ProviderKind::all()
        .flat_map(|kind| kind.provider().variables().secrets)
        .chain(OTHER_SECRET_VARS);
    let mut secrets = Vec::new();
    for value in vars.filter_map(|var| env.string(var)) {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&value) {
            secrets.extend(tokens_in_json(&json).into_iter().map(Secret::new));
        }
        if value.len() >= crate::secret::MIN_SECRET_LEN {
            secrets.push(Secret::new(value));
        }
    }
    secrets
}

/// The brokers' settings, or None with `BROKER=off`. Each provider endpoint's upstream setting is read once and
/// checked as an http(s) URL; a `PRICES_FILE` that cannot be read or parsed stops start-up.
fn broker(env: &Env<'_>) -> Result<Option<BrokerConfig>, SettingsError> {
    // Every variable is read whether or not the broker is on, so that a bad value is found at once.
    let on = env.flag("BROKER", true)?;
    let allow_insecure_upstream = env.flag("BROKER_ALLOW_INSECURE_UPSTREAM", false)?;
    let mut upstreams = HashMap::new();
    for var in ProviderKind::all().flat_map(|kind| kind.provider().upstream_vars()) {
        if let Some(url) = env.base_url(var)? {
            upstreams.insert(var, url);
        }
    }
    let prices = match env.string("PRICES_FILE") {
        None => Prices::default(),
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|json| Prices::with_overrides(&json))
            .map_err(|e| invalid("PRICES_FILE", format!("{path}: {e}")))?,
    };
    Ok(on.then(|| BrokerConfig {
        allow_insecure_upstream,
        upstreams,
        prices: Arc::new(prices),
    }))
}

pub(crate) fn invalid(var: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        var,
        message: message.into(),
    }
}

/// Typed reads of one variable each; the gateway's settings use them too.
pub(crate) struct Env<'a>(pub(crate) &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// Empty values count as unset: `FOO=` in a compose file usually means "no value".
    pub(crate) fn string(&self, var: &str) -> Option<String> {
        (self.0)(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    pub(crate) fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, SettingsError>
    where
        T::Err: fmt::Display,
    {
        match self.string(var) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e| invalid(var, format!("{raw:?}: {e}"))),
        }
    }

    pub(crate) fn positive(&self, var: &'static str, default: usize) -> Result<usize, SettingsError> {
        let value: usize = self.parse(var, default)?;
        if value == 0 {
            return Err(invalid(var, "must be greater than 0"));
        }
        Ok(value)
    }

    /// Seconds may be fractional so that tests can use sub-second timeouts; negative or NaN values are refused.
    pub(crate) fn seconds(&self, var: &'static str, default: u64) -> Result<Duration, SettingsError> {
        match self.string(var) {
            None => Ok(Duration::from_secs(default)),
            Some(raw) => {
                let secs: f64 = raw
                    .parse()
                    .map_err(|_| invalid(var, format!("{raw:?} is not a number of seconds")))?;
                Duration::try_from_secs_f64(secs).map_err(|_| invalid(var, format!("{raw:?} is not a valid duration")))
            }
        }
    }

    /// An http(s) base URL without a trailing slash.
    pub(crate) fn base_url(&self, var: &'static str) -> Result<Option<String>, SettingsError> {
        let Some(raw) = self.string(var) else {
            return Ok(None);
        };
        match reqwest::Url::parse(&raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                Ok(Some(raw.trim_end_matches('/').to_string()))
            }
            _ => Err(invalid(var, format!("{raw:?} is not an http(s) URL"))),
        }
    }

    pub(crate) fn flag(&self, var: &'static str, default: bool) -> Result<bool, SettingsError> {
        match self.string(var).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(invalid(var, format!("expected true or false, got {other:?}"))),
        }
    }

    fn optional_positive(&self, var: &'static str) -> Result<Option<u64>, SettingsError> {
        match self.string(var) {
            None => Ok(None),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(invalid(var, format!("{raw:?} is not a whole number greater than 0"))),
            },
        }
    }

    fn optional_dollars(&self, var: &'static str) -> Result<Option<f64>, SettingsError> {
        match self.string(var) {
            None => Ok(None),
            Some(raw) => match raw.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                _ => Err(invalid(
                    var,
                    format!("{raw:?} is not an amount of dollars greater than 0"),
                )),
            },
        }
    }

    pub(crate) fn list(&self, var: &str) -> Option<Vec<String>> {
        self.string(var).map(|raw| {
            raw.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        })
    }

    /// Secrets shorter than 8 characters are refused: redaction of a 3-letter token would mangle ordinary output,
    /// and not redacting it would leak it.
    pub(crate) fn secret(&self, var: &'static str) -> Result<Option<Secret>, SettingsError> {
        // Trimmed like every other value: a secret file read with `$(cat …)` keeps its newline, and an untrimmed
        // secret would neither match a bearer token nor be found by the redactor.
        match self.string(var) {
            None => Ok(None),
            Some(v) if v.len() < crate::secret::MIN_SECRET_LEN => Err(invalid(
                var,
                format!("must be at least {} characters long", crate::secret::MIN_SECRET_LEN),
            )),
            Some(v) => Ok(Some(Secret::new(v))),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unified-worker".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 5000);
        assert_eq!(s.job_timeout, Duration::from_secs(3600));
        assert_eq!(s.idle_timeout, Duration::from_secs(900));
        assert_eq!(s.max_body_bytes, 2_097_152);
        assert_eq!(s.event_log_max_bytes, 67_108_864);
        assert_eq!(s.git_allowed_hosts, vec!["github.com".to_string()]);
        assert!(s.exit_after_job);
        assert_eq!(s.body_timeout, Duration::from_secs(10));
        assert_eq!(s.keep_alive, Duration::from_secs(75));
        assert_eq!(s.max_connections, 2048);
        assert_eq!(s.max_connections_per_thread(), 1024);
    }

    #[test]
    fn front_door_limits_are_checked() {
        assert_eq!(
            settings(&[("BODY_TIMEOUT_SECONDS", "0")]).unwrap_err().var,
            "BODY_TIMEOUT_SECONDS"
        );
        assert_eq!(
            settings(&[("MAX_CONNECTIONS", "0")]).unwrap_err().var,
            "MAX_CONNECTIONS"
        );
        let s = settings(&[
            ("MAX_CONNECTIONS", "3"),
            ("KEEP_ALIVE_SECONDS", "0"),
            ("BODY_TIMEOUT_SECONDS", "0.5"),
        ])
        .unwrap();
        assert_eq!(s.max_connections_per_thread(), 2);
        assert!(s.keep_alive.is_zero());
        assert_eq!(s.body_timeout, Duration::from_millis(500));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = settings(&[("PORT", "eighty")]).unwrap_err();
        assert_eq!(err.var, "PORT");
        let err = settings(&[("EXIT_AFTER_JOB", "maybe")]).unwrap_err();
        assert_eq!(err.var, "EXIT_AFTER_JOB");
        let err = settings(&[("IDLE_TIMEOUT_SECONDS", "-1")]).unwrap_err();
        assert_eq!(err.var, "IDLE_TIMEOUT_SECONDS");
        let err = settings(&[("WORKER_API_TOKEN", "short")]).unwrap_err();
        assert_eq!(err.var, "WORKER_API_TOKEN");
        assert!(!err.to_string().contains("short"), "the error must not echo the secret");
    }

    #[test]
    fn persistence_and_webhook_settings_are_checked_at_start() {
        assert_eq!(
            settings(&[("DB_BASE_URL", "db.internal")]).unwrap_err().var,
            "DB_BASE_URL"
        );
        let s = settings(&[("DB_BASE_URL", "http://db.internal:8080/api/")]).unwrap();
        assert_eq!(s.db_base_url.as_deref(), Some("http://db.internal:8080/api"));
        let err = settings(&[("WEBHOOK_SECRET", "whsec_%%%not-base64%%%")]).unwrap_err();
        assert_eq!(err.var, "WEBHOOK_SECRET");
        assert!(
            !err.to_string().contains("not-base64"),
            "the error must not echo the secret"
        );
        let s = settings(&[("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]).unwrap();
        assert!(s.webhook_key.is_some());
        assert_eq!(s.shutdown_bound(), Duration::from_secs(5 + 20 + 10));
    }

    #[test]
    fn binaries_and_provider_secrets_come_from_the_registry() {
        let s = settings(&[
            ("COPILOT_BIN", "/opt/copilot"),
            ("CURSOR_API_KEY", "cursor-key-123"),
            (
                "CLAUDE_CODE_CREDENTIALS_JSON",
                r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-inner"}}"#,
            ),
        ])
        .unwrap();
        let copilot: ProviderKind = "copilot".parse().unwrap();
        assert_eq!(s.binary(copilot), Path::new("/opt/copilot"));
        assert_eq!(s.binary("claude-code".parse().unwrap()), Path::new("claude"));
        let secrets = s.worker_secrets();
        assert!(secrets.contains(&"cursor-key-123"), "{:?}", s.provider_secrets);
        assert!(secrets.contains(&"sk-ant-oat01-inner"), "{:?}", s.provider_secrets);
    }

    #[test]
    fn mcp_allowed_commands_keep_their_case_and_unset_allows_any() {
        assert_eq!(settings(&[]).unwrap().mcp_allowed_commands, None);
        let s = settings(&[("MCP_ALLOWED_COMMANDS", " python3, /opt/MCP/server ,")]).unwrap();
        assert_eq!(
            s.mcp_allowed_commands,
            Some(vec!["python3".to_string(), "/opt/MCP/server".to_string()])
        );
    }

    #[test]
    fn fractional_seconds_and_host_lists_parse() {
        let s = settings(&[
            ("LINGER_SECONDS", "0.5"),
            ("GIT_ALLOWED_HOSTS", " GitHub.com, 127.0.0.1 ,"),
        ])
        .unwrap();
        assert_eq!(s.linger, Duration::from_millis(500));
        assert_eq!(
            s.git_allowed_hosts,
            vec!["github.com".to_string(), "127.0.0.1".to_string()]
        );
    }
}
