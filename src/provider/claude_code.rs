//! Claude Code: its command line, credential routing (token prefix, credentials JSON, the worker's own
//! credentials) and the file it must not keep after a job. The stream-json parser lives in `parser`.

mod parser;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use async_trait::async_trait;
pub use parser::ClaudeCodeParser;

use super::{CommandPlan, JobContext, OutputParser, Provider, ProviderKind, SessionFiles, child_env, get_env, set_env};
use crate::{
    error::ApiError,
    event::{ErrorCode, Failure},
    request::{Credential, ProviderOptions},
    secret::Secret,
    settings::Settings,
};

const PERMISSION_MODES: &[&str] = &["default", "acceptEdits", "bypassPermissions", "plan", "dontAsk"];
/// Headless runs have nobody to approve a tool call; the replica itself is the sandbox.
const DEFAULT_PERMISSION_MODE: &str = "bypassPermissions";
const CREDENTIAL_VARS: &[&str] = &["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"];

pub fn validate_options(options: &ProviderOptions) -> Result<(), ApiError> {
    if let Some(mode) = &options.permission_mode
        && !PERMISSION_MODES.contains(&mode.as_str())
    {
        return Err(ApiError::invalid(
            "providerOptions.permissionMode",
            format!("permissionMode must be one of {}", PERMISSION_MODES.join(", ")),
        ));
    }
    Ok(())
}

pub struct ClaudeCode {
    bin: PathBuf,
    worker_credentials_json: Option<Secret>,
    worker_credentials_file: Option<PathBuf>,
    /// What the credentials file held before a request's own credentials replaced it, restored after the job.
    replaced_credentials: Mutex<Option<(PathBuf, Option<Vec<u8>>)>>,
}

impl ClaudeCode {
    pub fn new(settings: &Settings) -> Self {
        ClaudeCode {
            bin: settings.claude_bin.clone(),
            worker_credentials_json: settings.claude_credentials_json.clone(),
            worker_credentials_file: settings.claude_credentials_secret.clone(),
            replaced_credentials: Mutex::new(None),
        }
    }

    fn config_dir(env: &[(String, String)]) -> PathBuf {
        if let Some(dir) = get_env(env, "CLAUDE_CONFIG_DIR") {
            return PathBuf::from(dir);
        }
        let home = get_env(env, "HOME").unwrap_or("/tmp");
        Path::new(home).join(".claude")
    }

    fn args(ctx: &JobContext<'_>) -> Vec<String> {
        let opts = &ctx.request.options;
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--verbose"]
            .map(String::from)
            .to_vec();
        let mut push = |flag: &str, value: &str| {
            args.push(flag.to_string());
            args.push(value.to_string());
        };
        if let Some(id) = &ctx.request.resume_session_id {
            push("--resume", id);
        }
        if let Some(model) = &opts.model {
            push("--model", model);
        }
        if let Some(turns) = opts.max_turns {
            push("--max-turns", &turns.to_string());
        }
        push(
            "--permission-mode",
            opts.permission_mode.as_deref().unwrap_or(DEFAULT_PERMISSION_MODE),
        );
        if let Some(prompt) = &opts.append_system_prompt {
            push("--append-system-prompt", prompt);
        }
        for (flag, tools) in [
            ("--allowedTools", &opts.allowed_tools),
            ("--disallowedTools", &opts.disallowed_tools),
        ] {
            if let Some(tools) = tools.as_ref().filter(|t| !t.is_empty()) {
                // One argument per tool: a rule like "Bash(git add, git commit)" contains commas itself.
                args.push(flag.to_string());
                args.extend(tools.iter().cloned());
            }
        }
        args
    }

    async fn write_credentials_file(&self, dir: &Path, json: &str, remember: bool) -> Result<(), Failure> {
        let path = dir.join(".credentials.json");
        if remember {
            let previous = tokio::fs::read(&path).await.ok();
            *self.replaced_credentials.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.clone(), previous));
        }
        write_private(&path, json.as_bytes()).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not write Claude Code credentials: {e}"),
            )
        })
    }

    /// Chooses the credential for this run. The CLI itself does not look at token prefixes, so the worker routes.
    async fn route_credentials(
        &self,
        ctx: &JobContext<'_>,
        env: &mut Vec<(String, String)>,
        config_dir: &Path,
    ) -> Result<(), Failure> {
        match &ctx.request.credential {
            Some(credential) => {
                env.retain(|(k, _)| !CREDENTIAL_VARS.contains(&k.as_str()));
                match credential {
                    Credential::Token(token) if token.expose().starts_with("sk-ant-oat") => {
                        set_env(env, "CLAUDE_CODE_OAUTH_TOKEN", token.expose());
                    }
                    Credential::Token(token) => set_env(env, "ANTHROPIC_API_KEY", token.expose()),
                    Credential::ClaudeCredentialsJson { json, .. } => {
                        self.write_credentials_file(config_dir, json.expose(), true).await?;
                    }
                }
                Ok(())
            }
            None if CREDENTIAL_VARS.iter().any(|k| get_env(env, k).is_some()) => Ok(()),
            None => {
                let file = config_dir.join(".credentials.json");
                if tokio::fs::metadata(&file).await.is_ok() {
                    return Ok(());
                }
                let configured = match (&self.worker_credentials_json, &self.worker_credentials_file) {
                    (Some(json), _) => Some(json.expose().to_string()),
                    (None, Some(path)) => tokio::fs::read_to_string(path).await.ok(),
                    (None, None) => None,
                };
                match configured.filter(|c| !c.trim().is_empty()) {
                    Some(json) => self.write_credentials_file(config_dir, &json, false).await,
                    None => Err(Failure::new(
                        ErrorCode::AuthFailed,
                        "no Claude Code credentials: send codingAssistantAccessToken or configure the worker \
                         (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, CLAUDE_CODE_CREDENTIALS_JSON or CLAUDE_CODE_CREDENTIALS_SECRET)",
                    )),
                }
            }
        }
    }
}

#[async_trait]
impl Provider for ClaudeCode {
    fn kind(&self) -> ProviderKind {
        ProviderKind::ClaudeCode
    }

    async fn prepare(&self, ctx: &JobContext<'_>) -> Result<CommandPlan, Failure> {
        let mut env = child_env(
            &[
                "CLAUDE_CONFIG_DIR",
                "IS_SANDBOX",
                "MAX_THINKING_TOKENS",
                "BASH_DEFAULT_TIMEOUT_MS",
                "BASH_MAX_TIMEOUT_MS",
            ],
            &["ANTHROPIC_", "CLAUDE_CODE_", "DISABLE_", "MCP_"],
        );
        let config_dir = Self::config_dir(&env);
        tokio::fs::create_dir_all(&config_dir).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not create the Claude Code config folder: {e}"),
            )
        })?;
        set_env(&mut env, "CLAUDE_CONFIG_DIR", config_dir.to_string_lossy());
        self.route_credentials(ctx, &mut env, &config_dir).await?;
        Ok(CommandPlan::in_workspace(self.bin.clone(), Self::args(ctx), env, ctx))
    }

    async fn cleanup(&self) {
        let replaced = self
            .replaced_credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((path, previous)) = replaced {
            let result = match previous {
                Some(bytes) => write_private(&path, &bytes).await,
                None => tokio::fs::remove_file(&path).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not remove the request's Claude Code credentials");
            }
        }
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(ClaudeCodeParser::default())
    }

    fn session_files(&self, workdir: &Path, session_id: &str) -> Option<SessionFiles> {
        let config_dir = Self::config_dir(&child_env(&["CLAUDE_CONFIG_DIR"], &[]));
        let cwd = std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_path_buf());
        Some(SessionFiles {
            local: config_dir
                .join("projects")
                .join(project_folder(&cwd))
                .join(format!("{session_id}.jsonl")),
        })
    }
}

/// Claude Code files a session under its working directory with every character that is not a letter or a
/// digit replaced by `-` (`/w/my_job` → `-w-my-job`).
fn project_folder(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Creates the file with mode 0600 from the start, so there is no moment at which others can read it.
pub async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await?;
    file.write_all(bytes).await?;
    file.flush().await?;
    // An existing file keeps its old mode on open; make sure it ends up private.
    tokio::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_project_folder_replaces_every_non_alphanumeric_character() {
        assert_eq!(
            super::project_folder(std::path::Path::new("/tmp/.tmpA1b2/my_job.x")),
            "-tmp--tmpA1b2-my-job-x"
        );
    }
}
