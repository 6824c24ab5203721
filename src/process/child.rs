//! The CLI as a child process: its own process group, the prompt on stdin then closed, stdout as capped lines in
//! batches, stderr kept as a tail, and SIGTERM-then-SIGKILL to the whole group so no process of a job survives.

use std::{
    io,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncWriteExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
    time::Instant,
};

use super::{
    CommandPlan, ExitInfo,
    lines::{Tail, into_text, read_line_capped},
};

const STDERR_LINE_MAX: usize = 64 * 1024;
const READ_BUFFER: usize = 256 * 1024;

#[derive(Debug)]
pub(crate) enum OutputLine {
    /// `original_len` is larger than `text.len()` when the line was cut at `MAX_LINE_BYTES`.
    Stdout {
        text: String,
        original_len: usize,
        truncated: bool,
    },
    Stderr(String),
}

#[derive(Debug)]
pub(crate) enum Next {
    /// One or more lines, in order. Lines already read together travel together, so a burst costs one hand-off.
    Lines(Vec<OutputLine>),
    Exited(ExitInfo),
}

/// A batch is handed over early once it is this large, so that memory and latency stay bounded under a flood.
const BATCH_LINES: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

pub(crate) struct CliProcess {
    child: Child,
    pgid: i32,
    lines: mpsc::Receiver<Vec<OutputLine>>,
    pipes_open: bool,
    status: Option<ExitStatus>,
    /// After the leader exits, stragglers holding the pipes get this long before they are killed.
    pipe_deadline: Option<Instant>,
    grace: Duration,
    stderr_tail: Arc<Mutex<Tail>>,
    started: Instant,
}

impl CliProcess {
    /// `input`: for a conversation (ACP), the lines to write after `plan.stdin`; stdin stays open until its sender
    /// is dropped. Without it, stdin is closed after the prompt.
    pub(crate) fn spawn(
        plan: CommandPlan,
        max_line_bytes: usize,
        grace: Duration,
        input: Option<mpsc::UnboundedReceiver<String>>,
    ) -> io::Result<Self> {
        let mut child = Command::new(&plan.program)
            .args(&plan.args)
            .env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&plan.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that one signal reaches the CLI and every tool process it started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        let (tx, lines) = mpsc::channel(64);
        let stderr_tail = Arc::new(Mutex::new(Tail::default()));

        if let Some(mut stdin) = child.stdin.take() {
            let prompt = plan.stdin;
            tokio::spawn(async move {
                // A CLI that exits without reading its prompt closes the pipe; that is its failure to report,
                // not ours. Dropping stdin closes it, which some CLIs wait for before starting.
                let _ = stdin.write_all(prompt.as_bytes()).await;
                if let Some(mut input) = input {
                    while let Some(mut line) = input.recv().await {
                        line.push('\n');
                        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                            break;
                        }
                    }
                }
                let _ = stdin.shutdown().await;
            });
        }
        if let Some(stdout) = child.stdout.take() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::with_capacity(READ_BUFFER, stdout);
                let mut buf = Vec::new();
                let (mut batch, mut batch_bytes) = (Vec::new(), 0);
                loop {
                    let Ok(Some(len)) = read_line_capped(&mut reader, max_line_bytes, &mut buf).await else {
                        if !batch.is_empty() {
                            let _ = tx.send(batch).await;
                        }
                        break;
                    };
                    batch_bytes += buf.len();
                    let text = into_text(&mut buf);
                    batch.push(OutputLine::Stdout {
                        truncated: len > max_line_bytes,
                        original_len: len,
                        text,
                    });
                    // Holding the batch only while a whole further line is already buffered adds no latency.
                    let more_buffered = memchr::memchr(b'\n', reader.buffer()).is_some();
                    if !more_buffered || batch.len() >= BATCH_LINES || batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        if tx.send(std::mem::take(&mut batch)).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stderr);
                let mut buf = Vec::new();
                while let Ok(Some(_)) = read_line_capped(&mut reader, STDERR_LINE_MAX, &mut buf).await {
                    let text = into_text(&mut buf);
                    tail.lock().unwrap_or_else(|e| e.into_inner()).push(&text);
                    if tx.send(vec![OutputLine::Stderr(text)]).await.is_err() {
                        break;
                    }
                }
            });
        }
        Ok(CliProcess {
            child,
            pgid,
            lines,
            pipes_open: true,
            status: None,
            pipe_deadline: None,
            grace,
            stderr_tail,
            started: Instant::now(),
        })
    }

    /// The next line of output, or the exit once the process has ended and its output is read.
    pub(crate) async fn next(&mut self) -> Next {
        loop {
            if let (Some(status), false) = (self.status, self.pipes_open) {
                self.reap_group().await;
                return Next::Exited(self.exit_info(status));
            }
            let deadline = self.pipe_deadline;
            tokio::select! {
                line = self.lines.recv(), if self.pipes_open => match line {
                    Some(lines) => return Next::Lines(lines),
                    None => self.pipes_open = false,
                },
                status = self.child.wait(), if self.status.is_none() => {
                    let status = status.unwrap_or_else(|_| exit_status_unknown());
                    self.status = Some(status);
                    // The CLI is done; whatever it left running belongs to the job and goes with it.
                    self.signal_group(libc::SIGTERM);
                    self.pipe_deadline = Some(Instant::now() + self.grace);
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() && self.pipes_open => {
                    self.signal_group(libc::SIGKILL);
                    // A process that left the group can hold the pipe forever; stop waiting for it.
                    self.pipes_open = false;
                }
            }
        }
    }

    /// Stops the whole group: SIGTERM, then SIGKILL after the grace period. Returns how the CLI ended.
    pub(crate) async fn terminate(&mut self) -> ExitInfo {
        self.stop_with(libc::SIGTERM).await
    }

    /// Stops the whole group with `signal` first (SIGINT for an interrupted turn: the CLIs take it as Ctrl-C and
    /// keep the session), then SIGKILL after the grace period.
    pub(crate) async fn stop_with(&mut self, signal: i32) -> ExitInfo {
        self.signal_group(signal);
        let status = match self.status {
            Some(status) => status,
            None => match tokio::time::timeout(self.grace, self.child.wait()).await {
                Ok(Ok(status)) => status,
                _ => {
                    self.signal_group(libc::SIGKILL);
                    self.child.wait().await.unwrap_or_else(|_| exit_status_unknown())
                }
            },
        };
        self.status = Some(status);
        self.reap_group().await;
        self.exit_info(status)
    }

    fn exit_info(&self, status: ExitStatus) -> ExitInfo {
        use std::os::unix::process::ExitStatusExt;
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
            stderr_tail: self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner()).text(),
            elapsed: self.started.elapsed(),
        }
    }

    fn signal_group(&self, signal: i32) {
        signal_group(self.pgid, signal);
    }

    fn group_alive(&self) -> bool {
        // Signal 0 only checks for existence.
        signal_group(self.pgid, 0)
    }

    /// Waits for the rest of the group to go after the leader ended, then kills what remains.
    async fn reap_group(&mut self) {
        let deadline = Instant::now() + self.grace;
        while self.group_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.group_alive() {
            self.signal_group(libc::SIGKILL);
        }
    }
}

impl Drop for CliProcess {
    /// `kill_on_drop` reaches only the CLI itself; a job future dropped mid-run must not leave its tools running.
    fn drop(&mut self) {
        if self.group_alive() {
            self.signal_group(libc::SIGKILL);
        }
    }
}

/// Sends `signal` to every process of the group `pgid`; true when the group exists.
pub fn signal_group(pgid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory-safety preconditions.
    pgid > 0 && unsafe { libc::kill(-pgid, signal) } == 0
}

fn exit_status_unknown() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(255 << 8)
}

/// Sleeps until `deadline`, or for ever without one (a `select!` branch that never fires).
pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
