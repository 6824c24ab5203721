//! The one process runner every provider shares. It is handed a command plan and a parser, runs the CLI, feeds
//! each stdout line to the parser, enforces the job's limits (total time, idle time, a stop from outside) and
//! says how the run ended. It knows no provider; what a provider contributes is the plan and the parser.

mod child;
mod lines;

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

pub use child::signal_group;
pub(crate) use child::{CliProcess, Next, OutputLine, sleep_until_opt};
pub use lines::read_line_capped;
use tokio::time::Instant;

use crate::event::{ErrorCode, EventKind, Failure, StreamName, Usage};

/// Everything needed to start the CLI. The prompt travels on stdin, never on argv.
#[derive(Debug)]
pub struct CommandPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub stdin: String,
}

/// How the CLI process ended.
#[derive(Clone, Debug, Default)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr_tail: String,
    /// Wall time from spawn to exit, for CLIs that do not report a duration themselves.
    pub elapsed: Duration,
}

impl ExitInfo {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            _ => "unknown exit status".into(),
        }
    }

    /// Attaches what is known about the process to a failure.
    pub fn annotate(&self, mut failure: Failure) -> Failure {
        failure.exit_code = failure.exit_code.or(self.code).or(self.signal.map(|s| 128 + s));
        if failure.stderr_tail.is_none() && !self.stderr_tail.is_empty() {
            failure.stderr_tail = Some(self.stderr_tail.clone());
        }
        failure
    }
}

/// What a finished run amounts to, before git and the job add their parts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    pub session_id: Option<String>,
    pub result: Option<String>,
    pub duration_ms: u64,
    pub num_turns: u64,
    pub cost_usd: Option<f64>,
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Completed(RunSummary),
    Failed(Failure),
}

/// Turns the CLI's stdout, one line at a time, into normalized events. Pure and synchronous so that it can be
/// tested on recorded lines; all I/O lives in this runner.
pub trait OutputParser: Send {
    fn push_line(&mut self, line: &str) -> Vec<EventKind>;
    fn session_id(&self) -> Option<&str>;
    /// Called once after the process ended; decides success or failure from what was seen and the exit.
    fn finish(&mut self, exit: &ExitInfo) -> Outcome;
}

/// The bounds one run is held to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// When the job's total time is up (it started before the clone, so the clone counts).
    pub deadline: Instant,
    /// The job's total time, for the message when the deadline passes.
    pub timeout: Duration,
    pub idle: Duration,
    pub kill_grace: Duration,
    pub max_line_bytes: usize,
    pub tool_output_max_bytes: usize,
}

/// Runs the CLI to its end, handing every batch of events to `emit` as it is produced. `stopped` resolves, with
/// the failure to report, when the job is stopped from outside (cancel, SIGTERM); the whole process group then
/// goes.
pub async fn run(
    plan: CommandPlan,
    mut parser: Box<dyn OutputParser>,
    limits: &Limits,
    stopped: impl Future<Output = Failure>,
    mut emit: impl FnMut(Vec<EventKind>),
) -> Outcome {
    let mut process = match spawn(plan, limits, None) {
        Ok(p) => p,
        Err(failure) => return Outcome::Failed(failure),
    };
    let mut last_output = Instant::now();
    // Re-armed only when it fires, not on every line: at 100k lines/s the timer wheel would dominate.
    let idle_timer = tokio::time::sleep_until(last_output + limits.idle);
    tokio::pin!(idle_timer);
    let total_timer = tokio::time::sleep_until(limits.deadline);
    tokio::pin!(total_timer);
    tokio::pin!(stopped);

    let stop = loop {
        tokio::select! {
            biased;
            failure = &mut stopped => break failure,
            _ = &mut total_timer => break timed_out(limits.timeout),
            _ = &mut idle_timer => {
                if last_output.elapsed() >= limits.idle {
                    break Failure::new(
                        ErrorCode::IdleTimeout,
                        format!("the provider produced no output for {}", seconds(limits.idle)),
                    );
                }
                idle_timer.as_mut().reset(last_output + limits.idle);
            }
            next = process.next() => match next {
                Next::Lines(lines) => {
                    last_output = Instant::now();
                    let mut events = Vec::with_capacity(lines.len());
                    for line in lines {
                        handle_line(line, parser.as_mut(), limits, &mut events);
                    }
                    emit(events);
                }
                Next::Exited(exit) => return parser.finish(&exit),
            },
        }
    };
    let signal = if stop.code == ErrorCode::Interrupted {
        libc::SIGINT
    } else {
        libc::SIGTERM
    };
    let exit = process.stop_with(signal).await;
    tracing::info!(code = ?stop.code, exit = %exit.describe(), "provider stopped");
    let mut failure = exit.annotate(stop);
    failure.session_id = parser.session_id().map(String::from);
    Outcome::Failed(failure)
}

/// Runs a short helper command (a `--version` probe, a session export) to its end, stdin closed and its output
/// captured, in a process group of its own that is killed afterwards, finished or not, so that nothing it started
/// outlives it. `Ok(None)`: it did not finish within `limit`.
pub async fn run_bounded(
    mut command: tokio::process::Command,
    limit: Duration,
) -> std::io::Result<Option<std::process::Output>> {
    use std::process::Stdio;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = child.id().map(|id| id as i32).unwrap_or(0);
    let result = tokio::time::timeout(limit, child.wait_with_output()).await;
    signal_group(pgid, libc::SIGKILL);
    result.ok().transpose()
}

/// Starts the CLI; a CLI that is not there is `provider_not_installed`.
pub(crate) fn spawn(
    plan: CommandPlan,
    limits: &Limits,
    input: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
) -> Result<CliProcess, Failure> {
    let program = plan.program.clone();
    match CliProcess::spawn(plan, limits.max_line_bytes, limits.kill_grace, input) {
        Ok(process) => {
            tracing::info!(program = %program.display(), "provider started");
            Ok(process)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(Failure::new(
                ErrorCode::ProviderNotInstalled,
                format!(
                    "{} could not be started ({e}); install it or set its *_BIN variable",
                    program.display()
                ),
            ))
        }
        Err(e) => Err(Failure::new(
            ErrorCode::Internal,
            format!("could not start the provider: {e}"),
        )),
    }
}

/// The terminal failure of a job whose total time (`timeoutSeconds`, capped by `JOB_TIMEOUT_SECONDS`) is up,
/// whether the CLI or the clone was running then.
pub fn timed_out(timeout: Duration) -> Failure {
    Failure::new(
        ErrorCode::Timeout,
        format!("the job exceeded its time limit of {}", seconds(timeout)),
    )
}

fn handle_line(line: OutputLine, parser: &mut dyn OutputParser, limits: &Limits, out: &mut Vec<EventKind>) {
    match line {
        OutputLine::Stdout {
            text,
            original_len,
            truncated,
        } => {
            if truncated {
                out.push(EventKind::warn(format!(
                    "a provider output line of {original_len} bytes was truncated to MAX_LINE_BYTES ({})",
                    limits.max_line_bytes
                )));
            }
            out.extend(
                parser
                    .push_line(&text)
                    .into_iter()
                    .map(|e| truncate_tool_output(e, limits.tool_output_max_bytes)),
            );
        }
        OutputLine::Stderr(text) => out.push(EventKind::Log {
            stream: StreamName::Stderr,
            text,
        }),
    }
}

pub(crate) fn truncate_tool_output(event: EventKind, max: usize) -> EventKind {
    match event {
        EventKind::ToolResult {
            tool_use_id,
            mut output,
            is_error,
        } if output.len() > max => {
            let total = output.len();
            let mut cut = max;
            while !output.is_char_boundary(cut) {
                cut -= 1;
            }
            output.truncate(cut);
            output.push_str(&format!("\n[truncated: {total} bytes in total]"));
            EventKind::ToolResult {
                tool_use_id,
                output,
                is_error,
            }
        }
        other => other,
    }
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Finds the executable the way `execvp` would.
pub fn resolve(bin: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if bin.components().count() > 1 {
        return executable(bin).then(|| bin.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_output_is_cut_on_a_character_boundary_and_says_so() {
        let long = EventKind::ToolResult {
            tool_use_id: "t".into(),
            output: "é".repeat(10),
            is_error: false,
        };
        let EventKind::ToolResult { output, .. } = truncate_tool_output(long, 5) else {
            panic!("not a tool result");
        };
        assert_eq!(output, "éé\n[truncated: 20 bytes in total]");
    }

    #[test]
    fn an_exit_fills_in_what_a_failure_does_not_know() {
        let exit = ExitInfo {
            code: None,
            signal: Some(15),
            stderr_tail: "boom".into(),
            elapsed: Duration::ZERO,
        };
        let failure = exit.annotate(Failure::new(ErrorCode::ProviderFailed, "x"));
        assert_eq!(
            (failure.exit_code, failure.stderr_tail.as_deref()),
            (Some(143), Some("boom"))
        );
        assert_eq!(exit.describe(), "signal 15");
    }
}
