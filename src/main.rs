//! Entry point: `serve` (default), `gateway`, `healthcheck [URL]` or `exec`. Settings → telemetry → build → run.

use std::process::ExitCode;

use unified_worker::{
    gateway::{GatewayApp, settings::GatewaySettings},
    settings::Settings,
    startup::Application,
    telemetry,
};

const USAGE: &str = "usage: unified-worker [serve | gateway | healthcheck [URL] | exec [OPTIONS] [PROMPT] | --version]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unified-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["serve"] => runtime.block_on(serve()),
        ["gateway"] => runtime.block_on(gateway()),
        ["healthcheck"] => ExitCode::from(runtime.block_on(unified_worker::healthcheck::run(None)) as u8),
        ["healthcheck", url] => {
            ExitCode::from(runtime.block_on(unified_worker::healthcheck::run(Some(url.to_string()))) as u8)
        }
        ["exec", ..] => ExitCode::from(runtime.block_on(unified_worker::client::run(args[1..].to_vec())) as u8),
        ["--version" | "-V"] => {
            println!("unified-worker {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("unified-worker: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    let app = match Application::build(settings) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// The fleet's front door (SPEC §13).
async fn gateway() -> ExitCode {
    let settings = match GatewaySettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("unified-worker gateway: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.common.log_format);
    let app = match GatewayApp::build(settings) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway failed");
            ExitCode::FAILURE
        }
    }
}
