//! Answers to a job's permission questions (docs/approvals.md): given automatically (`--approve-all`, `--reject-all`), typed
//! by a person at the terminal, or read as lines from stdin next to `--json`. The stream goes on being read and shown
//! while a question waits, so a question the worker settles itself (timeout, cancel) is dropped, not answered.

use std::{
    collections::{HashMap, VecDeque},
    io::{BufRead, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    args::AutoAnswer,
    question::{Choice, choices, printable},
};

/// An answer is one small POST; a worker that takes longer is treated as unreachable.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at an answer whose connection could not be made (a gateway or replica restarting).
const CONNECT_ATTEMPTS: u32 = 3;
/// How long the end of the job waits for the answering task to say what it has left to say; an answer still being
/// sent then no longer matters.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What an automatic answer picks: the one-time option first, so that a blanket answer becomes a lasting rule in the
/// agent only when that is all it offers.
pub fn auto_choice(auto: AutoAnswer, choices: &[Choice]) -> Option<&Choice> {
    let (once, always) = match auto {
        AutoAnswer::ApproveAll => ("allow_once", "allow_always"),
        AutoAnswer::RejectAll => ("reject_once", "reject_always"),
    };
    choices
        .iter()
        .find(|c| c.kind == once)
        .or_else(|| choices.iter().find(|c| c.kind == always))
}

/// Who answers the questions of this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    Auto(AutoAnswer),
    /// A person at the terminal (stdin and stdout are one).
    Terminal,
    /// One line per answer on stdin: an option id, or `{"requestId", "optionId"}`.
    Lines,
}

/// Where answers go: `POST {url}/jobs/{jobId}/permissions/{requestId}`, the same on a worker and on a gateway.
#[derive(Clone)]
pub struct Answerer {
    pub client: reqwest::Client,
    pub url: String,
    pub job_id: String,
    pub api_token: Option<String>,
}

#[derive(Debug)]
enum Outcome {
    Accepted,
    /// 409: a client, the timeout or a cancel got there first.
    AlreadyAnswered,
    /// 404: the worker does not know the job or the question (any more).
    Unknown,
    /// Any other answer from the worker, with its message.
    Refused(String),
    /// No answer from the worker.
    Failed(String),
}

impl Answerer {
    fn endpoint(&self, request_id: &str) -> Option<url::Url> {
        let mut url = url::Url::parse(&self.url).ok()?;
        // Segments are escaped here: the request id comes from the server and must stay one path segment.
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(["jobs", &self.job_id, "permissions", request_id]);
        Some(url)
    }

    async fn send(&self, request_id: &str, option_id: &str) -> Outcome {
        let Some(url) = self.endpoint(request_id) else {
            return Outcome::Failed(format!("{} is not a URL answers can be sent to", self.url));
        };
        let mut attempt = 1;
        loop {
            let mut req = self
                .client
                .post(url.clone())
                .timeout(ANSWER_TIMEOUT)
                .json(&json!({ "optionId": option_id }));
            if let Some(token) = &self.api_token {
                req = req.bearer_auth(token);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return Outcome::Accepted,
                Ok(resp) if resp.status() == 409 => return Outcome::AlreadyAnswered,
                Ok(resp) if resp.status() == 404 => return Outcome::Unknown,
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.json::<Value>().await.unwrap_or_default();
                    let message = body["error"]["message"].as_str().unwrap_or("no details");
                    return Outcome::Refused(format!("{status}: {message}"));
                }
                // A connection that was never made carried no answer, so trying again cannot answer twice.
                Err(e) if e.is_connect() && attempt < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Outcome::Failed(crate::outbound::root_cause(&e)),
            }
        }
    }
}

/// The session's handle: it passes on the question events; the answering runs in a task of its own so that the
/// stream is never held up by a person thinking.
pub struct Approvals {
    events: mpsc::UnboundedSender<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Approvals {
    /// `prompt_open` is read by the renderer too: it is set while a prompt waits on an unfinished line, so that the
    /// next event starts on a line of its own.
    pub fn start(answering: Answering, answerer: Answerer, color: bool, prompt_open: Arc<AtomicBool>) -> Approvals {
        let (events, rx) = mpsc::unbounded_channel();
        let lines = match answering {
            Answering::Auto(_) => None,
            Answering::Terminal | Answering::Lines => Some(stdin_lines()),
        };
        let agent = Agent {
            answering,
            answerer,
            color,
            prompt_open,
            stdin_open: lines.is_some(),
            pending: VecDeque::new(),
            held: VecDeque::new(),
            held_for: HashMap::new(),
        };
        let task = tokio::spawn(agent.run(rx, lines));
        Approvals { events, task }
    }

    /// At the end of the stream: lets the task handle the last events (a question settled just before the end is
    /// still reported) before the process exits.
    pub async fn finish(self) {
        drop(self.events);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.task).await;
    }

    pub fn event(&self, event: &Value) {
        if matches!(
            event["type"].as_str(),
            Some("permission_request" | "permission_resolved")
        ) {
            // The task ends only with the session, so a failed send has no one left to tell.
            let _ = self.events.send(event.clone());
        }
    }
}

/// Stdin's lines, read on a thread of its own: a blocking read must not hold a runtime thread, and unlike a
/// blocking task a thread does not keep the runtime from shutting down when the job ends during a read.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    // Should the thread not start, the sender is dropped and the agent sees stdin as closed.
    let _ = std::thread::Builder::new().name("exec-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

struct Question {
    id: String,
    title: String,
    choices: Vec<Choice>,
}

struct Agent {
    answering: Answering,
    answerer: Answerer,
    color: bool,
    prompt_open: Arc<AtomicBool>,
    stdin_open: bool,
    /// Questions without an answer, oldest first; on a terminal the first is the one being asked.
    pending: VecDeque<Question>,
    /// Lines mode: option ids read before any question waited, for the next questions in order.
    held: VecDeque<String>,
    /// Lines mode: answers read for a request id not seen yet.
    held_for: HashMap<String, String>,
}

impl Agent {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Value>,
        mut lines: Option<mpsc::UnboundedReceiver<String>>,
    ) {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(&event).await,
                    None => break,
                },
                line = next_line(&mut lines) => match line {
                    Some(line) => self.on_line(line.trim()).await,
                    None => {
                        lines = None;
                        self.on_stdin_closed();
                    }
                },
            }
        }
        if self.prompt_open.swap(false, Ordering::Relaxed) {
            println!();
        }
    }

    async fn on_event(&mut self, event: &Value) {
        let Some(id) = event["requestId"].as_str().filter(|id| !id.is_empty()) else {
            return;
        };
        if event["type"] == "permission_resolved" {
            self.on_resolved(id, event);
            return;
        }
        if self.pending.iter().any(|q| q.id == id) {
            return;
        }
        let question = Question {
            id: id.to_string(),
            title: event["title"].as_str().unwrap_or(id).to_string(),
            choices: choices(event),
        };
        if question.choices.is_empty() {
            self.say(&format!(
                "\"{}\" offers no options to answer with; it waits for the worker's timeout",
                question.title
            ));
            return;
        }
        match self.answering {
            Answering::Auto(auto) => self.answer_automatically(auto, question).await,
            Answering::Terminal => {
                self.pending.push_back(question);
                if self.pending.len() == 1 {
                    self.ask(false);
                }
            }
            Answering::Lines => {
                let held = self.held_for.remove(id).or_else(|| self.held.pop_front());
                self.pending.push_back(question);
                match held {
                    Some(option) => self.answer_pending(self.pending.len() - 1, &option).await,
                    None if !self.stdin_open => self.say(&format!(
                        "stdin is closed: \"{}\" waits for the worker's timeout",
                        self.pending.back().map_or("", |q| q.title.as_str())
                    )),
                    None => {}
                }
            }
        }
    }

    async fn answer_automatically(&mut self, auto: AutoAnswer, question: Question) {
        let flag = match auto {
            AutoAnswer::ApproveAll => "--approve-all",
            AutoAnswer::RejectAll => "--reject-all",
        };
        let Some(choice) = auto_choice(auto, &question.choices) else {
            self.say(&format!(
                "\"{}\" offers nothing {flag} could pick; it waits for the worker's timeout",
                question.title
            ));
            return;
        };
        self.say(&format!("answering \"{}\": {} ({flag})", question.title, choice.name));
        let outcome = self.answerer.send(&question.id, &choice.id).await;
        self.report(&question, outcome);
    }

    fn on_resolved(&mut self, id: &str, event: &Value) {
        self.held_for.remove(id);
        let Some(pos) = self.pending.iter().position(|q| q.id == id) else {
            return;
        };
        let question = self.pending.remove(pos);
        if self.answering == Answering::Terminal && pos == 0 {
            let by = event["by"].as_str().unwrap_or("the worker");
            self.say(&format!(
                "no longer asking: \"{}\" was decided by {by}",
                question.map_or_else(String::new, |q| q.title)
            ));
            if !self.pending.is_empty() {
                self.ask(true);
            }
        }
    }

    async fn on_line(&mut self, line: &str) {
        match self.answering {
            Answering::Auto(_) => {}
            Answering::Terminal => self.on_typed(line).await,
            Answering::Lines => self.on_answer_line(line).await,
        }
    }

    async fn on_typed(&mut self, line: &str) {
        // Enter ended the prompt's line on the terminal.
        self.prompt_open.store(false, Ordering::Relaxed);
        let Some(question) = self.pending.front() else {
            return;
        };
        if line.is_empty() {
            self.ask(false);
            return;
        }
        let picked = line
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| question.choices.get(i))
            .or_else(|| question.choices.iter().find(|c| c.id == line));
        let Some(choice) = picked else {
            self.say(&format!(
                "{line:?} is not one of the options: type a number from 1 to {} or an option id",
                question.choices.len()
            ));
            self.ask(false);
            return;
        };
        let outcome = self.answerer.send(&question.id, &choice.id).await;
        let settled = !matches!(outcome, Outcome::Refused(_) | Outcome::Failed(_));
        if settled && let Some(question) = self.pending.pop_front() {
            self.report(&question, outcome);
            if !self.pending.is_empty() {
                self.ask(true);
            }
        } else {
            if let Some(question) = self.pending.front() {
                self.report(question, outcome);
            }
            self.ask(false);
        }
    }

    async fn on_answer_line(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        let (request_id, option) = if line.starts_with('{') {
            let parsed = serde_json::from_str::<Value>(line).ok();
            let field = |name: &str| parsed.as_ref().and_then(|v| v[name].as_str()).map(String::from);
            match (field("requestId"), field("optionId")) {
                (Some(request), Some(option)) => (Some(request), option),
                _ => {
                    self.say(&format!(
                        "ignoring the line {line:?}: an answer is an option id or {{\"requestId\": …, \"optionId\": …}}"
                    ));
                    return;
                }
            }
        } else {
            (None, line.to_string())
        };
        let pos = match &request_id {
            Some(id) => self.pending.iter().position(|q| &q.id == id),
            None => (!self.pending.is_empty()).then_some(0),
        };
        match (pos, request_id) {
            (Some(pos), _) => self.answer_pending(pos, &option).await,
            (None, Some(id)) => {
                self.held_for.insert(id, option);
            }
            (None, None) => self.held.push_back(option),
        }
    }

    /// Lines mode: sends `option` for the pending question at `pos` if it is one of its options.
    async fn answer_pending(&mut self, pos: usize, option: &str) {
        let Some(question) = self.pending.get(pos) else {
            return;
        };
        if !question.choices.iter().any(|c| c.id == option) {
            let ids: Vec<&str> = question.choices.iter().map(|c| c.id.as_str()).collect();
            self.say(&format!(
                "{option:?} is not an option of \"{}\" ({}); still waiting for an answer",
                question.title,
                ids.join(", ")
            ));
            return;
        }
        let outcome = self.answerer.send(&question.id, option).await;
        if matches!(outcome, Outcome::Refused(_) | Outcome::Failed(_)) {
            self.report(question, outcome);
        } else if let Some(question) = self.pending.remove(pos) {
            self.report(&question, outcome);
        }
    }

    fn on_stdin_closed(&mut self) {
        self.stdin_open = false;
        self.prompt_open.store(false, Ordering::Relaxed);
        if !self.pending.is_empty() {
            self.say(&format!(
                "stdin is closed: {} question(s) wait for the worker's timeout",
                self.pending.len()
            ));
        }
    }

    /// Terminal: asks the first pending question. The renderer has shown it with its options; one that waited
    /// behind another (`again`) is shown anew, since much may have scrolled by.
    fn ask(&self, again: bool) {
        let Some(question) = self.pending.front() else {
            return;
        };
        if !self.stdin_open {
            self.say(&format!(
                "stdin is closed: \"{}\" waits for the worker's timeout",
                question.title
            ));
            return;
        }
        let mut out = std::io::stdout().lock();
        if again {
            let _ = writeln!(out, "? permission: {}", printable(&question.title));
            for (i, choice) in question.choices.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {}) {} [{}]",
                    i + 1,
                    printable(&choice.name),
                    printable(&choice.id)
                );
            }
        }
        let _ = write!(out, "answer 1-{} (number or option id): ", question.choices.len());
        let _ = out.flush();
        self.prompt_open.store(true, Ordering::Relaxed);
    }

    fn report(&self, question: &Question, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => {}
            Outcome::AlreadyAnswered => self.say(&format!(
                "\"{}\" was already answered elsewhere (409); going on",
                question.title
            )),
            Outcome::Unknown => self.say(&format!(
                "the worker no longer has the question \"{}\" (404); going on",
                question.title
            )),
            Outcome::Refused(message) => self.say(&format!(
                "the worker refused the answer to \"{}\": {message}",
                question.title
            )),
            Outcome::Failed(message) => self.say(&format!(
                "could not send the answer to \"{}\": {message}",
                question.title
            )),
        }
    }

    /// The client's own words go to stderr, like its other notices, so stdout stays the job's (JSON lines or text).
    fn say(&self, text: &str) {
        if self.prompt_open.swap(false, Ordering::Relaxed) {
            println!();
        }
        let text = format!("… {}", printable(text));
        if self.color {
            eprintln!("\x1b[2m{text}\x1b[0m");
        } else {
            eprintln!("{text}");
        }
    }
}

async fn next_line(lines: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(kinds: &[&str]) -> Vec<Choice> {
        choices(
            &json!({"options": kinds.iter().map(|k| json!({"optionId": format!("id-{k}"), "name": k, "kind": k}))
            .collect::<Vec<_>>()}),
        )
    }

    #[test]
    fn automatic_answers_prefer_the_one_time_option() {
        let all = options(&["allow_always", "allow_once", "reject_always", "reject_once"]);
        assert_eq!(auto_choice(AutoAnswer::ApproveAll, &all).unwrap().id, "id-allow_once");
        assert_eq!(auto_choice(AutoAnswer::RejectAll, &all).unwrap().id, "id-reject_once");
        let lasting = options(&["reject_always", "allow_always"]);
        assert_eq!(
            auto_choice(AutoAnswer::ApproveAll, &lasting).unwrap().id,
            "id-allow_always"
        );
        assert_eq!(
            auto_choice(AutoAnswer::RejectAll, &lasting).unwrap().id,
            "id-reject_always"
        );
        assert!(auto_choice(AutoAnswer::ApproveAll, &options(&["reject_once"])).is_none());
    }

    #[test]
    fn the_answer_goes_to_the_job_and_question_as_path_segments() {
        let answerer = Answerer {
            client: reqwest::Client::new(),
            url: "http://gw:8080/prefix".into(),
            job_id: "job-1".into(),
            api_token: None,
        };
        assert_eq!(
            answerer.endpoint("perm 1/../x").unwrap().as_str(),
            "http://gw:8080/prefix/jobs/job-1/permissions/perm%201%2F..%2Fx"
        );
    }
}
