//! OpenAI Codex CLI (`codex exec`): its variables, its credentials, its command line (MCP servers included) and
//! its home. Every run gets
//! a `CODEX_HOME` of its own inside the job's private folder, holding the operator's `config.toml` (model
//! providers, endpoints), the run's credentials and the session's rollout file. The JSONL parser lives in
//! `parser`; how a run is pointed at the model-API broker in `broker`.

mod broker;
mod parser;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
pub use parser::CodexParser;
use serde_json::{Value, json};

use super::{
    AcpPrepared, AcpSupport, Binary, Cleanup, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext, SessionFiles, Variables,
    env::{child_env, get_env, set_env, worker_var},
    input::{self, ModelOnly},
    mcp::{McpServer, McpServers, McpTransport, toml_inline},
    private_files::write_private,
};
use crate::{
    broker::{BrokerAddress, ModelApi},
    error::ApiError,
    event::{ErrorCode, Failure},
    secret::{Secret, tokens_in_json},
};

pub struct Codex;

/// `codex exec` authenticates its built-in OpenAI provider with `CODEX_API_KEY` (it ignores `OPENAI_API_KEY`);
/// model providers configured in `config.toml` usually name `OPENAI_API_KEY` as their `env_key`. A key is
/// given to the CLI under both names.
const KEY_VARS: [&str; 2] = ["CODEX_API_KEY", "OPENAI_API_KEY"];

const VARIABLES: Variables = Variables {
    names: &["OPENAI_API_KEY", "OPENAI_ORGANIZATION", "OPENAI_PROJECT"],
    prefixes: &["CODEX_"],
    // The operator's Codex home (what the run needs from it is copied into the run's own), and where the CLI and
    // its ACP adapter are: they configure the worker, not the CLI.
    withheld: &["CODEX_HOME", "CODEX_BIN", ACP_ADAPTER.var],
    secrets: &["OPENAI_API_KEY", "CODEX_API_KEY"],
};

/// The run's `CODEX_HOME`, inside the job's private folder.
fn home(ctx: &RunContext<'_>) -> PathBuf {
    ctx.private_dir.join("codex-home")
}

impl Provider for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn binary(&self) -> Binary {
        Binary {
            var: "CODEX_BIN",
            default: "codex",
        }
    }

    fn variables(&self) -> Variables {
        VARIABLES
    }

    fn acp(&self) -> AcpSupport {
        AcpSupport::Optional
    }

    /// Its endpoint is in the run's `config.toml` (`broker`).
    fn routes_itself_to_broker(&self) -> bool {
        true
    }

    /// For the built-in `openai` provider, which has no `base_url` of the operator's to stand for it.
    fn upstream_vars(&self) -> Vec<&'static str> {
        vec![broker::UPSTREAM_VAR]
    }

    fn configure(&self, mut request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError> {
        let mcp_servers = request.take_mcp_servers()?;
        Ok(Box::new(CodexRun {
            credential: request.credential.map(Credential::parse).transpose()?,
            // `codex exec` has no turn limit or system-prompt flag, and its sandbox replaces permission modes.
            options: ModelOnly::parse(request.options)?,
            mcp_servers,
        }))
    }
}

#[derive(Debug)]
enum Credential {
    ApiKey(Secret),
    /// The content of Codex's `auth.json` (an API key or a ChatGPT sign-in), with the token strings inside it.
    AuthJson { json: Secret, tokens: Vec<Secret> },
}

impl Credential {
    fn parse(value: Value) -> Result<Self, ApiError> {
        match value {
            Value::String(raw) => Ok(Credential::ApiKey(input::token(&raw)?)),
            value @ Value::Object(_) => {
                let tokens: Vec<Secret> = tokens_in_json(&value).into_iter().map(Secret::new).collect();
                let usable = value["OPENAI_API_KEY"].is_string() || value["tokens"].is_object();
                if !usable || tokens.is_empty() {
                    return Err(ApiError::invalid(
                        input::CREDENTIAL_FIELD,
                        "an auth.json object must hold OPENAI_API_KEY or tokens",
                    ));
                }
                Ok(Credential::AuthJson {
                    json: Secret::new(value.to_string()),
                    tokens,
                })
            }
            _ => Err(input::not_a(&"a string or an auth.json object")),
        }
    }
}

#[derive(Debug)]
struct CodexRun {
    credential: Option<Credential>,
    options: ModelOnly,
    mcp_servers: McpServers,
}

/// An entry of Codex's `mcp_servers` table. `exec` approves nothing by itself ("approval policy is never"), so
/// the tools of a server the client asked for are approved up front, and only those.
fn codex_entry(server: &McpServer) -> Value {
    match server.transport() {
        McpTransport::Stdio { command, args, env } => json!({"command": command, "args": args, "env": env.to_json(),
            "default_tools_approval_mode": "approve"}),
        McpTransport::Http { url, headers } => json!({"url": url.as_str(), "http_headers": headers.to_json(),
            "default_tools_approval_mode": "approve"}),
    }
}

impl CodexRun {
    /// The `-c` overrides both ways of running Codex share: no analytics or update checks, and the model.
    fn config_overrides(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-c", "analytics.enabled=false", "-c", "check_for_update_on_startup=false"]
            .map(String::from)
            .to_vec();
        if let Some(model) = &self.options.model {
            // A TOML string: a bare value that happens to parse as a number or boolean would change its type.
            let quoted = serde_json::to_string(model).unwrap_or_default();
            args.extend(["-c".to_string(), format!("model={quoted}")]);
        }
        args
    }

    fn args(&self, ctx: &RunContext<'_>) -> Vec<String> {
        // No prompt argument: `codex exec` (and `exec resume <id>`) read the prompt from stdin.
        let mut args: Vec<String> = [
            "exec",
            "--json",
            "--skip-git-repo-check",
            // Without a writable sandbox its commands fail silently.
            "--sandbox",
            "workspace-write",
            // Side traffic off (plugin and app catalogs, analytics, update checks): a replica talks only to the
            // model API it was given.
            "--disable",
            "plugins",
            "--disable",
            "remote_plugin",
            "--disable",
            "apps",
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.config_overrides());
        // One override per server: Codex merges them into the operator's `mcp_servers`, a request's server
        // replacing one of the same name. Server names are bare TOML keys (letters, digits, `_`, `-`).
        for server in self.mcp_servers.iter() {
            let entry = toml_inline(&codex_entry(server));
            args.extend(["-c".to_string(), format!("mcp_servers.{}={entry}", server.name())]);
        }
        if let Some(id) = ctx.resume_session_id {
            args.extend(["resume".to_string(), id.to_string()]);
        }
        args
    }

    /// Puts the run's credential where the CLI looks for it. A request credential replaces the worker's own.
    async fn credentials(
        &self,
        env: &mut Vec<(String, String)>,
        home: &Path,
        operator_home: &Path,
        has_config: bool,
    ) -> Result<(), Failure> {
        if self.credential.is_some() {
            env.retain(|(k, _)| !KEY_VARS.contains(&k.as_str()));
        }
        let key = match &self.credential {
            Some(Credential::ApiKey(key)) => Some(key.expose().to_string()),
            Some(Credential::AuthJson { json, .. }) => {
                return write(&home.join("auth.json"), json.expose().as_bytes()).await;
            }
            None => KEY_VARS.iter().find_map(|k| get_env(env, k)).map(String::from),
        };
        if let Some(key) = key {
            for var in KEY_VARS {
                set_env(env, var, key.as_str());
            }
            return Ok(());
        }
        if let Ok(auth) = tokio::fs::read(operator_home.join("auth.json")).await {
            return write(&home.join("auth.json"), &auth).await;
        }
        // A model provider configured there may take its key from a variable of its own, or need none.
        if has_config {
            return Ok(());
        }
        Err(Failure::new(
            ErrorCode::AuthFailed,
            "no Codex credentials: send codingAssistantAccessToken or configure the worker (OPENAI_API_KEY, \
             CODEX_API_KEY, or auth.json / config.toml in CODEX_HOME)",
        ))
    }
}

#[async_trait]
impl ProviderRun for CodexRun {
    fn secrets(&self) -> Vec<&str> {
        let mut secrets = match &self.credential {
            None => Vec::new(),
            Some(Credential::ApiKey(key)) => vec![key.expose()],
            Some(Credential::AuthJson { json, tokens }) => std::iter::once(json.expose())
                .chain(tokens.iter().map(Secret::expose))
                .collect(),
        };
        secrets.extend(self.mcp_servers.secrets());
        secrets
    }

    async fn prepare(&self, ctx: &RunContext<'_>) -> Result<PreparedRun, Failure> {
        Ok(PreparedRun {
            plan: ctx.plan(self.args(ctx), self.env(ctx).await?),
            parser: Box::new(CodexParser::default()),
            // Everything it wrote is in the private folder, which goes with the job.
            cleanup: Cleanup::default(),
        })
    }

    /// Through the ACP adapter (`CODEX_ACP_BIN`, which embeds Codex) with the same `CODEX_HOME` and credentials.
    /// Commands ask first (`untrusted`); the sandbox is the replica (the adapter's own needs bubblewrap).
    async fn prepare_acp(&self, ctx: &RunContext<'_>) -> Result<AcpPrepared, Failure> {
        let env = self.env(ctx).await?;
        let mut args: Vec<String> = ["-c", "sandbox_mode=\"danger-full-access\"", "-c", "approval_policy=\"untrusted\""]
            .map(String::from)
            .to_vec();
        args.extend(self.config_overrides());
        let mut plan = ctx.plan(args, env);
        plan.program = ACP_ADAPTER.program();
        Ok(AcpPrepared {
            plan,
            mcp_servers: self.mcp_servers.to_acp(),
            cleanup: Cleanup::default(),
        })
    }

    async fn route_to_broker(
        &self,
        env: &mut Vec<(String, String)>,
        broker: &BrokerAddress<'_>,
    ) -> Result<Option<ModelApi>, Failure> {
        // A ChatGPT sign-in in auth.json is not routed there: its tokens are the CLI's to refresh.
        broker::route(env, broker).await
    }

    /// The run's whole `sessions` folder: its `CODEX_HOME` is fresh, so the folder holds this one thread's rollout
    /// (`YYYY/MM/DD/rollout-<time>-<thread_id>.jsonl`) and nothing else. `exec resume` finds it there without the
    /// CLI's SQLite state.
    fn session_files(&self, ctx: &RunContext<'_>, _session_id: &str) -> Option<SessionFiles> {
        Some(SessionFiles {
            local: home(ctx).join("sessions"),
        })
    }
}

/// The ACP adapter (npm `@zed-industries/codex-acp`), found like a CLI: its variable, else on `PATH`.
const ACP_ADAPTER: Binary = Binary {
    var: "CODEX_ACP_BIN",
    default: "codex-acp",
};

impl CodexRun {
    /// A fresh `CODEX_HOME` for the run with the operator's config and the credentials in it.
    async fn env(&self, ctx: &RunContext<'_>) -> Result<Vec<(String, String)>, Failure> {
        let home = home(ctx);
        tokio::fs::create_dir_all(&home).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not create the run's CODEX_HOME: {e}"),
            )
        })?;
        let mut env = child_env(&VARIABLES);
        let operator_home = worker_var("CODEX_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(get_env(&env, "HOME").unwrap_or("/tmp")).join(".codex"));
        let has_config = match tokio::fs::read(operator_home.join("config.toml")).await {
            Ok(config) => {
                // Private like the credentials: a provider's headers may carry keys.
                write(&home.join("config.toml"), &config).await?;
                true
            }
            Err(_) => false,
        };
        set_env(&mut env, "CODEX_HOME", home.to_string_lossy());
        self.credentials(&mut env, &home, &operator_home, has_config).await?;
        Ok(env)
    }
}

async fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    write_private(path, bytes).await.map_err(|e| {
        Failure::new(
            ErrorCode::Internal,
            format!("could not write {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests;
