//! `POST /execute`: authenticate, read and validate the body, take the slot, start the job, stream it.

use std::sync::Arc;

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{CONTENT_LENGTH, CONTENT_TYPE},
    web,
};
use futures_util::StreamExt;

use crate::{
    auth,
    error::ApiError,
    event_log::EventLog,
    job, request,
    secret::Redactor,
    sse,
    worker::{JobHandle, Worker},
};

pub async fn execute(
    req: HttpRequest,
    payload: web::Payload,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    let settings = &worker.settings;
    auth::require_token(&req, settings)?;
    require_json(&req)?;
    let body = read_body(&req, payload, settings.max_body_bytes).await?;
    let request = request::parse(&body, settings)?;

    let redactor = Redactor::new(request.secrets().into_iter().chain(settings.worker_secrets()));
    let log = EventLog::new(&request.job_id, redactor, settings.event_log_max_bytes);
    let job = Arc::new(JobHandle::new(
        request.job_id.clone(),
        request.provider,
        log.clone(),
        request.cancel_on_disconnect,
    ));
    worker.take_slot(job.clone())?;
    tracing::info!(job_id = %job.id, provider = %job.provider, "job accepted");

    // The reader exists before the job starts, so this stream begins at event 0.
    let reader = log.reader(0)?;
    worker
        .runtime()
        .spawn(job::run(worker.get_ref().clone(), job.clone(), request));
    Ok(sse::response(
        reader,
        settings.keepalive,
        sse::DisconnectGuard::new(job),
    ))
}

fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let essence = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Reads at most `limit` bytes; a declared or actual larger body is refused without buffering it.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidJson {
            message: format!("could not read the body: {e}"),
            field: None,
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
