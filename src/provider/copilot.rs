//! GitHub Copilot CLI: its command line, its token (and the token kind it refuses), its bring-your-own-key
//! variables and where it keeps sessions. The JSONL parser lives in `parser`.

mod parser;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use async_trait::async_trait;
pub use parser::CopilotParser;

use super::{CommandPlan, JobContext, OutputParser, Provider, ProviderKind, SessionFiles, child_env, get_env, set_env};
use crate::{
    error::ApiError,
    event::{ErrorCode, Failure},
    request::Credential,
    settings::Settings,
};

/// Every `COPILOT_*` variable is Copilot's own: the token, `COPILOT_HOME` and the bring-your-own-key settings
/// (`COPILOT_OFFLINE`, `COPILOT_PROVIDER_BASE_URL`, `COPILOT_PROVIDER_TYPE`, `COPILOT_PROVIDER_API_KEY`,
/// `COPILOT_MODEL`, …). `GH_TOKEN`/`GITHUB_TOKEN`, which the CLI would also read, are the repository's
/// credentials and stay out.
const ENV_PREFIXES: &[&str] = &["COPILOT_"];
const TOKEN_VAR: &str = "COPILOT_GITHUB_TOKEN";

/// Classic personal access tokens cannot call the Copilot API; the CLI would only fail later with a vaguer
/// message.
pub fn validate_credential(credential: &Credential) -> Result<(), ApiError> {
    match credential {
        Credential::Token(token) if token.expose().starts_with("ghp_") => Err(ApiError::invalid(
            "codingAssistantAccessToken",
            "classic personal access tokens (ghp_…) are refused by the Copilot CLI; use a fine-grained token with \
             the Copilot Requests permission or a gho_ OAuth token",
        )),
        _ => Ok(()),
    }
}

pub struct Copilot {
    bin: PathBuf,
    /// The id of this job's session, fixed before the CLI starts so the parser can announce it at once.
    session_id: Mutex<Option<String>>,
}

impl Copilot {
    pub fn new(settings: &Settings) -> Self {
        Copilot {
            bin: settings.copilot_bin.clone(),
            session_id: Mutex::new(None),
        }
    }

    fn home(env: &[(String, String)]) -> PathBuf {
        if let Some(dir) = get_env(env, "COPILOT_HOME") {
            return PathBuf::from(dir);
        }
        Path::new(get_env(env, "HOME").unwrap_or("/tmp")).join(".copilot")
    }

    fn args(ctx: &JobContext<'_>, session_id: &str) -> Vec<String> {
        // No `-p`: it takes the prompt as its value, i.e. on argv. Piped stdin is read as the prompt of a
        // non-interactive run instead.
        let mut args: Vec<String> = ["--output-format", "json", "--allow-all-tools", "--no-auto-update"]
            .map(String::from)
            .to_vec();
        match &ctx.request.resume_session_id {
            Some(id) => args.extend(["--resume".to_string(), id.clone()]),
            // A new session gets its id from us, so `session` goes out before the first model call.
            None => args.extend(["--session-id".to_string(), session_id.to_string()]),
        }
        if let Some(model) = &ctx.request.options.model {
            args.extend(["--model".to_string(), model.clone()]);
        }
        args
    }
}

#[async_trait]
impl Provider for Copilot {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Copilot
    }

    async fn prepare(&self, ctx: &JobContext<'_>) -> Result<CommandPlan, Failure> {
        let mut env = child_env(&[], ENV_PREFIXES);
        match &ctx.request.credential {
            Some(Credential::Token(token)) => set_env(&mut env, TOKEN_VAR, token.expose()),
            Some(Credential::ClaudeCredentialsJson { .. }) => {
                return Err(Failure::new(
                    ErrorCode::AuthFailed,
                    "a Claude credentials object cannot authenticate the Copilot CLI",
                ));
            }
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
        let session_id = ctx
            .request
            .resume_session_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        *self.session_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(session_id.clone());
        Ok(CommandPlan::in_workspace(
            self.bin.clone(),
            Self::args(ctx, &session_id),
            env,
            ctx,
        ))
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        let session_id = self.session_id.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Box::new(CopilotParser::new(session_id))
    }

    fn session_files(&self, _workdir: &Path, session_id: &str) -> Option<SessionFiles> {
        let home = Self::home(&child_env(&[], ENV_PREFIXES));
        Some(SessionFiles {
            local: home.join("session-state").join(session_id),
        })
    }
}
