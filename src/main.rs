//! Entry point: the subcommands (`serve`, the default; `gateway`; `healthcheck [URL]`; `exec`; `acp`) parsed with
//! clap.
//! Settings → telemetry → build → run.

use std::process::ExitCode;

use unified_worker::{
    gateway::{GatewayApp, settings::GatewaySettings},
    settings::{LogFormat, Settings, SettingsError},
    startup::Application,
    telemetry,
};

/// Runs coding-assistant CLIs as one-job workers and streams what they do as Server-Sent Events.
#[derive(clap::Parser)]
#[command(name = "unified-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run the worker (the default): one job, then exit. Configured by environment variables
    /// (docs/configuration.md).
    Serve,
    /// Run the fleet gateway in front of the workers named by GATEWAY_WORKERS.
    Gateway,
    /// Exit 0 when /health answers 200 (for a container HEALTHCHECK).
    Healthcheck {
        /// Default: http://127.0.0.1:$PORT/health
        url: Option<String>,
    },
    /// Run one job on a worker or a fleet and show its events.
    ///
    /// The prompt is the last argument, or stdin when it is absent or '-'. $WORKER_API_TOKEN is sent as the bearer
    /// token; credentials come only from environment variables (--token-env, $GITHUB_TOKEN), never from the command
    /// line, where they would end up in shell history and `ps`. With --approvals the agent asks before it acts:
    /// at a terminal the question is put to you; with --json the answers are read from stdin; --approve-all and
    /// --reject-all answer every question themselves. Exit codes: 0 completed, 1 the job failed, 2 bad usage,
    /// 3 no worker reached in time, 130 interrupted.
    Exec(Box<unified_worker::client::ExecArgs>),
    /// Serve an editor as its coding agent over the Agent Client Protocol on stdin and stdout.
    ///
    /// Each session the editor opens is a conversation job on the worker or fleet at --url: its prompts are the
    /// job's turns, the agent's questions are put to the editor, a cancel interrupts the turn, and a session the
    /// editor loads again resumes with its conversation and work tree (docs/acp-server.md). $WORKER_API_TOKEN is
    /// sent as the bearer token; credentials come only from environment variables (--token-env, $GITHUB_TOKEN).
    Acp(Box<unified_worker::acp_server::AcpArgs>),
}

fn main() -> ExitCode {
    // clap prints help and --version to stdout with exit 0, and usage errors to stderr with exit 2.
    let cli = <Cli as clap::Parser>::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unified-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(serve()),
        Command::Gateway => runtime.block_on(gateway()),
        Command::Healthcheck { url } => ExitCode::from(runtime.block_on(unified_worker::healthcheck::run(url)) as u8),
        Command::Exec(args) => ExitCode::from(runtime.block_on(unified_worker::client::run(*args)) as u8),
        Command::Acp(args) => ExitCode::from(runtime.block_on(unified_worker::acp_server::run(*args)) as u8),
    }
}

async fn serve() -> ExitCode {
    launch(
        "unified-worker",
        Settings::from_env(),
        |s| s.log_format,
        Application::build,
        |app| app.run_until_stopped(),
    )
    .await
}

/// The fleet's front door (docs/fleet.md).
async fn gateway() -> ExitCode {
    launch(
        "unified-worker gateway",
        GatewaySettings::from_env(),
        |s| s.common.log_format,
        GatewayApp::build,
        |app| app.run_until_stopped(),
    )
    .await
}

/// Settings → telemetry → build → run, the same for both servers: a bad setting exits 2 naming the variable.
async fn launch<S, A, F>(
    name: &str,
    settings: Result<S, SettingsError>,
    log_format: impl FnOnce(&S) -> LogFormat,
    build: impl FnOnce(S) -> anyhow::Result<A>,
    run: impl FnOnce(A) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(log_format(&settings));
    let app = match build(settings) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match run(app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
