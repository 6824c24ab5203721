//! Cursor's agent CLI (`cursor-agent`): its variables, its API key and its command line. The stream-json parser
//! lives in `parser`.

mod parser;

use async_trait::async_trait;
pub use parser::CursorParser;

use super::{
    Binary, Cleanup, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext, Variables,
    env::{child_env, get_env, set_env},
    input::{self, ModelOnly},
};
use crate::{
    error::ApiError,
    event::{ErrorCode, Failure},
    secret::Secret,
};

pub struct Cursor;

const KEY_VAR: &str = "CURSOR_API_KEY";

const VARIABLES: Variables = Variables {
    names: &[KEY_VAR],
    prefixes: &["CURSOR_"],
    withheld: &[],
    secrets: &[KEY_VAR],
};

impl Provider for Cursor {
    fn name(&self) -> &'static str {
        "cursor"
    }

    fn binary(&self) -> Binary {
        Binary {
            var: "CURSOR_BIN",
            default: "cursor-agent",
        }
    }

    fn variables(&self) -> Variables {
        VARIABLES
    }

    fn configure(&self, request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError> {
        Ok(Box::new(CursorRun {
            key: request.credential.map(input::token_only).transpose()?,
            // Its CLI has no turn limit, permission modes or system-prompt flag, and its tool names differ.
            options: ModelOnly::parse(request.options)?,
        }))
    }
}

#[derive(Debug)]
struct CursorRun {
    key: Option<Secret>,
    options: ModelOnly,
}

impl CursorRun {
    fn args(&self, ctx: &RunContext<'_>) -> Vec<String> {
        // `-p` without a value: the prompt is read from stdin, never passed on argv. `--force` lets the agent
        // write files and run commands without a person to approve them.
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--force"]
            .map(String::from)
            .to_vec();
        if let Some(id) = ctx.resume_session_id {
            args.extend(["--resume".to_string(), id.to_string()]);
        }
        if let Some(model) = &self.options.model {
            args.extend(["--model".to_string(), model.clone()]);
        }
        args
    }
}

#[async_trait]
impl ProviderRun for CursorRun {
    fn secrets(&self) -> Vec<&str> {
        self.key.iter().map(Secret::expose).collect()
    }

    async fn prepare(&self, ctx: &RunContext<'_>) -> Result<PreparedRun, Failure> {
        let mut env = child_env(&VARIABLES);
        match &self.key {
            Some(key) => set_env(&mut env, KEY_VAR, key.expose()),
            None if get_env(&env, KEY_VAR).is_some() => {}
            None => {
                return Err(Failure::new(
                    ErrorCode::AuthFailed,
                    "no Cursor credentials: send codingAssistantAccessToken or configure CURSOR_API_KEY",
                ));
            }
        }
        Ok(PreparedRun {
            plan: ctx.plan(self.args(ctx), env),
            parser: Box::new(CursorParser::default()),
            cleanup: Cleanup::default(),
        })
    }
}
