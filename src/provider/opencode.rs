//! opencode: its variables, its options and command line, where the request's key goes, the private home each
//! job gets, and its sessions carried through export and import. The JSON-lines parser lives in `parser`; the
//! export and import commands in `session`; how a run is pointed at the model-API broker in `broker`.
//!
//! Provider and model come from the operator's configuration (`OPENCODE_CONFIG_CONTENT`, passed through) or
//! `providerOptions.model` (`provider/model`). The request's token is the API key of that model's provider: it
//! goes in as opencode's stored credential for the provider (`OPENCODE_AUTH_CONTENT`), which opencode prefers
//! to the provider's key variable (`ANTHROPIC_API_KEY`, …) and which works for custom providers too, so the
//! worker needs no table of variable names.

mod broker;
mod parser;
mod session;

use std::path::PathBuf;

use async_trait::async_trait;
pub use parser::OpencodeParser;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Binary, Cleanup, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext, SessionFiles, Variables,
    env::{child_env, get_env, set_env, worker_var},
    input,
    mcp::{McpServer, McpServers, McpTransport},
    private_files::write_private,
};
use crate::{
    broker::{BrokerAddress, ModelApi},
    error::ApiError,
    event::{ErrorCode, Failure},
    secret::Secret,
};

pub struct Opencode;

const CONFIG_CONTENT: &str = "OPENCODE_CONFIG_CONTENT";
const AUTH_CONTENT: &str = "OPENCODE_AUTH_CONTENT";

/// The key variables of the providers most deployments use; opencode reads them itself. Other providers' keys
/// reach it through `OPENCODE_AUTH_CONTENT` or the config.
const KEY_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GOOGLE_GENERATIVE_AI_API_KEY",
    "OPENROUTER_API_KEY",
    "OPENCODE_API_KEY",
];

/// Every `OPENCODE_*` variable is opencode's own (its config and credentials, its switches). `npm_config_registry`
/// lets an operator point the packages opencode installs at run time (plugins, provider SDKs) at a mirror.
const VARIABLES: Variables = Variables {
    names: &[
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "GOOGLE_GENERATIVE_AI_API_KEY",
        "OPENROUTER_API_KEY",
        "npm_config_registry",
    ],
    prefixes: &["OPENCODE_"],
    withheld: &["OPENCODE_BIN"],
    secrets: &[
        AUTH_CONTENT,
        // A provider's `options.apiKey` may be written into it.
        CONFIG_CONTENT,
        "OPENCODE_API_KEY",
        "OPENCODE_SERVER_PASSWORD",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "GOOGLE_GENERATIVE_AI_API_KEY",
        "OPENROUTER_API_KEY",
    ],
};

/// Switches that stop opencode's own traffic (update checks, the model list, sharing, language-server
/// downloads). Set in the environment, where neither the operator's config nor a repository's can turn them
/// back on.
const QUIET: &[(&str, &str)] = &[
    ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
    ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
    ("OPENCODE_DISABLE_SHARE", "1"),
    ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
];

impl Provider for Opencode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn binary(&self) -> Binary {
        Binary {
            var: "OPENCODE_BIN",
            default: "opencode",
        }
    }

    fn variables(&self) -> Variables {
        VARIABLES
    }

    /// Its endpoint is in the operator's `OPENCODE_CONFIG_CONTENT` (`broker`).
    fn routes_itself_to_broker(&self) -> bool {
        true
    }

    /// For its built-in providers, which have no `baseURL` of the operator's to stand for them.
    fn upstream_vars(&self) -> Vec<&'static str> {
        broker::upstream_vars()
    }

    fn configure(&self, mut request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError> {
        let mcp_servers = request.take_mcp_servers()?;
        let token = request.credential.map(input::token_only).transpose()?;
        let options = Options::parse(request.options)?;
        let key = match token {
            None => None,
            Some(token) => {
                let provider = options
                    .model
                    .as_ref()
                    .map(|m| m.provider.clone())
                    .or_else(configured_provider)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            input::CREDENTIAL_FIELD,
                            "opencode needs to know which provider the token is for: send providerOptions.model \
                             as provider/model, or configure a model in the worker's OPENCODE_CONFIG_CONTENT",
                        )
                    })?;
                Some(ProviderKey { provider, token })
            }
        };
        Ok(Box::new(OpencodeRun {
            key,
            options,
            mcp_servers,
        }))
    }
}

/// The provider of the model in the operator's `OPENCODE_CONFIG_CONTENT`, if it is JSON and names one.
fn configured_provider() -> Option<String> {
    let config: Value = serde_json::from_str(&worker_var(CONFIG_CONTENT)?).ok()?;
    ModelRef::parse(config["model"].as_str()?).map(|m| m.provider)
}

#[derive(Debug, Default)]
struct Options {
    model: Option<ModelRef>,
}

/// What `providerOptions` may hold for opencode besides `mcpServers`: a model, nothing else its `run` command
/// could honour.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    model: Option<String>,
}

impl Options {
    fn parse(value: Option<Value>) -> Result<Self, ApiError> {
        let raw: RawOptions = input::options(value)?;
        input::check_model(raw.model.as_deref())?;
        let model = match raw.model {
            None => None,
            Some(model) => Some(ModelRef::parse(&model).ok_or_else(|| {
                ApiError::invalid(
                    "providerOptions.model",
                    "an opencode model is provider/model, e.g. anthropic/claude-sonnet-4-5",
                )
            })?),
        };
        Ok(Options { model })
    }
}

/// `provider/model`; the model part may hold slashes itself (`openrouter/anthropic/claude-sonnet-4`).
#[derive(Clone, Debug, PartialEq)]
struct ModelRef {
    provider: String,
    full: String,
}

impl ModelRef {
    fn parse(model: &str) -> Option<Self> {
        let (provider, name) = model.trim().split_once('/')?;
        let valid = !provider.is_empty() && !name.is_empty() && !provider.contains(char::is_whitespace);
        valid.then(|| ModelRef {
            provider: provider.to_string(),
            full: model.trim().to_string(),
        })
    }
}

/// The request's token, for the provider of the job's model.
#[derive(Debug)]
struct ProviderKey {
    provider: String,
    token: Secret,
}

#[derive(Debug)]
struct OpencodeRun {
    key: Option<ProviderKey>,
    options: Options,
    mcp_servers: McpServers,
}

/// A server in opencode's `mcp` config: `local` runs a command (program and arguments in one list), `remote`
/// is reached over HTTP. Both enabled: the job asked for them.
fn mcp_entry(server: &McpServer) -> Value {
    match server.transport() {
        McpTransport::Stdio { command, args, env } => {
            let mut command_line = vec![command.clone()];
            command_line.extend(args.iter().cloned());
            json!({ "type": "local", "command": command_line, "environment": env.to_json(), "enabled": true })
        }
        McpTransport::Http { url, headers } => {
            json!({ "type": "remote", "url": url.as_str(), "headers": headers.to_json(), "enabled": true })
        }
    }
}

/// The job's own home for opencode, inside its private folder: config, database, cache and state of this job
/// only, gone with the job.
struct Home {
    root: PathBuf,
}

impl Home {
    fn of(ctx: &RunContext<'_>) -> Self {
        Home {
            root: ctx.private_dir.join("opencode-home"),
        }
    }

    fn config(&self) -> PathBuf {
        self.root.join(".config")
    }

    /// The environment every opencode command of this job runs with: the worker's allow-listed variables, this
    /// home and the switches that keep it quiet.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = child_env(&VARIABLES);
        let root = self.root.to_string_lossy().to_string();
        set_env(&mut env, "HOME", root.as_str());
        for (var, dir) in [
            ("XDG_CONFIG_HOME", ".config"),
            ("XDG_DATA_HOME", ".local/share"),
            ("XDG_CACHE_HOME", ".cache"),
            ("XDG_STATE_HOME", ".local/state"),
        ] {
            set_env(&mut env, var, self.root.join(dir).to_string_lossy());
        }
        for (var, value) in QUIET {
            set_env(&mut env, var, *value);
        }
        env
    }

    /// The global config of the job: no updates, no sharing, the job's MCP servers (written private: their env
    /// and headers are credentials). The operator's `OPENCODE_CONFIG_CONTENT` is merged over it by opencode
    /// itself, server by server.
    ///
    /// opencode also installs its plugin SDK from the npm registry into every config folder it loads, in the
    /// background, at every start. This folder holds no plugin that could need it, so it is marked as installed
    /// (an empty `node_modules` and a lock file naming the package), which opencode takes as up to date.
    async fn write(&self, mcp_servers: &McpServers) -> std::io::Result<()> {
        let dir = self.config().join("opencode");
        tokio::fs::create_dir_all(dir.join("node_modules")).await?;
        let mut config = json!({ "autoupdate": false, "share": "disabled" });
        if !mcp_servers.is_empty() {
            config["mcp"] = mcp_servers.to_json(mcp_entry);
        }
        write_private(&dir.join("opencode.json"), config.to_string().as_bytes()).await?;
        let lock = json!({ "packages": { "": { "dependencies": { "@opencode-ai/plugin": "*" } } } });
        tokio::fs::write(dir.join("package-lock.json"), lock.to_string()).await
    }
}

impl OpencodeRun {
    fn args(&self, ctx: &RunContext<'_>) -> Vec<String> {
        // The prompt is not an argument: `opencode run` reads it from stdin when no message is given.
        // `--auto` approves what the config does not deny: headless, nobody could answer a question, and the
        // replica is the sandbox. `--thinking` adds `reasoning` lines.
        let mut args: Vec<String> = ["run", "--format", "json", "--thinking", "--auto"]
            .map(String::from)
            .to_vec();
        if let Some(model) = &self.options.model {
            args.extend(["-m".to_string(), model.full.clone()]);
        }
        if let Some(id) = ctx.resume_session_id {
            args.extend(["-s".to_string(), id.to_string()]);
        }
        args
    }

    /// The credential: the request's key replaces every key of the worker's own; without one, the worker's
    /// must exist somewhere opencode looks.
    fn credential(&self, env: &mut Vec<(String, String)>) -> Result<(), Failure> {
        match &self.key {
            Some(ProviderKey { provider, token }) => {
                env.retain(|(k, _)| k != AUTH_CONTENT && !KEY_VARS.contains(&k.as_str()));
                let auth = json!({ provider: { "type": "api", "key": token.expose() } });
                set_env(env, AUTH_CONTENT, auth.to_string());
                Ok(())
            }
            None if [AUTH_CONTENT, CONFIG_CONTENT, "OPENCODE_CONFIG"]
                .iter()
                .chain(KEY_VARS)
                .any(|var| get_env(env, var).is_some()) =>
            {
                Ok(())
            }
            None => Err(Failure::new(
                ErrorCode::AuthFailed,
                "no opencode credentials: send codingAssistantAccessToken or configure the worker \
                 (OPENCODE_AUTH_CONTENT, a provider key variable such as ANTHROPIC_API_KEY, or a provider with \
                 its key in OPENCODE_CONFIG_CONTENT)",
            )),
        }
    }

    fn export_file(ctx: &RunContext<'_>, session_id: &str) -> PathBuf {
        ctx.private_dir.join("opencode-sessions").join(format!("{session_id}.json"))
    }
}

#[async_trait]
impl ProviderRun for OpencodeRun {
    fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self.key.iter().map(|k| k.token.expose()).collect();
        secrets.extend(self.mcp_servers.secrets());
        secrets
    }

    async fn prepare(&self, ctx: &RunContext<'_>) -> Result<PreparedRun, Failure> {
        let home = Home::of(ctx);
        home.write(&self.mcp_servers).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not set up opencode's home for the job: {e}"),
            )
        })?;
        let mut env = home.env();
        self.credential(&mut env)?;
        // A session restored from the session store is an export; it goes into this job's database first.
        if let Some(id) = ctx.resume_session_id {
            let file = Self::export_file(ctx, id);
            if tokio::fs::try_exists(&file).await.unwrap_or(false) {
                cli(ctx, &env).import(&file).await.map_err(|e| {
                    Failure::new(
                        ErrorCode::ProviderFailed,
                        format!("could not import the stored session {id}: {e}"),
                    )
                })?;
            }
        }
        Ok(PreparedRun {
            plan: ctx.plan(self.args(ctx), env),
            parser: Box::new(OpencodeParser::new()),
            // Everything written is inside the job's private folder, which goes with the job.
            cleanup: Cleanup::default(),
        })
    }

    async fn route_to_broker(
        &self,
        env: &mut Vec<(String, String)>,
        broker: &BrokerAddress<'_>,
    ) -> Result<Option<ModelApi>, Failure> {
        Ok(broker::route(env, self.options.model.as_ref(), broker))
    }

    /// Each job has a database of its own, gone with the job, so a session is resumable only through the
    /// session store: as the export of this one session.
    fn session_files(&self, ctx: &RunContext<'_>, session_id: &str) -> Option<SessionFiles> {
        Some(SessionFiles {
            local: Self::export_file(ctx, session_id),
        })
    }

    async fn export_session(&self, ctx: &RunContext<'_>, session_id: &str) -> std::io::Result<()> {
        let env = Home::of(ctx).env();
        cli(ctx, &env)
            .export(session_id, &Self::export_file(ctx, session_id))
            .await
    }
}

fn cli<'a>(ctx: &'a RunContext<'_>, env: &'a [(String, String)]) -> session::Cli<'a> {
    session::Cli {
        binary: ctx.binary,
        workdir: ctx.workdir,
        env,
    }
}

#[cfg(test)]
mod tests;
