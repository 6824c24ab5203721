//! `POST /execute`: authenticate, read and validate the body, take the slot, start the job, stream it.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::{
    auth,
    conversation::Conversation,
    error::ApiError,
    event_log::EventLog,
    http::body,
    job, request,
    secret::Redactor,
    sse,
    worker::{JobHandle, Worker},
};

#[utoipa::path(post, path = "/execute", tag = "worker",
    request_body(content = crate::request::RawRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The job's event stream: every event of docs/events.md, ids from 0, exactly one terminal event, last",
            content_type = "text/event-stream", body = crate::sse_wire::schema::SseEvent),
        (status = 400, description = "Not JSON, or a wrong JSON type (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_SECONDS (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = crate::error::ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid (`invalid_request`, `repo_url_not_allowed`); `field` names it", body = crate::error::ErrorBody),
        (status = 429, description = "A job runs or the worker drains; retry after Retry-After on a new connection", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security((), ("bearer" = [])))]
pub async fn execute(
    req: HttpRequest,
    payload: web::Payload,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    let settings = &worker.settings;
    auth::require_token(&req, settings)?;
    body::require_json(&req)?;
    let body = body::read(&req, payload, settings.max_body_bytes).await?;
    let mut request = request::parse(&body, settings)?;
    // Before the slot: a resume that contradicts the session's stored work tree is refused without taking it.
    let carried = job::carried_work_tree(&mut request, settings).await?;

    let redactor = Redactor::new(request.secrets().into_iter().chain(settings.worker_secrets()));
    let log = EventLog::new(&request.job_id, redactor, settings.event_log_max_bytes);
    let job = Arc::new(JobHandle::new(
        request.job_id.to_string(),
        request.provider,
        log.clone(),
        request.cancel_on_disconnect,
        request.conversation.map(Conversation::new),
    ));
    worker.take_slot(job.clone())?;
    tracing::info!(job_id = %job.id, provider = %job.provider, "job accepted");

    // The reader exists before the job starts, so this stream begins at event 0.
    let reader = log.reader(0)?;
    worker
        .runtime()
        .spawn(job::run(worker.get_ref().clone(), job.clone(), request, carried));
    Ok(sse::response(
        reader,
        settings.keepalive,
        sse::DisconnectGuard::new(job),
        crate::http::confirms_terminal(&req),
    ))
}
