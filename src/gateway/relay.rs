//! The bytes between a worker and a client: the dispatch of a request to one worker, its SSE stream passed on
//! frame by frame (never a half frame, so the gateway can always add one of its own), and the few events the
//! gateway writes itself (`queued`, and the terminal `error` when the worker was lost or never reached).

use std::time::{Duration, SystemTime};

use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use serde::Serialize;

use super::fleet::LinePosition;

use crate::{event::timestamp, secret::Secret, sse_wire};

/// A terminal event as it went to the client: its SSE frame and its id.
#[derive(Clone, Debug)]
pub struct Terminal {
    pub id: u64,
    pub frame: Bytes,
    pub json: Bytes,
}

impl Terminal {
    /// The frame as a terminal event, when it is one (`completed` or `error`): the one test every reader of a
    /// relayed or stored stream applies.
    pub fn of_frame(id: u64, frame: Bytes) -> Option<Terminal> {
        let fields = sse_wire::fields(&frame);
        Self::of_fields(id, &frame, &fields)
    }

    /// `of_frame` for a frame whose fields are read already (the relay's hot path reads them once).
    fn of_fields(id: u64, frame: &Bytes, fields: &sse_wire::Fields<'_>) -> Option<Terminal> {
        if !matches!(fields.event, Some(b"completed" | b"error")) {
            return None;
        }
        let json = fields
            .data
            .as_ref()
            .map(|d| Bytes::copy_from_slice(d))
            .unwrap_or_default();
        Some(Terminal {
            id,
            frame: frame.clone(),
            json,
        })
    }

    /// `completed`, or the terminal error's code.
    pub fn code(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.json).ok()?;
        match value["type"].as_str()? {
            "completed" => Some("completed".into()),
            _ => value["code"].as_str().map(String::from),
        }
    }

    /// The event as the store keeps it.
    pub fn stored(&self) -> super::store::StoredEvent {
        super::store::StoredEvent {
            id: self.id,
            frame: self.frame.clone(),
        }
    }

    /// `record` as it ends with this event: the one way every path that ends a job records it.
    pub fn finish(&self, record: &mut super::store::JobRecord) {
        record.state = super::store::JobPhase::Finished;
        record.ended_at = Some(super::store::now_ms());
        record.terminal_id = Some(self.id);
        record.terminal_code = self.code();
    }
}

/// After the gateway learned that a worker is gone, its stream still gets this long to deliver what is already
/// on the way (the terminal event of a worker that exited normally is often still in the socket).
const LOST_GRACE: Duration = Duration::from_secs(2);

/// The gateway's HTTP client towards the workers, built once.
pub struct Upstream {
    pub client: reqwest::Client,
    token: Option<Secret>,
}

impl Upstream {
    pub fn new(token: Option<Secret>) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            // Workers are reached directly on the stack's network: a proxy from the environment would be wrong.
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()?;
        Ok(Upstream { client, token })
    }

    pub fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    /// A request about a running job, sent to its worker with the gateway's credentials; the worker's answer is the
    /// client's. A worker that cannot be reached no longer has the job.
    pub async fn forward(
        &self,
        req: reqwest::RequestBuilder,
        job_id: String,
    ) -> Result<HttpResponse, crate::error::ApiError> {
        match self.authorized(req).send().await {
            Ok(resp) => Ok(rejection(resp).await.into_response()),
            Err(_) => Err(crate::error::ApiError::JobNotFound { job_id }),
        }
    }
}

/// A worker's answer that is not a stream, passed on as it came (status, `Retry-After`, JSON body).
#[derive(Debug)]
pub struct Rejection {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

impl Rejection {
    pub fn into_response(self) -> actix_web::HttpResponse {
        use actix_web::http::StatusCode;
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut resp = actix_web::HttpResponse::build(status);
        if let Some(after) = self.retry_after {
            resp.insert_header(("Retry-After", after));
        }
        resp.content_type("application/json").body(self.body)
    }

    /// The worker's error code and message, for a client whose stream already started.
    pub fn code_and_message(&self) -> (String, String) {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("internal").to_string();
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the worker answered {}", self.status), str::to_string);
        (code, message)
    }
}

pub enum Dispatch {
    Stream(reqwest::Response),
    /// 429: busy after all (a race with another gateway, or a stale view).
    Busy,
    Unreachable(String),
    Refused(Rejection),
}

pub async fn dispatch(up: &Upstream, address: &str, body: Bytes) -> Dispatch {
    let req = up
        .authorized(up.client.post(format!("{address}/execute")))
        .header("Content-Type", "application/json")
        .header(crate::http::CONFIRMS_TERMINAL, "1")
        .body(body);
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Dispatch::Stream(resp),
        Ok(resp) if resp.status() == 429 => Dispatch::Busy,
        Ok(resp) => Dispatch::Refused(rejection(resp).await),
        Err(e) => Dispatch::Unreachable(e.to_string()),
    }
}

/// Tells the worker that the job's terminal event is kept, once the journal has written it to the store: a one-job
/// worker waits for this before it exits (`http::CONFIRMS_TERMINAL`), so that a gateway killed mid-stream, whose
/// connection swallowed the last events, leaves a worker that another gateway can still read them from.
pub fn confirm_terminal(
    up: &Upstream,
    runtime: &tokio::runtime::Handle,
    address: &str,
    job_id: &str,
    terminal: u64,
    journal: &super::journal::Journal,
) {
    let written = journal.written();
    let req = up
        .authorized(up.client.get(format!("{address}/jobs/{job_id}/events")))
        .header("Last-Event-ID", terminal.to_string());
    runtime.spawn(async move {
        if written.await.is_ok()
            && let Err(e) = req.send().await
        {
            tracing::debug!(error = %e, "could not confirm the terminal event to the worker");
        }
    });
}

pub async fn rejection(resp: reqwest::Response) -> Rejection {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.bytes().await.unwrap_or_default();
    Rejection {
        status,
        retry_after,
        body,
    }
}

pub struct RelayEnd {
    pub terminal: Option<Terminal>,
    pub last_id: Option<u64>,
    pub client_gone: bool,
}

/// Passes the worker's stream to `out` until it ends. When the client goes away, the stream is read on to its end
/// (so the gateway still learns the terminal event) unless `stop_with_client`, which drops it, so the worker sees
/// its client leave (`cancelOnDisconnect`).
pub async fn relay(
    resp: reqwest::Response,
    out: &mpsc::Sender<Bytes>,
    gone: CancellationToken,
    stop_with_client: bool,
    mut last_id: Option<u64>,
    journal: Option<&super::journal::Journal>,
) -> RelayEnd {
    let mut body = resp.bytes_stream();
    let mut splitter = sse_wire::FrameSplitter::default();
    let mut terminal = None;
    let mut client_gone = out.is_closed();
    loop {
        let next = if gone.is_cancelled() {
            match tokio::time::timeout(LOST_GRACE, body.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                next = body.next() => next,
                _ = gone.cancelled() => continue,
                // The server drops a response body when a write to its vanished client fails (the worker's
                // keep-alives make sure one comes); from then on a `cancelOnDisconnect` job stops at once.
                _ = out.closed(), if !client_gone => {
                    client_gone = true;
                    if stop_with_client {
                        break;
                    }
                    continue;
                }
            }
        };
        let Some(Ok(chunk)) = next else { break };
        let Some(frames) = splitter.push(&chunk) else { continue };
        for frame in sse_wire::frames(&frames) {
            let fields = sse_wire::fields(frame);
            let Some(id) = fields.id_number() else { continue };
            last_id = Some(id);
            if let Some(journal) = journal {
                journal.event(super::store::StoredEvent {
                    id,
                    frame: frames.slice_ref(frame),
                });
            }
            if let Some(end) = Terminal::of_fields(id, &frames.slice_ref(frame), &fields) {
                terminal = Some(end);
            }
        }
        if !client_gone && out.send(frames).await.is_err() {
            client_gone = true;
        }
        if client_gone && stop_with_client && terminal.is_none() {
            break;
        }
    }
    RelayEnd {
        terminal,
        last_id,
        client_gone,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GatewayError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    job_id: &'a str,
    ts: String,
    code: &'a str,
    message: &'a str,
    retryable: bool,
}

/// A terminal `error` written by the gateway: `worker_lost`, `queue_timeout`, `cancelled` or `shutdown` while
/// waiting, or a worker's refusal of a request that had already waited.
pub fn terminal_error(job_id: &str, id: u64, code: &str, message: &str, retryable: bool) -> Terminal {
    let event = GatewayError {
        kind: "error",
        seq: id,
        job_id,
        ts: timestamp(SystemTime::now()),
        code,
        message,
        retryable,
    };
    let json = serde_json::to_string(&event).unwrap_or_default();
    let (frame, data) = sse_wire::encode(Some(id), "error", &json);
    let frame = frame.freeze();
    Terminal {
        id,
        json: frame.slice(data),
        frame,
    }
}

/// The terminal `error` of a job whose worker's stream ended before its terminal event: the one place it is
/// written, whether the relay that dispatched the job or a reader that followed it saw the break. `last_id` is the
/// last event id the stream carried, so the `worker_lost` event takes the next one.
pub fn worker_lost(job_id: &str, last_id: Option<u64>) -> Terminal {
    terminal_error(
        job_id,
        last_id.map_or(0, |last| last + 1),
        crate::event::ErrorCode::WorkerLost.as_str(),
        "the worker's stream ended before the job's terminal event (the worker was lost)",
        true,
    )
}

/// A `queued` event: no `id:` line, so it never moves a client's `Last-Event-ID`.
pub fn queued(job_id: &str, place: LinePosition) -> Bytes {
    let event = crate::event::Queued {
        kind: "queued",
        job_id,
        ts: timestamp(SystemTime::now()),
        position: place.position,
        queue_length: place.length,
        workers: place.workers,
        busy: place.busy,
    };
    let json = serde_json::to_string(&event).unwrap_or_default();
    sse_wire::encode(None, "queued", &json).0.freeze()
}

pub fn sse_headers(mut resp: HttpResponseBuilder) -> HttpResponseBuilder {
    resp.content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"));
    resp
}

pub fn sse_response(body: mpsc::Receiver<Bytes>) -> HttpResponse {
    let stream = futures_util::stream::unfold(body, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
    });
    sse_headers(HttpResponse::Ok()).streaming(stream)
}

pub const KEEP_ALIVE: Bytes = Bytes::from_static(b": keep-alive\n\n");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_events_follow_the_schema() {
        let t = worker_lost("j1", Some(6));
        assert!(
            t.frame
                .starts_with(b"id: 7\nevent: error\ndata: {\"type\":\"error\",\"seq\":7,\"jobId\":\"j1\"")
        );
        let v: serde_json::Value = serde_json::from_slice(&t.json).unwrap();
        assert_eq!(
            (v["code"].as_str(), v["retryable"].as_bool()),
            (Some("worker_lost"), Some(true))
        );
        let place = LinePosition {
            position: 2,
            length: 5,
            workers: 3,
            busy: 3,
        };
        let q = queued("j1", place);
        assert!(q.starts_with(b"event: queued\ndata: {\"type\":\"queued\",\"jobId\":\"j1\""));
        assert!(
            std::str::from_utf8(&q)
                .unwrap()
                .contains("\"position\":2,\"queueLength\":5,\"workers\":3,\"busy\":3")
        );
    }
}
