//! Cursor's agent CLI (`cursor-agent`): its command line and its API key. The stream-json parser lives in
//! `parser`.

mod parser;

use std::path::PathBuf;

use async_trait::async_trait;
pub use parser::CursorParser;

use super::{CommandPlan, JobContext, OutputParser, Provider, ProviderKind, child_env, get_env, set_env};
use crate::{
    event::{ErrorCode, Failure},
    request::Credential,
    settings::Settings,
};

const KEY_VAR: &str = "CURSOR_API_KEY";

pub struct Cursor {
    bin: PathBuf,
}

impl Cursor {
    pub fn new(settings: &Settings) -> Self {
        Cursor {
            bin: settings.cursor_bin.clone(),
        }
    }

    fn args(ctx: &JobContext<'_>) -> Vec<String> {
        // `-p` without a value: the prompt is read from stdin, never passed on argv. `--force` lets the agent
        // write files and run commands without a person to approve them.
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--force"]
            .map(String::from)
            .to_vec();
        if let Some(id) = &ctx.request.resume_session_id {
            args.extend(["--resume".to_string(), id.clone()]);
        }
        if let Some(model) = &ctx.request.options.model {
            args.extend(["--model".to_string(), model.clone()]);
        }
        args
    }
}

#[async_trait]
impl Provider for Cursor {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Cursor
    }

    async fn prepare(&self, ctx: &JobContext<'_>) -> Result<CommandPlan, Failure> {
        let mut env = child_env(&[KEY_VAR], &["CURSOR_"]);
        match &ctx.request.credential {
            Some(Credential::Token(token)) => set_env(&mut env, KEY_VAR, token.expose()),
            Some(Credential::ClaudeCredentialsJson { .. }) => {
                return Err(Failure::new(
                    ErrorCode::AuthFailed,
                    "a Claude credentials object cannot authenticate cursor-agent",
                ));
            }
            None if get_env(&env, KEY_VAR).is_some() => {}
            None => {
                return Err(Failure::new(
                    ErrorCode::AuthFailed,
                    "no Cursor credentials: send codingAssistantAccessToken or configure CURSOR_API_KEY",
                ));
            }
        }
        Ok(CommandPlan::in_workspace(self.bin.clone(), Self::args(ctx), env, ctx))
    }

    fn parser(&self) -> Box<dyn OutputParser> {
        Box::new(CursorParser::default())
    }
}
