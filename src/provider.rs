//! The provider abstraction: one trait every coding-assistant CLI implements, the factory, and what the trait
//! shares (command plans, exit information, the child environment allow-list).

pub mod availability;
pub mod claude_code;
pub mod copilot;
pub mod cursor;
#[cfg(test)]
mod parser_testing;

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use async_trait::async_trait;

use crate::{
    error::ApiError,
    event::{EventKind, Failure, Usage},
    request::{Credential, JobRequest, ProviderOptions},
    settings::Settings,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    ClaudeCode,
    Cursor,
    Copilot,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 3] = [ProviderKind::ClaudeCode, ProviderKind::Cursor, ProviderKind::Copilot];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::ClaudeCode => "claude-code",
            ProviderKind::Cursor => "cursor",
            ProviderKind::Copilot => "copilot",
        }
    }

    pub fn binary(self, settings: &Settings) -> &Path {
        match self {
            ProviderKind::ClaudeCode => &settings.claude_bin,
            ProviderKind::Cursor => &settings.cursor_bin,
            ProviderKind::Copilot => &settings.copilot_bin,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            ProviderKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

/// Everything needed to start the CLI. The prompt travels on stdin, never on argv.
#[derive(Debug)]
pub struct CommandPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub stdin: String,
}

impl CommandPlan {
    /// Every CLI runs in the job's workspace with the prompt on stdin.
    pub fn in_workspace(program: PathBuf, args: Vec<String>, env: Vec<(String, String)>, ctx: &JobContext<'_>) -> Self {
        CommandPlan {
            program,
            args,
            env,
            cwd: ctx.workdir.to_path_buf(),
            stdin: ctx.request.prompt.clone(),
        }
    }
}

/// How the CLI process ended.
#[derive(Clone, Debug, Default)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr_tail: String,
}

impl ExitInfo {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown exit status".into(),
        }
    }

    /// Attaches what is known about the process to a failure.
    pub fn annotate(&self, mut failure: Failure) -> Failure {
        failure.exit_code = failure.exit_code.or(self.code).or(self.signal.map(|s| 128 + s));
        if failure.stderr_tail.is_none() && !self.stderr_tail.is_empty() {
            failure.stderr_tail = Some(self.stderr_tail.clone());
        }
        failure
    }
}

/// What a finished run amounts to, before git and the job add their parts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    pub session_id: Option<String>,
    pub result: Option<String>,
    pub duration_ms: u64,
    pub num_turns: u64,
    pub cost_usd: Option<f64>,
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Completed(RunSummary),
    Failed(Failure),
}

/// Turns the CLI's stdout, one line at a time, into normalized events. Pure and synchronous so that it can be
/// tested on recorded lines; all I/O lives in the process runner.
pub trait OutputParser: Send {
    fn push_line(&mut self, line: &str) -> Vec<EventKind>;
    fn session_id(&self) -> Option<&str>;
    /// Called once after the process ended; decides success or failure from what was seen and the exit.
    fn finish(&mut self, exit: &ExitInfo) -> Outcome;
}

/// Where one session of a provider lives on this replica: a file or a folder that holds the whole conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFiles {
    pub local: PathBuf,
}

/// Where a job runs and with what.
pub struct JobContext<'a> {
    pub settings: &'a Settings,
    pub request: &'a JobRequest,
    pub workdir: &'a Path,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Writes what the CLI needs (credential files) and builds its command. Fails with a terminal error
    /// (e.g. `auth_failed` when there are no credentials at all) before anything is started.
    async fn prepare(&self, ctx: &JobContext<'_>) -> Result<CommandPlan, Failure>;

    /// Undoes what `prepare` wrote that must not outlive the job (a request's credentials file).
    async fn cleanup(&self) {}

    fn parser(&self) -> Box<dyn OutputParser>;

    /// Where the CLI keeps `session_id` when it runs in `workdir`, so a session store can carry it to another
    /// replica. None: this provider's sessions cannot be carried.
    fn session_files(&self, _workdir: &Path, _session_id: &str) -> Option<SessionFiles> {
        None
    }
}

pub fn build(kind: ProviderKind, settings: &Settings) -> Box<dyn Provider> {
    match kind {
        ProviderKind::ClaudeCode => Box::new(claude_code::ClaudeCode::new(settings)),
        ProviderKind::Cursor => Box::new(cursor::Cursor::new(settings)),
        ProviderKind::Copilot => Box::new(copilot::Copilot::new(settings)),
    }
}

/// Refuses, at validation time, a credential the provider's CLI is known to reject, so the client learns it
/// before a job starts.
pub fn validate_credential(kind: ProviderKind, credential: &Credential) -> Result<(), ApiError> {
    match kind {
        ProviderKind::Copilot => copilot::validate_credential(credential),
        ProviderKind::ClaudeCode | ProviderKind::Cursor => Ok(()),
    }
}

/// Options are checked per provider, so an option a CLI cannot honour is refused instead of silently ignored.
pub fn validate_options(kind: ProviderKind, options: &ProviderOptions) -> Result<(), ApiError> {
    let field = |name: &str| format!("providerOptions.{name}");
    if let Some(model) = &options.model
        && (model.trim().is_empty() || model.starts_with('-'))
    {
        return Err(ApiError::invalid(
            field("model"),
            "model must be a non-empty model name",
        ));
    }
    if options.max_turns == Some(0) {
        return Err(ApiError::invalid(field("maxTurns"), "maxTurns must be at least 1"));
    }
    for (name, tools) in [
        ("allowedTools", &options.allowed_tools),
        ("disallowedTools", &options.disallowed_tools),
    ] {
        if let Some(tools) = tools
            && tools.iter().any(|t| t.trim().is_empty() || t.starts_with('-'))
        {
            return Err(ApiError::invalid(
                field(name),
                format!("{name} entries must be non-empty tool names"),
            ));
        }
    }
    match kind {
        ProviderKind::ClaudeCode => claude_code::validate_options(options),
        ProviderKind::Cursor | ProviderKind::Copilot => only_model(options),
    }
}

/// Cursor and Copilot take a model and nothing else of the options: their CLIs have no turn limit, permission
/// modes or system-prompt flag, and their tool names differ from the ones these lists hold.
fn only_model(options: &ProviderOptions) -> Result<(), ApiError> {
    let unsupported = [
        ("maxTurns", options.max_turns.is_some()),
        ("permissionMode", options.permission_mode.is_some()),
        ("allowedTools", options.allowed_tools.is_some()),
        ("disallowedTools", options.disallowed_tools.is_some()),
        ("appendSystemPrompt", options.append_system_prompt.is_some()),
    ];
    match unsupported.into_iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(ApiError::invalid(
            format!("providerOptions.{name}"),
            format!("{name} is not supported by this provider; only model is"),
        )),
        None => Ok(()),
    }
}

/// Variables every CLI may see. Everything else in the worker's environment (tokens of other services, the
/// worker's own secrets) stays out of the child.
const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// Worker variables that are never passed on, even when a provider prefix would match them.
const NEVER_PASSED: &[&str] = &[
    "CLAUDE_CODE_CREDENTIALS_JSON",
    "CLAUDE_CODE_CREDENTIALS_SECRET",
    "WORKER_API_TOKEN",
    "WEBHOOK_SECRET",
];

/// Builds a child environment from the allow-list plus a provider's own names and prefixes.
pub fn child_env(exact: &[&str], prefixes: &[&str]) -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| !NEVER_PASSED.contains(&k.as_str()))
        .filter(|(k, _)| {
            BASE_ENV.contains(&k.as_str()) || exact.contains(&k.as_str()) || prefixes.iter().any(|p| k.starts_with(p))
        })
        .collect()
}

pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: impl Into<String>) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.into()));
}

pub fn get_env<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}
