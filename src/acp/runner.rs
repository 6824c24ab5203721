//! The runner for an agent spoken to over ACP: the same process, limits and group kill as a headless run, with
//! stdin kept open for JSON-RPC, the job's questions timed and answered, and `session/cancel` before a stop.

use std::{future::Future, time::Duration};

use tokio::{sync::mpsc, time::Instant};

use super::client::{AcpClient, AcpSetup, Step};
use crate::{
    approvals::{Approvals, DEFAULT_TIMEOUT, OnTimeout, Policy},
    event::{ErrorCode, EventKind, Failure, ResolvedBy, StreamName},
    process::{
        CommandPlan, Limits, Next, Outcome, OutputLine, sleep_until_opt, spawn, timed_out, truncate_tool_output,
    },
};

/// Runs one ACP turn to its end. Like `run`, `stopped` resolves with the failure to report when the job is stopped
/// from outside.
pub async fn converse(
    plan: CommandPlan,
    setup: AcpSetup,
    approvals: &Approvals,
    limits: &Limits,
    stopped: impl Future<Output = Failure>,
    emit: impl FnMut(Vec<EventKind>),
) -> Outcome {
    let (to_agent, input) = mpsc::unbounded_channel();
    // The prompt travels in `session/prompt`; stdin carries JSON-RPC only.
    let mut plan = plan;
    plan.stdin.clear();
    let mut process = match spawn(plan, limits, Some(input)) {
        Ok(p) => p,
        Err(failure) => return Outcome::Failed(failure),
    };
    // Without approvals nothing is asked: every question is answered by the client itself.
    let (wait, on_timeout) = match setup.policy {
        Policy::Client { timeout, on_timeout } => (timeout, on_timeout),
        Policy::AllowAll => (DEFAULT_TIMEOUT, OnTimeout::Reject),
    };
    let (mut client, steps) = AcpClient::start(setup);
    client.number_questions_after(approvals.asked());
    let mut turn = Turn {
        client,
        to_agent,
        approvals,
        wait,
        on_timeout,
        events: Vec::new(),
        outcome: None,
        limits,
        emit,
    };
    turn.apply(steps);
    let mut answers = approvals.take_answers();

    let mut last_output = Instant::now();
    let idle_timer = tokio::time::sleep_until(last_output + limits.idle);
    tokio::pin!(idle_timer);
    let total_timer = tokio::time::sleep_until(limits.deadline);
    tokio::pin!(total_timer);
    tokio::pin!(stopped);

    let stop = loop {
        turn.flush();
        if let Some(outcome) = turn.outcome.take() {
            // The agent is a server and would wait for the next prompt; its turn is what the job asked for.
            approvals.withdraw_all();
            drop(turn.to_agent);
            let exit = process.terminate().await;
            tracing::info!(exit = %exit.describe(), "agent stopped after its turn");
            return with_duration(outcome, exit.elapsed);
        }
        let next_deadline = approvals.next_deadline();
        tokio::select! {
            biased;
            failure = &mut stopped => break failure,
            _ = &mut total_timer => break timed_out(limits.timeout),
            _ = &mut idle_timer => {
                // Waiting for a person is not idleness; the clock starts again when the question is settled.
                if approvals.waiting() {
                    last_output = Instant::now();
                } else if last_output.elapsed() >= limits.idle {
                    break Failure::new(
                        ErrorCode::IdleTimeout,
                        format!("the agent produced no output for {}s", limits.idle.as_secs_f64()),
                    );
                }
                idle_timer.as_mut().reset(last_output + limits.idle);
            }
            Some(answer) = recv(&mut answers) => {
                last_output = Instant::now();
                let steps = turn.client.answer(&answer.request_id, &answer.option_id, ResolvedBy::Client);
                turn.apply(steps);
            }
            _ = sleep_until_opt(next_deadline), if next_deadline.is_some() => {
                last_output = Instant::now();
                for request_id in approvals.take_expired(Instant::now()) {
                    let steps = turn.client.expire(&request_id, turn.on_timeout);
                    turn.apply(steps);
                }
            }
            next = process.next() => match next {
                Next::Lines(lines) => {
                    last_output = Instant::now();
                    turn.lines(lines);
                }
                Next::Exited(exit) => {
                    approvals.withdraw_all();
                    let outcome = match turn.outcome.take() {
                        Some(outcome) => with_duration(outcome, exit.elapsed),
                        None => {
                            let (steps, outcome) = turn.client.finish(&exit);
                            turn.apply(steps);
                            outcome
                        }
                    };
                    turn.flush();
                    return outcome;
                }
            },
        }
    };

    // Stopped from outside: open questions are withdrawn and the turn cancelled, the agent gets a moment to say
    // so, then the whole group goes. The session is not used again (one adapter answers a turn behind after a
    // cancel).
    approvals.withdraw_all();
    let steps = turn.client.cancel();
    turn.apply(steps);
    let grace = tokio::time::sleep(limits.kill_grace.min(CANCEL_REPLY_WAIT));
    tokio::pin!(grace);
    while turn.outcome.is_none() {
        turn.flush();
        tokio::select! {
            _ = &mut grace => break,
            next = process.next() => match next {
                Next::Lines(lines) => turn.lines(lines),
                Next::Exited(_) => break,
            },
        }
    }
    turn.flush();
    drop(turn.to_agent);
    let exit = process.terminate().await;
    tracing::info!(code = ?stop.code, exit = %exit.describe(), "agent stopped");
    let mut failure = exit.annotate(stop);
    failure.session_id = turn.client.session_id().map(String::from);
    Outcome::Failed(failure)
}

/// How long a cancelled agent may take to end its turn before its group is signalled. The agents here answer
/// within milliseconds; the bound keeps a stop within `KILL_GRACE_SECONDS` plus this, so SIGTERM's drain stays
/// inside the worker's shutdown bound.
const CANCEL_REPLY_WAIT: Duration = Duration::from_secs(1);

struct Turn<'a, E> {
    client: AcpClient,
    to_agent: mpsc::UnboundedSender<String>,
    approvals: &'a Approvals,
    /// How long a question waits, and what applies after.
    wait: Duration,
    on_timeout: OnTimeout,
    /// Events of the current hand-off: a burst of lines costs one append, as in a headless run.
    events: Vec<EventKind>,
    outcome: Option<Outcome>,
    limits: &'a Limits,
    emit: E,
}

impl<E: FnMut(Vec<EventKind>)> Turn<'_, E> {
    fn apply(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Send(line) => {
                    // The agent may be gone already; its exit is reported by the process.
                    let _ = self.to_agent.send(line);
                }
                Step::Emit(event) => self
                    .events
                    .push(truncate_tool_output(event, self.limits.tool_output_max_bytes)),
                Step::Ask { request_id, options } => {
                    self.approvals.open(&request_id, options, Instant::now() + self.wait);
                }
                Step::Finished(outcome) => self.outcome = Some(outcome),
            }
        }
    }

    fn flush(&mut self) {
        if !self.events.is_empty() {
            (self.emit)(std::mem::take(&mut self.events));
        }
    }

    fn lines(&mut self, lines: Vec<OutputLine>) {
        for line in lines {
            match line {
                OutputLine::Stdout {
                    text,
                    original_len,
                    truncated,
                } => {
                    if truncated {
                        self.events.push(EventKind::warn(format!(
                            "an agent message of {original_len} bytes was cut at MAX_LINE_BYTES ({}) and could \
                             not be read",
                            self.limits.max_line_bytes
                        )));
                    }
                    let steps = self.client.push_line(&text);
                    self.apply(steps);
                }
                OutputLine::Stderr(text) => self.events.push(EventKind::Log {
                    stream: StreamName::Stderr,
                    text,
                }),
            }
        }
    }
}

fn with_duration(outcome: Outcome, elapsed: Duration) -> Outcome {
    match outcome {
        Outcome::Completed(mut run) if run.duration_ms == 0 => {
            run.duration_ms = elapsed.as_millis() as u64;
            Outcome::Completed(run)
        }
        other => other,
    }
}

async fn recv(
    answers: &mut Option<tokio::sync::OwnedMutexGuard<mpsc::UnboundedReceiver<crate::approvals::Answer>>>,
) -> Option<crate::approvals::Answer> {
    match answers {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
