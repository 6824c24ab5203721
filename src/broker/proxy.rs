//! The broker's HTTP side: serves the job's loopback port, checks each call's placeholder, swaps in the real
//! credential where the placeholder was, forwards to the upstream, and streams the answer back chunk by chunk
//! through the meter. Refusals (wrong key, spent budget, unreachable upstream) answer in the API's own error shape
//! so that the CLI reports them as it would the vendor's.

use std::{convert::Infallible, sync::Arc, time::Instant};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Frame, Incoming},
    header::{self, HeaderMap, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ApiStyle, CallMeter, Shared};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Where a CLI puts its key: Anthropic's header, a bearer token (OpenAI, OAuth tokens), Google's header.
const KEY_HEADERS: [&str; 2] = ["x-api-key", "x-goog-api-key"];

/// Headers of one connection, not of the call: never forwarded. `accept-encoding` goes too, so that the upstream
/// answers uncompressed and the meter can read the usage (the broker sits on loopback, compression buys nothing
/// there). `content-length` of an answer is dropped so that the answer is sent chunked and ends only after the
/// meter has counted it: the CLI's next call then sees the figures.
const NOT_FORWARDED: [HeaderName; 8] = [
    header::HOST,
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::ACCEPT_ENCODING,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// A model call carries the whole conversation, files the agent wrote included; far more than any holds.
const MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        // Biased: once stopped, nothing more is accepted or answered, whatever else is ready.
        let stream = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "the model-API broker could not accept a connection");
                    continue;
                }
            },
        };
        // Streamed chunks are small and latency-bound.
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

/// Where the CLI presented the key.
enum Presented {
    Header(&'static str),
    Bearer,
    Query,
}

/// Every place the CLI put this job's placeholder; empty when it has none (another job's, the real key, none).
fn presented(shared: &Shared, request: &Request<Incoming>) -> Vec<Presented> {
    let headers = request.headers();
    let is_placeholder = |value: &str| constant_time_eq(value.as_bytes(), shared.placeholder.as_bytes());
    let mut places: Vec<Presented> = KEY_HEADERS
        .into_iter()
        .filter(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(is_placeholder)
        })
        .map(Presented::Header)
        .collect();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(is_placeholder) {
        places.push(Presented::Bearer);
    }
    let query = request.uri().query().unwrap_or("");
    if url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "key" && is_placeholder(&v)) {
        places.push(Presented::Query);
    }
    places
}

/// Never tells by its timing how much of the placeholder a guess got right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let style = ApiStyle::of_path(&path);
    let presented = presented(&shared, &request);
    if presented.is_empty() {
        return Ok(refusal(
            style,
            StatusCode::UNAUTHORIZED,
            "the model-API broker accepts only the key of its own job",
        ));
    }
    if style.is_some()
        && let Err(exceeded) = shared.begin_call()
    {
        tracing::info!(
            limit = exceeded.limit,
            "the broker refused a model call: the job's budget is spent"
        );
        return Ok(refusal(style, StatusCode::BAD_REQUEST, &exceeded.message()));
    }
    Ok(match forward(&shared, request, presented, style, &path).await {
        Ok(response) => response,
        Err(message) => {
            shared.metrics.call(shared.provider, "failed");
            tracing::warn!(error = %message, "the model-API broker could not reach the upstream");
            refusal(style, StatusCode::BAD_GATEWAY, &message)
        }
    })
}

async fn forward(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    presented: Vec<Presented>,
    style: Option<ApiStyle>,
    path: &str,
) -> Result<Response<Body>, String> {
    let Some(target) = shared.target.get() else {
        return Err("the broker has no upstream yet".into());
    };
    let (parts, body) = request.into_parts();
    let credential = target.credential.expose();
    let query = parts.uri.query().map(|q| {
        if presented.iter().any(|p| matches!(p, Presented::Query)) {
            swap_key_in_query(q, credential)
        } else {
            q.to_string()
        }
    });
    let url = match &query {
        Some(q) => format!("{}{path}?{q}", target.upstream),
        None => format!("{}{path}", target.upstream),
    };
    let mut headers = parts.headers;
    for name in NOT_FORWARDED {
        headers.remove(name);
    }
    // The real credential goes wherever the placeholder was, and only there: the CLI chose the scheme.
    for place in &presented {
        let (name, value) = match place {
            Presented::Header(name) => (HeaderName::from_static(name), credential.to_string()),
            Presented::Bearer => (header::AUTHORIZATION, format!("Bearer {credential}")),
            Presented::Query => continue,
        };
        let mut value =
            HeaderValue::from_str(&value).map_err(|_| "the worker's credential is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    // Bounded: whoever holds the placeholder (the agent too) must not be able to fill the worker's memory.
    let body = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| format!("the CLI's request could not be read: {e}"))?
        .to_bytes();

    let started = Instant::now();
    let answer = shared
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await
        // Without the URL: a Gemini key may sit in its query.
        .map_err(|e| format!("the upstream could not be reached: {}", e.without_url()))?;
    shared
        .metrics
        .upstream_latency(shared.provider, started.elapsed().as_secs_f64());
    if style.is_some() {
        shared.metrics.call(shared.provider, "forwarded");
    }

    let mut response = Response::builder().status(answer.status());
    let events = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if let Some(out) = response.headers_mut() {
        copy_answer_headers(answer.headers(), out);
    }
    let chunks = answer.bytes_stream().map(|chunk| chunk.map_err(std::io::Error::other));
    let body: Body = match style {
        None => BodyExt::boxed_unsync(StreamBody::new(chunks.map(|c| c.map(Frame::data)))),
        Some(style) => {
            let mut meter = Some(CallMeter::new(style, events, style.model_in_path(path)));
            let shared = shared.clone();
            // The end of the stream is a last item of its own, so the call is counted before the CLI can read
            // the end of the answer (and send its next call).
            let metered = chunks
                .map(Some)
                .chain(stream::once(async { None }))
                .filter_map(move |item| {
                    let out = match item {
                        Some(chunk) => {
                            if let (Ok(bytes), Some(meter)) = (&chunk, meter.as_mut()) {
                                meter.push(bytes);
                            }
                            Some(chunk.map(Frame::data))
                        }
                        None => {
                            if let Some(meter) = meter.take() {
                                shared.end_call(meter);
                            }
                            None
                        }
                    };
                    std::future::ready(out)
                });
            BodyExt::boxed_unsync(StreamBody::new(metered))
        }
    };
    response.body(body).map_err(|e| e.to_string())
}

fn copy_answer_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !NOT_FORWARDED.contains(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn swap_key_in_query(query: &str, credential: &str) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "key" {
            out.append_pair(&k, credential);
        } else {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// An error the CLI reports as it would the vendor's, in the shape of the API it called.
fn refusal(style: Option<ApiStyle>, status: StatusCode, message: &str) -> Response<Body> {
    let message = format!("unified-worker broker: {message}");
    let body = match style {
        Some(ApiStyle::Anthropic) => {
            let kind = match status {
                StatusCode::UNAUTHORIZED => "authentication_error",
                StatusCode::BAD_REQUEST => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Some(ApiStyle::Gemini) => {
            let kind = match status {
                StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
                StatusCode::BAD_REQUEST => "FAILED_PRECONDITION",
                _ => "UNAVAILABLE",
            };
            json!({"error": {"code": status.as_u16(), "message": message, "status": kind}})
        }
        _ => {
            let code = match status {
                StatusCode::UNAUTHORIZED => "invalid_api_key",
                StatusCode::BAD_REQUEST => "budget_exceeded",
                _ => "upstream_unreachable",
            };
            json!({"error": {"message": message, "type": "invalid_request_error", "code": code}})
        }
    };
    let mut response = Response::new(BodyExt::boxed_unsync(
        Full::new(Bytes::from(body.to_string())).map_err(|never: Infallible| match never {}),
    ));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
