//! Claude Code: its variables, its options and command line (MCP servers included), and where it keeps sessions.
//! How a credential reaches the CLI lives in `credentials`; the stream-json parser in `parser`.

mod credentials;
mod parser;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use credentials::Credential;
pub use parser::ClaudeCodeParser;
use serde::Deserialize;

use super::{
    AcpPrepared, AcpSupport, Binary, Cleanup, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext,
    SessionFiles, Variables,
    env::{child_env, get_env, set_env},
    input,
    mcp::{self, McpServer, McpServers},
};
use crate::{
    broker::ModelEndpoint,
    error::ApiError,
    event::{ErrorCode, Failure},
};

pub struct ClaudeCode;

const VARIABLES: Variables = Variables {
    names: &[
        "CLAUDE_CONFIG_DIR",
        "IS_SANDBOX",
        "MAX_THINKING_TOKENS",
        "BASH_DEFAULT_TIMEOUT_MS",
        "BASH_MAX_TIMEOUT_MS",
    ],
    prefixes: &["ANTHROPIC_", "CLAUDE_CODE_", "DISABLE_", "MCP_"],
    // Where the worker's own credentials come from (the CLI gets them as its credentials file instead), the
    // worker's MCP policy, which its `MCP_` prefix would otherwise pass on, and where the ACP adapter is.
    withheld: &[
        UPSTREAM_VAR,
        "CLAUDE_CODE_CREDENTIALS_JSON",
        "CLAUDE_CODE_CREDENTIALS_SECRET",
        "MCP_ALLOWED_COMMANDS",
        ACP_ADAPTER.var,
    ],
    secrets: &[
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CODE_CREDENTIALS_JSON",
    ],
};

/// The real Anthropic API behind the broker, when it is not the CLI's own `ANTHROPIC_BASE_URL`.
const UPSTREAM_VAR: &str = "ANTHROPIC_UPSTREAM_URL";

impl Provider for ClaudeCode {
    fn name(&self) -> &'static str {
        "claude-code"
    }

    fn binary(&self) -> Binary {
        Binary {
            var: "CLAUDE_BIN",
            default: "claude",
        }
    }

    fn variables(&self) -> Variables {
        VARIABLES
    }

    fn acp(&self) -> AcpSupport {
        AcpSupport::Optional
    }

    /// An API key goes out as `x-api-key`, a token (`ANTHROPIC_AUTH_TOKEN`, OAuth) as a bearer token: the
    /// placeholder stays in the variable the key was in, so the CLI sends it the same way. A credentials file
    /// is not brokered: the CLI refreshes it itself.
    fn model_endpoint(&self) -> Option<ModelEndpoint> {
        Some(ModelEndpoint {
            base_url_var: "ANTHROPIC_BASE_URL",
            key_vars: &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"],
            upstream_var: Some(UPSTREAM_VAR),
            default_upstream: Some("https://api.anthropic.com"),
        })
    }

    fn configure(&self, mut request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError> {
        let credential = request.credential.take().map(Credential::parse).transpose()?;
        let mcp_servers = request.take_mcp_servers()?;
        let options: Options = input::options(request.options)?;
        options.check()?;
        if request.acp {
            options.check_acp()?;
        }
        Ok(Box::new(ClaudeRun {
            credential,
            options,
            mcp_servers,
        }))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    model: Option<String>,
    max_turns: Option<u32>,
    permission_mode: Option<PermissionMode>,
    allowed_tools: Option<Vec<String>>,
    disallowed_tools: Option<Vec<String>>,
    append_system_prompt: Option<String>,
}

impl Options {
    /// Through the ACP adapter only the model can be chosen; the rest are flags of the headless command line,
    /// and a permission mode would contradict the client's approvals.
    fn check_acp(&self) -> Result<(), ApiError> {
        let set = [
            ("maxTurns", self.max_turns.is_some()),
            ("permissionMode", self.permission_mode.is_some()),
            ("allowedTools", self.allowed_tools.is_some()),
            ("disallowedTools", self.disallowed_tools.is_some()),
            ("appendSystemPrompt", self.append_system_prompt.is_some()),
        ];
        match set.iter().find(|(_, given)| *given) {
            Some((name, _)) => Err(ApiError::invalid(
                format!("providerOptions.{name}"),
                format!("providerOptions.{name} does not apply when approvals run Claude Code over ACP"),
            )),
            None => Ok(()),
        }
    }

    fn check(&self) -> Result<(), ApiError> {
        input::check_model(self.model.as_deref())?;
        if self.max_turns == Some(0) {
            return Err(ApiError::invalid("providerOptions.maxTurns", "maxTurns must be at least 1"));
        }
        input::check_tools("allowedTools", self.allowed_tools.as_deref())?;
        input::check_tools("disallowedTools", self.disallowed_tools.as_deref())
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
enum PermissionMode {
    Default,
    AcceptEdits,
    /// Headless runs have nobody to approve a tool call; the replica itself is the sandbox.
    #[default]
    BypassPermissions,
    Plan,
    DontAsk,
}

impl PermissionMode {
    fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::BypassPermissions => "bypassPermissions",
            PermissionMode::Plan => "plan",
            PermissionMode::DontAsk => "dontAsk",
        }
    }
}

#[derive(Debug)]
struct ClaudeRun {
    credential: Option<Credential>,
    options: Options,
    mcp_servers: McpServers,
}

/// The job's MCP servers, in the CLI's `--mcp-config` file (written into the job's private folder).
const MCP_CONFIG_FILE: &str = "mcp-config.json";

impl ClaudeRun {
    /// `mcp_config`: the file holding the job's MCP servers, if it has any.
    fn args(&self, ctx: &RunContext<'_>, mcp_config: Option<&Path>) -> Vec<String> {
        let opts = &self.options;
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
            .map(String::from)
            .to_vec();
        let mut push = |flag: &str, value: &str| {
            args.push(flag.to_string());
            args.push(value.to_string());
        };
        if let Some(id) = ctx.resume_session_id {
            push("--resume", id);
        }
        if let Some(model) = &opts.model {
            push("--model", model);
        }
        if let Some(turns) = opts.max_turns {
            push("--max-turns", &turns.to_string());
        }
        push("--permission-mode", opts.permission_mode.unwrap_or_default().as_str());
        if let Some(prompt) = &opts.append_system_prompt {
            push("--append-system-prompt", prompt);
        }
        if let Some(config) = mcp_config {
            push("--mcp-config", &config.to_string_lossy());
        }
        // Outside bypassPermissions an MCP tool needs an allow rule, and nobody is there to grant one: the
        // client asked for these servers, so their tools (`mcp__<name>` covers all of a server's) are allowed.
        let mcp_rules = self.mcp_servers.iter().map(|s| format!("mcp__{}", s.name()));
        let allowed: Vec<String> = opts.allowed_tools.iter().flatten().cloned().chain(mcp_rules).collect();
        for (flag, tools) in [
            ("--allowedTools", &allowed),
            ("--disallowedTools", opts.disallowed_tools.as_ref().unwrap_or(&Vec::new())),
        ] {
            if !tools.is_empty() {
                // One argument per tool: a rule like "Bash(git add, git commit)" contains commas itself.
                args.push(flag.to_string());
                args.extend(tools.iter().cloned());
            }
        }
        args
    }

    /// The `--mcp-config` file, if the job has MCP servers.
    async fn write_mcp_config(&self, ctx: &RunContext<'_>) -> Result<Option<PathBuf>, Failure> {
        if self.mcp_servers.is_empty() {
            return Ok(None);
        }
        let document = serde_json::json!({"mcpServers": self.mcp_servers.to_json(McpServer::standard_entry)});
        mcp::write_config(ctx, MCP_CONFIG_FILE, &document).await.map(Some)
    }
}

#[async_trait]
impl ProviderRun for ClaudeRun {
    fn secrets(&self) -> Vec<&str> {
        let mut secrets = self.credential.as_ref().map(Credential::secrets).unwrap_or_default();
        secrets.extend(self.mcp_servers.secrets());
        secrets
    }

    async fn prepare(&self, ctx: &RunContext<'_>) -> Result<PreparedRun, Failure> {
        let (env, cleanup) = self.env(ctx).await?;
        let mcp_config = self.write_mcp_config(ctx).await?;
        Ok(PreparedRun {
            plan: ctx.plan(self.args(ctx, mcp_config.as_deref()), env),
            parser: Box::new(ClaudeCodeParser::default()),
            cleanup,
        })
    }

    /// Through the ACP adapter (`CLAUDE_ACP_BIN`), which drives this worker's Claude Code CLI
    /// (`CLAUDE_CODE_EXECUTABLE`) with the same variables and credentials, and asks before tools run.
    async fn prepare_acp(&self, ctx: &RunContext<'_>) -> Result<AcpPrepared, Failure> {
        let (mut env, cleanup) = self.env(ctx).await?;
        let cli = crate::process::resolve(ctx.binary).unwrap_or_else(|| ctx.binary.to_path_buf());
        set_env(&mut env, "CLAUDE_CODE_EXECUTABLE", cli.to_string_lossy());
        if let Some(model) = &self.options.model {
            set_env(&mut env, "ANTHROPIC_MODEL", model.as_str());
        }
        let mut plan = ctx.plan(Vec::new(), env);
        plan.program = ACP_ADAPTER.program();
        Ok(AcpPrepared {
            plan,
            mcp_servers: self.mcp_servers.to_acp(),
            cleanup,
        })
    }

    fn session_files(&self, ctx: &RunContext<'_>, session_id: &str) -> Option<SessionFiles> {
        let config_dir = config_dir(&child_env(&VARIABLES));
        let cwd = std::fs::canonicalize(ctx.workdir).unwrap_or_else(|_| ctx.workdir.to_path_buf());
        Some(SessionFiles {
            local: config_dir
                .join("projects")
                .join(project_folder(&cwd))
                .join(format!("{session_id}.jsonl")),
        })
    }
}

/// The ACP adapter (npm `@zed-industries/claude-agent-acp`), found like a CLI: its variable, else on `PATH`.
const ACP_ADAPTER: Binary = Binary {
    var: "CLAUDE_ACP_BIN",
    default: "claude-agent-acp",
};

impl ClaudeRun {
    /// The CLI's variables with its config folder and the request's credentials routed into it.
    async fn env(&self, ctx: &RunContext<'_>) -> Result<(Vec<(String, String)>, Cleanup), Failure> {
        let mut env = child_env(&VARIABLES);
        let config_dir = config_dir(&env);
        tokio::fs::create_dir_all(&config_dir).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not create the Claude Code config folder: {e}"),
            )
        })?;
        set_env(&mut env, "CLAUDE_CONFIG_DIR", config_dir.to_string_lossy());
        let cleanup = credentials::route(self.credential.as_ref(), &mut env, &config_dir, ctx.broker_until).await?;
        Ok((env, cleanup))
    }
}

fn config_dir(env: &[(String, String)]) -> PathBuf {
    if let Some(dir) = get_env(env, "CLAUDE_CONFIG_DIR") {
        return PathBuf::from(dir);
    }
    let home = get_env(env, "HOME").unwrap_or("/tmp");
    Path::new(home).join(".claude")
}

/// Claude Code files a session under its working directory with every character that is not a letter or a
/// digit replaced by `-` (`/w/my_job` → `-w-my-job`).
fn project_folder(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(options: serde_json::Value) -> Result<Box<dyn ProviderRun>, ApiError> {
        ClaudeCode.configure(ProviderRequest {
            options: Some(options),
            ..ProviderRequest::default()
        })
    }

    #[test]
    fn the_project_folder_replaces_every_non_alphanumeric_character() {
        assert_eq!(
            project_folder(Path::new("/tmp/.tmpA1b2/my_job.x")),
            "-tmp--tmpA1b2-my-job-x"
        );
    }

    #[test]
    fn options_are_checked_by_name() {
        for (options, field) in [
            (json!({"maxTurns": 0}), "providerOptions.maxTurns"),
            (json!({"permissionMode": "yolo"}), "providerOptions.permissionMode"),
            (json!({"allowedTools": ["Edit", " "]}), "providerOptions.allowedTools"),
            (json!({"maxTurn": 3}), "providerOptions.maxTurn"),
        ] {
            match run(options) {
                Err(ApiError::InvalidRequest { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    fn mcp_servers(servers: serde_json::Value) -> McpServers {
        ProviderRequest {
            options: Some(json!({ "mcpServers": servers })),
            ..ProviderRequest::default()
        }
        .take_mcp_servers()
        .unwrap()
    }

    #[test]
    fn the_command_line_carries_every_option() {
        let options = json!({"model": "opus", "maxTurns": 3, "permissionMode": "plan",
            "allowedTools": ["Bash(git add, git commit)"], "disallowedTools": ["WebFetch"],
            "appendSystemPrompt": "be brief"});
        let run = ClaudeRun {
            credential: None,
            options: serde_json::from_value(options).unwrap(),
            mcp_servers: mcp_servers(json!({"docs": {"command": "docs-server"}})),
        };
        let ctx = RunContext {
            binary: Path::new("claude"),
            workdir: Path::new("/w"),
            private_dir: Path::new("/p"),
            prompt: "hi",
            resume_session_id: Some("s-1"),
            broker_until: None,
        };
        assert_eq!(
            run.args(&ctx, Some(Path::new("/p/mcp-config.json"))).join(" "),
            "-p --output-format stream-json --verbose --resume s-1 --model opus --max-turns 3 --permission-mode plan \
             --append-system-prompt be brief --mcp-config /p/mcp-config.json \
             --allowedTools Bash(git add, git commit) mcp__docs --disallowedTools WebFetch"
        );
    }

    #[tokio::test]
    async fn mcp_servers_go_into_a_private_config_file_and_their_secrets_to_the_redactor() {
        let dir = tempfile::tempdir().unwrap();
        let run = ClaudeRun {
            credential: None,
            options: Options::default(),
            mcp_servers: mcp_servers(json!({"docs": {"command": "docs-server", "args": ["--ro"],
                "env": {"DOCS_TOKEN": "docs-token-canary"}}})),
        };
        let ctx = RunContext {
            binary: Path::new("claude"),
            workdir: Path::new("/w"),
            private_dir: dir.path(),
            prompt: "hi",
            resume_session_id: None,
            broker_until: None,
        };

        let path = run.write_mcp_config(&ctx).await.unwrap().unwrap();

        assert_eq!(path, dir.path().join(MCP_CONFIG_FILE));
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            config,
            json!({"mcpServers": {"docs": {"type": "stdio", "command": "docs-server", "args": ["--ro"],
                "env": {"DOCS_TOKEN": "docs-token-canary"}}}})
        );
        assert!(run.secrets().contains(&"docs-token-canary"));
        assert!(!format!("{run:?}").contains("docs-token-canary"));
        let without = ClaudeRun {
            mcp_servers: McpServers::default(),
            ..run
        };
        assert_eq!(without.write_mcp_config(&ctx).await.unwrap(), None);
    }
}
