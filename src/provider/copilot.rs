//! GitHub Copilot CLI: its variables, its token (and the token kind it refuses), its command line (MCP servers
//! included) and where it keeps sessions. The JSONL parser lives in `parser`.

mod parser;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
pub use parser::CopilotParser;
use serde_json::{Value, json};

use super::{
    AcpPrepared, AcpSupport, Binary, Cleanup, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext, SessionFiles, Variables,
    env::{child_env, get_env, set_env},
    input::{self, ModelOnly},
    mcp::{self, McpServer, McpServers, McpTransport},
};
use crate::{
    broker::ModelEndpoint,
    error::ApiError,
    event::{ErrorCode, Failure},
    secret::Secret,
};

pub struct Copilot;

const TOKEN_VAR: &str = "COPILOT_GITHUB_TOKEN";

/// Every `COPILOT_*` variable is Copilot's own: the token, `COPILOT_HOME` and the bring-your-own-key settings
/// (`COPILOT_OFFLINE`, `COPILOT_PROVIDER_BASE_URL`, `COPILOT_PROVIDER_TYPE`, `COPILOT_PROVIDER_API_KEY`,
/// `COPILOT_MODEL`, …). `GH_TOKEN`/`GITHUB_TOKEN`, which the CLI would also read, are the repository's
/// credentials and stay out.
const VARIABLES: Variables = Variables {
    names: &[],
    prefixes: &["COPILOT_"],
    withheld: &[],
    secrets: &[TOKEN_VAR, "COPILOT_PROVIDER_API_KEY"],
};

impl Provider for Copilot {
    fn name(&self) -> &'static str {
        "copilot"
    }

    fn binary(&self) -> Binary {
        Binary {
            var: "COPILOT_BIN",
            default: "copilot",
        }
    }

    fn variables(&self) -> Variables {
        VARIABLES
    }

    fn acp(&self) -> AcpSupport {
        AcpSupport::Optional
    }

    /// Bring-your-own-key only: the operator's `COPILOT_PROVIDER_BASE_URL` is the upstream and its key stays
    /// with the worker. Signed in to GitHub, the CLI talks to GitHub's service with the GitHub token, as before.
    fn model_endpoint(&self) -> Option<ModelEndpoint> {
        Some(ModelEndpoint {
            base_url_var: "COPILOT_PROVIDER_BASE_URL",
            key_vars: &["COPILOT_PROVIDER_API_KEY"],
            upstream_var: None,
            default_upstream: None,
        })
    }

    fn configure(&self, mut request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError> {
        let token = request.credential.take().map(input::token_only).transpose()?;
        // Classic personal access tokens cannot call the Copilot API; the CLI would only fail later with a
        // vaguer message.
        if token.as_ref().is_some_and(|t| t.expose().starts_with("ghp_")) {
            return Err(ApiError::invalid(
                input::CREDENTIAL_FIELD,
                "classic personal access tokens (ghp_…) are refused by the Copilot CLI; use a fine-grained token \
                 with the Copilot Requests permission or a gho_ OAuth token",
            ));
        }
        let mcp_servers = request.take_mcp_servers()?;
        Ok(Box::new(CopilotRun {
            token,
            // Its CLI has no turn limit, permission modes or system-prompt flag, and its tool names differ.
            options: ModelOnly::parse(request.options)?,
            mcp_servers,
        }))
    }
}

#[derive(Debug)]
struct CopilotRun {
    token: Option<Secret>,
    options: ModelOnly,
    mcp_servers: McpServers,
}

/// The job's MCP servers, for `--additional-mcp-config @<file>` (a file, so that no env or header value is on
/// the command line).
const MCP_CONFIG_FILE: &str = "copilot-mcp-config.json";

/// An entry of Copilot's MCP config (`copilot mcp add --json` prints the same): its own name for a stdio server,
/// and every tool of the server enabled. `--allow-all-tools` lets the agent call them without asking.
fn copilot_entry(server: &McpServer) -> Value {
    match server.transport() {
        McpTransport::Stdio { command, args, env } => {
            json!({"type": "local", "command": command, "args": args, "env": env.to_json(), "tools": ["*"]})
        }
        McpTransport::Http { url, headers } => {
            json!({"type": "http", "url": url.as_str(), "headers": headers.to_json(), "tools": ["*"]})
        }
    }
}

impl CopilotRun {
    /// The job's MCP servers in a config file for `--additional-mcp-config`, if it has any.
    async fn write_mcp_config(&self, ctx: &RunContext<'_>) -> Result<Option<PathBuf>, Failure> {
        if self.mcp_servers.is_empty() {
            return Ok(None);
        }
        let document = json!({"mcpServers": self.mcp_servers.to_json(copilot_entry)});
        Ok(Some(mcp::write_config(ctx, MCP_CONFIG_FILE, &document).await?))
    }

    /// The CLI's variables with the request's token, or the reason there are no credentials at all.
    fn env(&self) -> Result<Vec<(String, String)>, Failure> {
        let mut env = child_env(&VARIABLES);
        match &self.token {
            Some(token) => set_env(&mut env, TOKEN_VAR, token.expose()),
            // A bring-your-own-key provider needs no GitHub sign-in.
            None if get_env(&env, TOKEN_VAR).is_some() || get_env(&env, "COPILOT_PROVIDER_BASE_URL").is_some() => {}
            None => {
                return Err(Failure::new(
                    ErrorCode::AuthFailed,
                    "no Copilot credentials: send codingAssistantAccessToken or configure the worker \
                     (COPILOT_GITHUB_TOKEN, or a bring-your-own-key COPILOT_PROVIDER_BASE_URL)",
                ));
            }
        }
        Ok(env)
    }

    /// `mcp_config`: the file holding the job's MCP servers, if it has any.
    fn args(&self, ctx: &RunContext<'_>, session_id: &str, mcp_config: Option<&Path>) -> Vec<String> {
        // No `-p`: it takes the prompt as its value, i.e. on argv. Piped stdin is read as the prompt of a
        // non-interactive run instead.
        let mut args: Vec<String> = ["--output-format", "json", "--allow-all-tools", "--no-auto-update"]
            .map(String::from)
            .to_vec();
        match ctx.resume_session_id {
            Some(id) => args.extend(["--resume".to_string(), id.to_string()]),
            // A new session gets its id from us, so `session` goes out before the first model call.
            None => args.extend(["--session-id".to_string(), session_id.to_string()]),
        }
        if let Some(model) = &self.options.model {
            args.extend(["--model".to_string(), model.clone()]);
        }
        if let Some(config) = mcp_config {
            args.extend([
                "--additional-mcp-config".to_string(),
                format!("@{}", config.display()),
            ]);
        }
        args
    }
}

#[async_trait]
impl ProviderRun for CopilotRun {
    fn secrets(&self) -> Vec<&str> {
        self.token.iter().map(Secret::expose).chain(self.mcp_servers.secrets()).collect()
    }

    async fn prepare(&self, ctx: &RunContext<'_>) -> Result<PreparedRun, Failure> {
        let env = self.env()?;
        let session_id = match ctx.resume_session_id {
            Some(id) => id.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let mcp_config = self.write_mcp_config(ctx).await?;
        Ok(PreparedRun {
            plan: ctx.plan(self.args(ctx, &session_id, mcp_config.as_deref()), env),
            parser: Box::new(CopilotParser::new(Some(session_id))),
            cleanup: Cleanup::default(),
        })
    }

    /// `copilot --acp`: the same variables and credentials; tools are not allowed up front, so it asks. Its ACP
    /// mode ignores `session/new`'s MCP servers (measured), so they go on the command line as in headless runs.
    async fn prepare_acp(&self, ctx: &RunContext<'_>) -> Result<AcpPrepared, Failure> {
        let mut args: Vec<String> = ["--acp", "--no-auto-update"].map(String::from).to_vec();
        if let Some(model) = &self.options.model {
            args.extend(["--model".to_string(), model.clone()]);
        }
        if let Some(config) = self.write_mcp_config(ctx).await? {
            args.extend([
                "--additional-mcp-config".to_string(),
                format!("@{}", config.display()),
            ]);
        }
        Ok(AcpPrepared {
            plan: ctx.plan(args, self.env()?),
            mcp_servers: Vec::new(),
            cleanup: Cleanup::default(),
        })
    }

    fn session_files(&self, _ctx: &RunContext<'_>, session_id: &str) -> Option<SessionFiles> {
        let env = child_env(&VARIABLES);
        let home = match get_env(&env, "COPILOT_HOME") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(get_env(&env, "HOME").unwrap_or("/tmp")).join(".copilot"),
        };
        Some(SessionFiles {
            local: home.join("session-state").join(session_id),
        })
    }
}
