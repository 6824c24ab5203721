//! The worker or gateway behind the ACP bridge, over its HTTP API (docs/api.md): starting a conversation job
//! (waiting out busy replicas), its messages, interrupt, close and permission answers, and the job's event stream
//! followed across dropped connections with `Last-Event-ID`, each event handed on once.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    outbound::{self, Backoff},
    sse_wire,
};

/// Retry-After is honoured up to this; a fleet that asks for longer is better probed again sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// What a 429 without Retry-After is taken to mean (the worker's own default).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with an error of its API: what it said, with the field it names.
    #[error("{status}: {message}{}", field.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    Refused {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("no worker accepted the job within {0:?}")]
    NoWorker(Duration),
}

impl RemoteError {
    pub fn code(&self) -> Option<&str> {
        match self {
            RemoteError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What the follower of a job's stream hands on.
#[derive(Debug)]
pub enum Feed {
    Event(Value),
    /// The stream could not be taken up again: the job's end is unknown.
    Lost(String),
}

#[derive(Clone)]
pub struct Remote {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    max_wait: Duration,
}

impl Remote {
    pub fn new(url: &str, token: Option<String>, max_wait: Duration) -> Self {
        // No pooled connections: a retry must open a new connection, or Swarm's mesh would send it to the same
        // busy replica again (the same reason as `exec`'s).
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Remote {
            client,
            url: url.trim_end_matches('/').to_string(),
            token,
            max_wait,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> RemoteError {
        RemoteError::Unreachable {
            url: self.url.clone(),
            cause: outbound::root_cause(e),
        }
    }

    /// `POST /execute`, waiting out 429s (a busy worker) and unreachable replicas up to `max_wait`; the answer's
    /// body is the job's stream.
    pub async fn start(&self, body: &Value) -> Result<reqwest::Response, RemoteError> {
        let deadline = Instant::now() + self.max_wait;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            let wait = match self.request(reqwest::Method::POST, "/execute").json(body).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if resp.status() == 429 => {
                    let after = outbound::retry_after(resp.headers()).unwrap_or(DEFAULT_RETRY_AFTER);
                    after.min(MAX_RETRY_AFTER).mul_f64(0.8 + outbound::unit_random() * 0.4)
                }
                Ok(resp) if resp.status().is_client_error() => return Err(refused(resp).await),
                Ok(_) => backoff.delay(None),
                Err(e) if Instant::now() + backoff.delay(None) > deadline => return Err(self.unreachable(&e)),
                Err(_) => backoff.delay(None),
            };
            if Instant::now() + wait > deadline {
                return Err(RemoteError::NoWorker(self.max_wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A `POST` of the job API (`/jobs/{id}/messages`, `/interrupt`, `/close`, `/permissions/{rid}`): its JSON
    /// answer, or what the server refused.
    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, RemoteError> {
        let mut req = self.request(reqwest::Method::POST, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            return Ok(resp.json().await.unwrap_or(Value::Null));
        }
        Err(refused(resp).await)
    }

    /// `GET /jobs/{jobId}/events` after `last`: `None` when the server has nothing after it (204).
    async fn events(&self, job_id: &str, last: Option<u64>) -> Result<Option<reqwest::Response>, RemoteError> {
        let mut req = self.request(reqwest::Method::GET, &format!("/jobs/{job_id}/events"));
        if let Some(seq) = last {
            req = req.header("Last-Event-ID", seq.to_string());
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        match resp.status().as_u16() {
            204 => Ok(None),
            200..=299 => Ok(Some(resp)),
            _ => Err(refused(resp).await),
        }
    }

    /// Follows job `job_id`'s stream from `first` (the answer of `start`, or none to read it from the beginning)
    /// to its terminal event, handing each event on once, in order. A dropped connection is taken up again after
    /// the last event handed on; only when that fails for `max_wait` does the follower give up with `Lost`.
    pub fn follow(&self, job_id: String, first: Option<reqwest::Response>) -> mpsc::UnboundedReceiver<Feed> {
        let (tx, rx) = mpsc::unbounded_channel();
        let remote = self.clone();
        tokio::spawn(async move { remote.follow_into(&job_id, first, &tx).await });
        rx
    }

    async fn follow_into(
        &self,
        job_id: &str,
        mut response: Option<reqwest::Response>,
        tx: &mpsc::UnboundedSender<Feed>,
    ) {
        let mut last: Option<u64> = None;
        let mut lost_since: Option<Instant> = None;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let resp = match response.take() {
                Some(resp) => resp,
                None => match self.events(job_id, last).await {
                    Ok(Some(resp)) => resp,
                    // Nothing after the last event: the follower already handed on the terminal one, or the job
                    // ended with it unseen (a store that lost it), which the reader learns as `Lost`.
                    Ok(None) => {
                        let _ = tx.send(Feed::Lost(format!("job {job_id} ended with no terminal event seen")));
                        return;
                    }
                    Err(e @ RemoteError::Refused { status: 404 | 410, .. }) => {
                        let _ = tx.send(Feed::Lost(format!("job {job_id}: {e}")));
                        return;
                    }
                    Err(e) => {
                        let since = *lost_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > self.max_wait {
                            let _ = tx.send(Feed::Lost(format!("lost job {job_id}'s stream: {e}")));
                            return;
                        }
                        tokio::time::sleep(backoff.delay(None)).await;
                        continue;
                    }
                },
            };
            lost_since = None;
            match read_stream(resp, job_id, &mut last, tx).await {
                Read::Terminal | Read::NoReader => return,
                Read::Dropped => {}
            }
        }
    }

    /// Every event of a job from its beginning to its terminal one (for a replay): `None` when the server does
    /// not know the job (or no longer holds its events).
    pub async fn all_events(&self, job_id: &str) -> Result<Option<Vec<Value>>, RemoteError> {
        let first = match self.events(job_id, None).await {
            Ok(Some(resp)) => resp,
            Ok(None) | Err(RemoteError::Refused { status: 404 | 410, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut rx = self.follow(job_id.to_string(), Some(first));
        let mut events = Vec::new();
        while let Some(feed) = rx.recv().await {
            match feed {
                Feed::Event(event) => events.push(event),
                Feed::Lost(_) => break,
            }
        }
        Ok(Some(events))
    }
}

enum Read {
    Terminal,
    Dropped,
    /// Whoever read the events is gone (the session ended).
    NoReader,
}

async fn read_stream(
    resp: reqwest::Response,
    job_id: &str,
    last: &mut Option<u64>,
    tx: &mpsc::UnboundedSender<Feed>,
) -> Read {
    let mut body = resp.bytes_stream();
    let mut frames = sse_wire::FrameSplitter::default();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Read::Dropped;
        };
        let Some(joined) = frames.push(&chunk) else {
            continue;
        };
        for frame in sse_wire::frames(&joined) {
            let Some(data) = sse_wire::fields(frame).data else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<Value>(&data) else {
                continue;
            };
            // The gateway's line (`queued`) is no event of the job: it has no seq.
            if event["jobId"].as_str() != Some(job_id) || event["type"] == "queued" {
                continue;
            }
            let Some(seq) = event["seq"].as_u64() else {
                continue;
            };
            if last.is_some_and(|l| seq <= l) {
                continue;
            }
            *last = Some(seq);
            let terminal = matches!(event["type"].as_str(), Some("completed" | "error"));
            if tx.send(Feed::Event(event)).is_err() {
                return Read::NoReader;
            }
            if terminal {
                return Read::Terminal;
            }
        }
    }
    Read::Dropped
}

async fn refused(resp: reqwest::Response) -> RemoteError {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(json!({}));
    let error = &body["error"];
    RemoteError::Refused {
        status,
        code: error["code"].as_str().unwrap_or_default().to_string(),
        message: error["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("the server answered {status}")),
        field: error["field"].as_str().map(String::from),
    }
}
