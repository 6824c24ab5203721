//! The runner for an agent spoken to over ACP: the same process, limits and group kill as a headless run, with
//! stdin kept open for JSON-RPC, the job's questions timed and answered, and `session/cancel` before a stop.

use std::{collections::HashMap, future::Future};

use tokio::{sync::mpsc, time::Instant};

use super::{
    CommandPlan, Limits, Outcome,
    child::{Next, OutputLine},
    spawn, timed_out, truncate_tool_output,
};
use crate::{
    approvals::{Approvals, OnTimeout, Policy},
    event::{ErrorCode, EventKind, Failure, ResolvedBy, StreamName},
    provider::acp::{AcpClient, AcpSetup, Step},
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
    let on_timeout = match setup.policy {
        Policy::Client { timeout, on_timeout } => Some((timeout, on_timeout)),
        Policy::AllowAll => None,
    };
    let (client, steps) = AcpClient::start(setup);
    let mut turn = Turn {
        client,
        to_agent,
        approvals,
        on_timeout,
        deadlines: HashMap::new(),
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
        if let Some(outcome) = turn.outcome.take() {
            // The agent is a server and would wait for the next prompt; its turn is what the job asked for.
            turn.settle_all();
            drop(turn.to_agent);
            let exit = process.terminate().await;
            tracing::info!(exit = %exit.describe(), "agent stopped after its turn");
            return with_duration(outcome, exit.elapsed);
        }
        let next_deadline = turn.deadlines.values().min().copied();
        tokio::select! {
            biased;
            failure = &mut stopped => break failure,
            _ = &mut total_timer => break timed_out(limits.timeout),
            _ = &mut idle_timer => {
                // Waiting for a person is not idleness; the clock starts again when the question is settled.
                if !turn.deadlines.is_empty() {
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
                turn.deadlines.remove(&answer.request_id);
                let steps = turn.client.answer(&answer.request_id, &answer.option_id, ResolvedBy::Client);
                turn.apply(steps);
            }
            _ = sleep_until(next_deadline), if next_deadline.is_some() => {
                last_output = Instant::now();
                turn.expire_due();
            }
            next = process.next() => match next {
                Next::Lines(lines) => {
                    last_output = Instant::now();
                    turn.lines(lines);
                }
                Next::Exited(exit) => {
                    if let Some(outcome) = turn.outcome.take() {
                        turn.settle_all();
                        return with_duration(outcome, exit.elapsed);
                    }
                    let (steps, outcome) = turn.client.finish(&exit);
                    turn.apply(steps);
                    turn.settle_all();
                    return outcome;
                }
            },
        }
    };

    // Stopped from outside: open questions are withdrawn and the turn cancelled, the agent gets a moment to say
    // so, then the whole group goes. The session is not used again (one adapter answers a turn behind after a
    // cancel).
    turn.settle_all();
    let steps = turn.client.cancel();
    turn.apply(steps);
    let grace = tokio::time::sleep(limits.kill_grace.min(CANCEL_REPLY_WAIT));
    tokio::pin!(grace);
    while turn.outcome.is_none() {
        tokio::select! {
            _ = &mut grace => break,
            next = process.next() => match next {
                Next::Lines(lines) => turn.lines(lines),
                Next::Exited(_) => break,
            },
        }
    }
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
const CANCEL_REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

struct Turn<'a, E> {
    client: AcpClient,
    to_agent: mpsc::UnboundedSender<String>,
    approvals: &'a Approvals,
    on_timeout: Option<(std::time::Duration, OnTimeout)>,
    /// The open questions and when their wait is up.
    deadlines: HashMap<String, Instant>,
    outcome: Option<Outcome>,
    limits: &'a Limits,
    emit: E,
}

impl<E: FnMut(Vec<EventKind>)> Turn<'_, E> {
    fn apply(&mut self, steps: Vec<Step>) {
        let mut events = Vec::new();
        for step in steps {
            match step {
                Step::Send(line) => {
                    // The agent may be gone already; its exit is reported by the process.
                    let _ = self.to_agent.send(line);
                }
                Step::Emit(event) => events.push(truncate_tool_output(event, self.limits.tool_output_max_bytes)),
                Step::Ask { request_id, options } => {
                    self.approvals.open(&request_id, options);
                    let wait = self.on_timeout.map_or(crate::approvals::DEFAULT_TIMEOUT, |(t, _)| t);
                    self.deadlines.insert(request_id, Instant::now() + wait);
                }
                Step::Finished(outcome) => self.outcome = Some(outcome),
            }
        }
        if !events.is_empty() {
            (self.emit)(events);
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
                        (self.emit)(vec![EventKind::warn(format!(
                            "an agent message of {original_len} bytes was cut at MAX_LINE_BYTES ({}) and could \
                             not be read",
                            self.limits.max_line_bytes
                        ))]);
                    }
                    let steps = self.client.push_line(&text);
                    self.apply(steps);
                }
                OutputLine::Stderr(text) => (self.emit)(vec![EventKind::Log {
                    stream: StreamName::Stderr,
                    text,
                }]),
            }
        }
    }

    /// Questions whose wait is up get `onTimeout`, unless a client's answer got there first (then it is on its
    /// way through the answers channel).
    fn expire_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let on_timeout = self.on_timeout.map_or(OnTimeout::Reject, |(_, o)| o);
        for request_id in due {
            self.deadlines.remove(&request_id);
            if self.approvals.resolve(&request_id) {
                let steps = self.client.expire(&request_id, on_timeout);
                self.apply(steps);
            }
        }
    }

    /// Marks every open question settled, so that a late answer gets 409.
    fn settle_all(&mut self) {
        for request_id in self.deadlines.drain().map(|(id, _)| id) {
            self.approvals.resolve(&request_id);
        }
    }
}

fn with_duration(outcome: Outcome, elapsed: std::time::Duration) -> Outcome {
    match outcome {
        Outcome::Completed(mut run) if run.duration_ms == 0 => {
            run.duration_ms = elapsed.as_millis() as u64;
            Outcome::Completed(run)
        }
        other => other,
    }
}

async fn recv(
    answers: &mut Option<mpsc::UnboundedReceiver<crate::approvals::Answer>>,
) -> Option<crate::approvals::Answer> {
    match answers {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
