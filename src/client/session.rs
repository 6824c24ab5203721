//! The network side of `exec`: start the job on a free worker (waiting out 429s and restarting replicas on new
//! connections), read its stream, reattach with `Last-Event-ID` when the connection drops, never show an event
//! twice, and handle Ctrl-C.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::{
    outbound::{self, Backoff},
    sse_wire,
};

use super::{
    EXIT_COMPLETED, EXIT_INTERRUPTED, EXIT_JOB_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, ExecArgs,
    approvals::{Answerer, Answering, Approvals},
    chat::{Chat, Input, Woke},
    render::Renderer,
};

/// Retry-After is honoured up to this; a fleet that asks for longer is better probed again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// What a 429 without Retry-After is taken to mean (the worker's own default).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

enum StreamEnd {
    /// The terminal event arrived: the exit code.
    Finished(i32),
    /// The connection ended before the terminal event.
    Dropped,
    /// The replica answering is not running our job (a reconnect through a load balancer landed elsewhere).
    WrongJob,
}

pub struct Session {
    args: ExecArgs,
    renderer: Renderer,
    client: reqwest::Client,
    last_seq: Option<u64>,
    approvals: Option<Approvals>,
    /// With `--chat`: the person's messages, the close and the interrupts.
    chat: Option<Chat>,
}

impl Session {
    pub fn new(args: ExecArgs, renderer: Renderer) -> Self {
        // No pooled connections: a retry must open a new connection, or Swarm's mesh would send it to the same
        // busy replica again.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Session {
            args,
            renderer,
            client,
            last_seq: None,
            approvals: None,
            chat: None,
        }
    }

    /// Holds a conversation: input becomes messages, and Ctrl-C interrupts a turn instead of ending the client.
    pub fn chatting(mut self) -> std::io::Result<Self> {
        self.chat = Some(Chat::start()?);
        Ok(self)
    }

    /// Questions of the job are answered as `answering` says; this starts the task that does it.
    pub fn answering(mut self, answering: Answering) -> Self {
        let answerer = Answerer {
            client: self.client.clone(),
            url: self.args.target.url.clone(),
            job_id: self.args.job_id.clone(),
            api_token: self.args.api_token.clone(),
        };
        self.approvals = Some(Approvals::start(
            answering,
            answerer,
            self.renderer.color(),
            self.renderer.prompt_flag(),
        ));
        self
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.args.api_token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    pub async fn run(mut self, body: Value) -> i32 {
        let chatting = self.chat.is_some();
        let interrupt = async move {
            // A conversation takes Ctrl-C itself (see `Chat`).
            if chatting {
                std::future::pending::<()>().await;
            }
            let _ = tokio::signal::ctrl_c().await;
        };
        tokio::pin!(interrupt);
        let mut response = match self.start(&body).await {
            Ok(resp) => resp,
            Err(code) => return code,
        };
        loop {
            let end = tokio::select! {
                end = self.consume(response) => end,
                _ = &mut interrupt => return self.interrupted().await,
            };
            match end {
                StreamEnd::Finished(code) => {
                    if let Some(approvals) = self.approvals.take() {
                        approvals.finish().await;
                    }
                    return code;
                }
                StreamEnd::Dropped | StreamEnd::WrongJob => {}
            }
            response = tokio::select! {
                resp = self.reattach() => match resp {
                    Ok(resp) => resp,
                    Err(code) => return code,
                },
                _ = &mut interrupt => return self.interrupted().await,
            };
        }
    }

    async fn start(&self, body: &Value) -> Result<reqwest::Response, i32> {
        let deadline = Instant::now() + self.args.max_wait;
        let mut backoff = unreachable_backoff();
        loop {
            let req = self
                .authorized(self.client.post(format!("{}/execute", self.args.target.url)))
                .json(body);
            let wait = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if resp.status() == 429 => {
                    let after = outbound::retry_after(resp.headers()).unwrap_or(DEFAULT_RETRY_AFTER);
                    let state = resp
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|b| b["status"].as_str().map(String::from));
                    let wait = jitter(after.min(MAX_RETRY_AFTER));
                    self.renderer.notice(&format!(
                        "worker {}; retrying on a new connection in {:.1}s",
                        state.as_deref().unwrap_or("busy"),
                        wait.as_secs_f64()
                    ));
                    wait
                }
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status();
                    let body = resp.json::<Value>().await.unwrap_or_default();
                    let field = body["error"]["field"]
                        .as_str()
                        .map(|f| format!(" ({f})"))
                        .unwrap_or_default();
                    eprintln!(
                        "unified-worker exec: the worker refused the request: {status}: {}{field}",
                        body["error"]["message"].as_str().unwrap_or("no details")
                    );
                    return Err(EXIT_USAGE);
                }
                Ok(resp) => {
                    let wait = backoff.delay(None);
                    self.renderer.notice(&format!(
                        "worker answered {}; retrying in {:.1}s",
                        resp.status(),
                        wait.as_secs_f64()
                    ));
                    wait
                }
                Err(e) => {
                    let wait = backoff.delay(None);
                    self.renderer.notice(&format!(
                        "cannot reach {} ({}); retrying in {:.1}s",
                        self.args.target.url,
                        outbound::root_cause(&e),
                        wait.as_secs_f64()
                    ));
                    wait
                }
            };
            if Instant::now() + wait > deadline {
                eprintln!(
                    "unified-worker exec: no worker accepted the job within {}s",
                    self.args.max_wait.as_secs_f64()
                );
                return Err(EXIT_UNREACHABLE);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// After a dropped stream: `GET /jobs/{jobId}/events` from the last event seen, until the replica (or the
    /// gateway) that has the job answers.
    async fn reattach(&mut self) -> Result<reqwest::Response, i32> {
        let deadline = Instant::now() + self.args.max_wait;
        let mut backoff = unreachable_backoff();
        loop {
            let url = format!("{}/jobs/{}/events", self.args.target.url, self.args.job_id);
            let mut req = self.authorized(self.client.get(url));
            if let Some(seq) = self.last_seq {
                req = req.header("Last-Event-ID", seq.to_string());
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if resp.status() == 204 => {
                    eprintln!("unified-worker exec: the job has ended and its last event was already shown");
                    return Err(EXIT_JOB_ERROR);
                }
                Ok(resp) if resp.status() == 410 => {
                    eprintln!(
                        "unified-worker exec: the worker no longer holds the missed events; read them from persistence"
                    );
                    return Err(EXIT_JOB_ERROR);
                }
                Ok(resp) => self
                    .renderer
                    .notice(&format!("reattaching: worker answered {}", resp.status())),
                Err(e) => self.renderer.notice(&format!(
                    "reattaching: cannot reach {} ({})",
                    self.args.target.url,
                    outbound::root_cause(&e)
                )),
            }
            let wait = backoff.delay(None);
            if Instant::now() + wait > deadline {
                eprintln!(
                    "unified-worker exec: lost the job's stream and could not reattach within {}s",
                    self.args.max_wait.as_secs_f64()
                );
                return Err(EXIT_UNREACHABLE);
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn consume(&mut self, response: reqwest::Response) -> StreamEnd {
        let mut body = response.bytes_stream();
        let mut decoder = SseDecoder::default();
        let mut chat = self.chat.take();
        let end = loop {
            let chunk = match chat.as_mut() {
                Some(person) => tokio::select! {
                    chunk = body.next() => chunk,
                    woke = person.next() => match self.answer_person(person, woke).await {
                        Some(code) => break StreamEnd::Finished(code),
                        None => continue,
                    },
                },
                None => body.next().await,
            };
            let Some(Ok(chunk)) = chunk else {
                break StreamEnd::Dropped;
            };
            if let Some(end) = self.chunk(&mut decoder, &chunk, chat.as_mut()) {
                break end;
            }
        };
        self.chat = chat;
        end
    }

    fn chunk(&mut self, decoder: &mut SseDecoder, chunk: &[u8], mut chat: Option<&mut Chat>) -> Option<StreamEnd> {
        for data in decoder.feed(chunk) {
            let Ok(event) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            // A gateway's line: no seq, never part of the job's own events.
            if event["type"] == "queued" {
                self.renderer.queued(&event, &data);
                continue;
            }
            if event["jobId"].as_str() != Some(self.args.job_id.as_str()) {
                return Some(StreamEnd::WrongJob);
            }
            let seq = event["seq"].as_u64().unwrap_or(0);
            if self.last_seq.is_some_and(|last| seq <= last) {
                continue;
            }
            self.last_seq = Some(seq);
            self.renderer.event(&event, &data);
            if let Some(approvals) = &self.approvals {
                approvals.event(&event);
            }
            match event["type"].as_str() {
                Some("completed") => return Some(StreamEnd::Finished(EXIT_COMPLETED)),
                Some("error") => return Some(StreamEnd::Finished(EXIT_JOB_ERROR)),
                Some("turn_started") => {
                    if let Some(person) = chat.as_deref_mut() {
                        person.turn_running = true;
                    }
                }
                Some("turn_completed" | "turn_failed") => {
                    if let Some(person) = chat.as_deref_mut()
                        && person.turn_running
                    {
                        person.turn_running = false;
                        if !person.closed {
                            self.renderer.chat_prompt();
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Passes on what the person did; Some(exit code) when the client is to leave.
    async fn answer_person(&mut self, person: &mut Chat, woke: Woke) -> Option<i32> {
        match woke {
            Woke::Input(Input::Message(text)) => {
                let body = serde_json::json!({ "text": text });
                self.post_to_job("messages", Some(&body)).await;
            }
            Woke::Input(Input::End) => {
                person.closed = true;
                self.renderer.notice("closing the conversation");
                self.post_to_job("close", None).await;
            }
            Woke::CtrlC if person.turn_running => {
                self.renderer.notice("interrupting the turn");
                self.post_to_job("interrupt", None).await;
            }
            Woke::CtrlC => return Some(self.interrupted().await),
        }
        None
    }

    /// `POST /jobs/{jobId}/<action>`; a refusal is shown, never fatal: the stream says what happened.
    async fn post_to_job(&self, action: &str, body: Option<&Value>) {
        let url = format!("{}/jobs/{}/{action}", self.args.target.url, self.args.job_id);
        let mut req = self.authorized(self.client.post(url));
        if let Some(body) = body {
            req = req.json(body);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {}
            Ok(resp) => {
                let status = resp.status();
                let body = resp.json::<Value>().await.unwrap_or_default();
                self.renderer.notice(&format!(
                    "{action}: the worker answered {status}: {}",
                    body["error"]["message"].as_str().unwrap_or("no details")
                ));
            }
            Err(e) => self.renderer.notice(&format!(
                "{action}: cannot reach {} ({})",
                self.args.target.url,
                outbound::root_cause(&e)
            )),
        }
    }

    async fn interrupted(&mut self) -> i32 {
        if !self.args.cancel_on_exit {
            eprintln!(
                "\ninterrupted; job {} keeps running on the worker (reattach with GET {}/jobs/{}/events)",
                self.args.job_id, self.args.target.url, self.args.job_id
            );
            return EXIT_INTERRUPTED;
        }
        let url = format!("{}/jobs/{}/cancel", self.args.target.url, self.args.job_id);
        match self.authorized(self.client.post(url)).send().await {
            Ok(resp) if resp.status().is_success() => eprintln!("\ncancelled job {}", self.args.job_id),
            Ok(resp) => eprintln!(
                "\ncould not cancel job {}: the worker answered {}",
                self.args.job_id,
                resp.status()
            ),
            Err(e) => eprintln!(
                "\ncould not cancel job {}: {}",
                self.args.job_id,
                outbound::root_cause(&e)
            ),
        }
        EXIT_INTERRUPTED
    }
}

/// Up to ±20% so that many clients told the same Retry-After do not come back in one wave.
fn jitter(wait: Duration) -> Duration {
    wait.mul_f64(0.8 + outbound::unit_random() * 0.4)
}

/// Waits between attempts when the worker cannot be reached: a replica restarting takes about half a second.
fn unreachable_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(5))
}

/// SSE frames in, `data` payloads out; comments (keep-alives) are dropped.
#[derive(Default)]
pub struct SseDecoder {
    frames: sse_wire::FrameSplitter,
}

impl SseDecoder {
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let Some(joined) = self.frames.push(chunk) else {
            return Vec::new();
        };
        sse_wire::frames(&joined)
            .filter_map(|frame| sse_wire::fields(frame).data)
            .map(|data| String::from_utf8_lossy(&data).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_are_reassembled_and_comments_dropped() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"id: 0\nevent: x\nda").is_empty());
        assert_eq!(
            d.feed(b"ta: {\"a\":1}\n\n: keep-alive\n\nid: 1\ndata: 2\n\n"),
            vec!["{\"a\":1}", "2"]
        );
    }
}
