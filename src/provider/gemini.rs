//! Google's Gemini CLI: its variables, its API key, its command line and where it keeps sessions. Its private
//! home (settings, project folder) lives in `home`; the stream-json parser in `parser`.

mod home;
mod parser;

use async_trait::async_trait;
use home::CliHome;
pub use parser::GeminiParser;

use super::{
    AcpPrepared, AcpSupport, Binary, Cleanup, PreparedRun, Provider, ProviderRequest, ProviderRun, RunContext, SessionFiles, Variables,
    env::{child_env, get_env, set_env, worker_var},
    input::{self, ModelOnly},
    mcp::{McpServer, McpServers, McpTransport},
};
use serde_json::{Value, json};
use crate::{
    broker::ModelEndpoint,
    error::ApiError,
    event::{ErrorCode, Failure},
    secret::Secret,
};

pub struct Gemini;

const KEY_VAR: &str = "GEMINI_API_KEY";

/// How many times the CLI tries a model call (`general.maxAttempts` in its settings, at most 10). Unset, the
/// CLI's default applies; a test environment turns it down so that a 429 fails at once.
const MAX_ATTEMPTS_VAR: &str = "GEMINI_MAX_ATTEMPTS";

/// Every `GEMINI_*` variable is the CLI's own (`GEMINI_API_KEY`, `GEMINI_MODEL`, `GEMINI_CLI_*`), and
/// `GOOGLE_GEMINI_BASE_URL` points it at another endpoint (a gateway; the test suite's mock).
const VARIABLES: Variables = Variables {
    names: &["GOOGLE_GEMINI_BASE_URL"],
    prefixes: &["GEMINI_"],
    // They configure the worker's settings file and the image's entrypoint (a file holding the key), not the CLI.
    withheld: &[MAX_ATTEMPTS_VAR, "GEMINI_API_KEY_SECRET", UPSTREAM_VAR],
    secrets: &[KEY_VAR],
};

/// The real Gemini API behind the broker, when it is not the CLI's own `GOOGLE_GEMINI_BASE_URL`.
const UPSTREAM_VAR: &str = "GEMINI_UPSTREAM_URL";

impl Provider for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn binary(&self) -> Binary {
        Binary {
            var: "GEMINI_BIN",
            default: "gemini",
        }
    }

    fn variables(&self) -> Variables {
        VARIABLES
    }

    fn acp(&self) -> AcpSupport {
        AcpSupport::Optional
    }

    /// The CLI sends its key as `x-goog-api-key`.
    fn model_endpoint(&self) -> Option<ModelEndpoint> {
        Some(ModelEndpoint {
            base_url_var: "GOOGLE_GEMINI_BASE_URL",
            key_vars: &[KEY_VAR],
            upstream_var: Some(UPSTREAM_VAR),
            default_upstream: Some("https://generativelanguage.googleapis.com"),
        })
    }

    fn configure(&self, mut request: ProviderRequest) -> Result<Box<dyn ProviderRun>, ApiError> {
        let mcp_servers = request.take_mcp_servers()?;
        Ok(Box::new(GeminiRun {
            key: request.credential.map(input::token_only).transpose()?,
            mcp_servers,
            // A model only: its turn limit is a settings key, its tool rules are policy files, and its approval
            // mode is fixed to yolo since nobody is there to approve a call.
            options: ModelOnly::parse(request.options)?,
        }))
    }
}

#[derive(Debug)]
struct GeminiRun {
    key: Option<Secret>,
    options: ModelOnly,
    mcp_servers: McpServers,
}

/// An entry of Gemini CLI's `mcpServers` setting: a stdio server as the request has it, an http one under
/// `httpUrl` (its `url` would mean the older SSE transport). The CLI calls its tools `mcp_<server>_<tool>`.
fn gemini_entry(server: &McpServer) -> Value {
    match server.transport() {
        McpTransport::Stdio { command, args, env } => {
            json!({"command": command, "args": args, "env": env.to_json()})
        }
        McpTransport::Http { url, headers } => json!({"httpUrl": url.as_str(), "headers": headers.to_json()}),
    }
}

impl GeminiRun {
    fn args(&self, ctx: &RunContext<'_>) -> Vec<String> {
        // No `-p`: it takes the prompt as its value, i.e. on argv. Piped stdin is read as the prompt of a
        // non-interactive run instead. `yolo` approves every tool call: there is nobody to ask, and the replica
        // is the sandbox. `--skip-trust` trusts the workspace for this run only; without it a headless run in a
        // folder nobody trusted before exits with 55.
        let mut args: Vec<String> = ["-o", "stream-json", "--approval-mode", "yolo", "--skip-trust"]
            .map(String::from)
            .to_vec();
        if let Some(model) = &self.options.model {
            args.extend(["-m".to_string(), model.clone()]);
        }
        if let Some(id) = ctx.resume_session_id {
            args.extend(["--resume".to_string(), id.to_string()]);
        }
        args
    }
}

#[async_trait]
impl ProviderRun for GeminiRun {
    fn secrets(&self) -> Vec<&str> {
        self.key.iter().map(Secret::expose).chain(self.mcp_servers.secrets()).collect()
    }

    async fn prepare(&self, ctx: &RunContext<'_>) -> Result<PreparedRun, Failure> {
        Ok(PreparedRun {
            plan: ctx.plan(self.args(ctx), self.env(ctx).await?),
            parser: Box::new(GeminiParser::default()),
            cleanup: Cleanup::default(),
        })
    }

    /// `gemini --acp`: the same home, settings and key; without `--approval-mode yolo` it asks.
    async fn prepare_acp(&self, ctx: &RunContext<'_>) -> Result<AcpPrepared, Failure> {
        let mut args = vec!["--acp".to_string(), "--skip-trust".to_string()];
        if let Some(model) = &self.options.model {
            args.extend(["-m".to_string(), model.clone()]);
        }
        Ok(AcpPrepared {
            plan: ctx.plan(args, self.env(ctx).await?),
            mcp_servers: Vec::new(),
            cleanup: Cleanup::default(),
        })
    }

    fn session_files(&self, ctx: &RunContext<'_>, _session_id: &str) -> Option<SessionFiles> {
        Some(SessionFiles {
            local: CliHome::new(ctx.private_dir).chats(),
        })
    }
}

impl GeminiRun {
    /// The CLI's variables with the key, its private home written.
    async fn env(&self, ctx: &RunContext<'_>) -> Result<Vec<(String, String)>, Failure> {
        let mut env = child_env(&VARIABLES);
        match &self.key {
            Some(key) => set_env(&mut env, KEY_VAR, key.expose()),
            None if get_env(&env, KEY_VAR).is_some() => {}
            None => {
                return Err(Failure::new(
                    ErrorCode::AuthFailed,
                    "no Gemini credentials: send codingAssistantAccessToken or configure GEMINI_API_KEY",
                ));
            }
        }
        let home = CliHome::new(ctx.private_dir);
        let mcp_servers = (!self.mcp_servers.is_empty()).then(|| self.mcp_servers.to_json(gemini_entry));
        home.write(ctx.workdir, max_attempts()?, mcp_servers).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not write the Gemini CLI's settings: {e}"),
            )
        })?;
        set_env(&mut env, "GEMINI_CLI_HOME", home.root().to_string_lossy());
        set_env(&mut env, "TMPDIR", home.tmp().to_string_lossy());
        Ok(env)
    }
}

fn max_attempts() -> Result<Option<u32>, Failure> {
    let Some(raw) = worker_var(MAX_ATTEMPTS_VAR) else {
        return Ok(None);
    };
    match raw.parse::<u32>() {
        Ok(n @ 1..=10) => Ok(Some(n)),
        _ => Err(Failure::new(
            ErrorCode::Internal,
            format!("{MAX_ATTEMPTS_VAR} must be a whole number from 1 to 10, not {raw:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn ctx(resume: Option<&'static str>) -> RunContext<'static> {
        RunContext {
            binary: Path::new("gemini"),
            workdir: Path::new("/w"),
            private_dir: Path::new("/p"),
            prompt: "hi",
            resume_session_id: resume,
            broker_until: None,
        }
    }

    #[test]
    fn the_command_line_takes_the_model_and_the_session_and_never_the_prompt() {
        let run = GeminiRun {
            key: None,
            options: ModelOnly {
                model: Some("gemini-2.5-flash".into()),
            },
            mcp_servers: McpServers::default(),
        };
        assert_eq!(
            run.args(&ctx(Some("s-1"))).join(" "),
            "-o stream-json --approval-mode yolo --skip-trust -m gemini-2.5-flash --resume s-1"
        );
        let plain = GeminiRun {
            key: None,
            options: ModelOnly::default(),
            mcp_servers: McpServers::default(),
        };
        assert_eq!(
            plain.args(&ctx(None)).join(" "),
            "-o stream-json --approval-mode yolo --skip-trust"
        );
    }

    #[test]
    fn options_it_cannot_honour_are_refused_by_name() {
        for (options, name) in [
            (json!({"maxTurns": 3}), "maxTurns"),
            (json!({"permissionMode": "default"}), "permissionMode"),
        ] {
            let refused = Gemini.configure(ProviderRequest {
                options: Some(options),
                ..ProviderRequest::default()
            });
            match refused {
                Err(ApiError::InvalidRequest { field, .. }) => assert_eq!(field, format!("providerOptions.{name}")),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_session_is_the_chats_folder_of_the_private_home() {
        let run = Gemini.configure(ProviderRequest::default()).unwrap();
        let files = run.session_files(&ctx(None), "any").unwrap();
        assert_eq!(files.local, Path::new("/p/.gemini/tmp/workspace/chats"));
    }
}
