//! What a provider is: the traits a coding-assistant CLI implements, and the values it exchanges with the job
//! pipeline (the request's part for it, the context of a run, the prepared run).

use std::{
    fmt,
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use serde_json::Value;

use super::{
    env::{Variables, worker_var},
    mcp::McpPolicy,
    private_files::Cleanup,
};
use crate::{
    broker::{BrokerAddress, ModelApi, ModelEndpoint},
    error::ApiError,
    event::Failure,
    process::{CommandPlan, OutputParser},
};

/// A coding-assistant CLI as the worker knows it. Implemented by a unit struct, listed once in the registry.
pub trait Provider: Sync {
    /// The name requests pick it by (`codingAssistantProvider`), also its key in `/health` and the session store.
    fn name(&self) -> &'static str;

    /// Where the CLI is: the variable that overrides it, and the program looked up on `PATH` without it.
    fn binary(&self) -> Binary;

    /// The worker variables this CLI reads; they, and nothing else of the worker's environment but the basics,
    /// reach its process.
    fn variables(&self) -> Variables;

    /// Turns the request's credential and `providerOptions` into this provider's own typed input. Anything it
    /// cannot use is refused here, naming the field, before the job slot is taken.
    fn configure(&self, request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError>;

    /// Whether it can run over the Agent Client Protocol (`approvals`, docs/approvals.md).
    fn acp(&self) -> AcpSupport {
        AcpSupport::No
    }

    /// How its CLI reaches its model API, so that the worker's broker can stand in between and keep the key
    /// (docs/providers.md#the-model-api-broker). None: the CLI cannot be given another endpoint, and keeps its key.
    fn model_endpoint(&self) -> Option<ModelEndpoint> {
        None
    }

    /// Its CLI's model endpoint lives in the run's configuration files, not in variables: each run points it at
    /// the broker itself (`ProviderRun::route_to_broker`).
    fn routes_itself_to_broker(&self) -> bool {
        false
    }

    /// The worker's settings that name the real model APIs behind its broker (`ANTHROPIC_UPSTREAM_URL`): read
    /// and checked at start, withheld from every CLI.
    fn upstream_vars(&self) -> Vec<&'static str> {
        self.model_endpoint().and_then(|e| e.upstream_var).into_iter().collect()
    }

    /// Whether its runs can go through the worker's model-API broker at all.
    fn brokerable(&self) -> bool {
        self.model_endpoint().is_some() || self.routes_itself_to_broker()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpSupport {
    /// Headless only: a request with `approvals` is refused.
    No,
    /// Headless, or over ACP when the request asks for approvals.
    Optional,
    /// Over ACP always (the `ACP_AGENTS`): without `approvals` every permission request is allowed.
    Only,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binary {
    pub var: &'static str,
    pub default: &'static str,
}

impl Binary {
    /// The program as the worker's environment names it now: for an ACP adapter, which is found like a CLI but
    /// only needed by the runs that ask for approvals.
    pub fn program(self) -> PathBuf {
        worker_var(self.var).unwrap_or_else(|| self.default.to_string()).into()
    }
}

/// The request's part for its provider, as the client sent it.
#[derive(Debug, Default)]
pub struct ProviderRequest {
    /// `codingAssistantAccessToken`: a string, or a JSON object for the providers that take a credentials file.
    pub credential: Option<Value>,
    /// `providerOptions`.
    pub options: Option<Value>,
    /// What the worker allows `providerOptions.mcpServers` to hold (`take_mcp_servers`).
    pub mcp_policy: McpPolicy,
    /// The run goes over ACP (`approvals`): options only the headless command line can carry are refused.
    pub acp: bool,
}

/// One run of a provider, configured from a request. Holds the typed credential and options, so that nothing
/// downstream parses them again.
#[async_trait]
pub trait ProviderRun: Send + Sync + fmt::Debug {
    /// The secrets the request brought for the CLI (the credential and the tokens inside it), for redaction.
    fn secrets(&self) -> Vec<&str> {
        Vec::new()
    }

    /// Writes what the CLI needs (credential and config files) and builds its command and parser. Fails with a
    /// terminal error (e.g. `auth_failed` when there are no credentials at all) before anything is started.
    async fn prepare(&self, ctx: &RunContext<'_>) -> Result<PreparedRun, Failure>;

    /// Like `prepare`, for the agent over ACP: the command that starts it as an ACP server. Only called when the
    /// provider's `acp()` says it has that path.
    async fn prepare_acp(&self, _ctx: &RunContext<'_>) -> Result<AcpPrepared, Failure> {
        Err(Failure::new(
            crate::event::ErrorCode::Internal,
            "this provider has no ACP path",
        ))
    }

    /// Where the CLI keeps session `session_id` in this run, so that a session store can carry it to another
    /// replica. None: this provider's sessions are not carried.
    fn session_files(&self, _ctx: &RunContext<'_>, _session_id: &str) -> Option<SessionFiles> {
        None
    }

    /// Called after the run, when a session store is about to save session `session_id`: a CLI that keeps its
    /// sessions where they cannot be copied one at a time (one database for all of them) writes this one out to
    /// its `session_files` place here, and reads it back in its `prepare` after a restore. CLIs that keep each
    /// session in files of its own need nothing.
    async fn export_session(&self, _ctx: &RunContext<'_>, _session_id: &str) -> std::io::Result<()> {
        Ok(())
    }

    /// For a provider that `routes_itself_to_broker`, after `prepare`: points the prepared run (its environment
    /// `env`, the files it names) at the broker's `base_url`, with its `placeholder` wherever the real key was,
    /// and returns what it took out. None: this run keeps its path (no key, a sign-in).
    async fn route_to_broker(
        &self,
        _env: &mut Vec<(String, String)>,
        _broker: &BrokerAddress<'_>,
    ) -> Result<Option<ModelApi>, Failure> {
        Ok(None)
    }
}

/// Where and with what one run happens.
#[derive(Clone, Copy, Debug)]
pub struct RunContext<'a> {
    /// The CLI, as `Settings` resolved it from the provider's binary variable.
    pub binary: &'a Path,
    /// The workspace: the CLI's working directory.
    pub workdir: &'a Path,
    /// A folder of this job only, outside the workspace (the agent does not see it, git does not list it), mode
    /// 0700, removed after the job: for a CLI's home, config and credential files.
    pub private_dir: &'a Path,
    pub prompt: &'a str,
    pub resume_session_id: Option<&'a str>,
    /// With the model-API broker on: until when a credential the broker holds for the run must stay valid (the
    /// job's deadline). A credential that expires sooner is one the CLI must be able to refresh itself, so it
    /// keeps today's path. None: no broker.
    pub broker_until: Option<std::time::SystemTime>,
}

impl RunContext<'_> {
    /// Every CLI runs in the workspace with the prompt on stdin.
    pub fn plan(&self, args: Vec<String>, env: Vec<(String, String)>) -> CommandPlan {
        CommandPlan {
            program: self.binary.to_path_buf(),
            args,
            env,
            cwd: self.workdir.to_path_buf(),
            stdin: self.prompt.to_string(),
        }
    }
}

/// A run ready for the process runner. The parser is built together with the plan, so what the plan fixed (a
/// session id chosen up front) is handed to it directly.
pub struct PreparedRun {
    pub plan: CommandPlan,
    pub parser: Box<dyn OutputParser>,
    /// What `prepare` wrote that must not outlive the job; run after the CLI ended, whatever the outcome.
    pub cleanup: Cleanup,
}

/// An agent ready to be spoken to over ACP.
pub struct AcpPrepared {
    pub plan: CommandPlan,
    /// The job's MCP servers in ACP's form, for `session/new`.
    pub mcp_servers: Vec<Value>,
    pub cleanup: Cleanup,
}

/// Where one session of a provider lives on this replica: a file or a folder that holds the whole conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFiles {
    pub local: PathBuf,
}
