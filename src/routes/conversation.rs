//! `POST /jobs/{jobId}/messages`, `/interrupt` and `/close`: the next turns of a conversation job, a stop of the
//! running one, and its end (docs/conversations.md).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::{
    auth,
    conversation::Conversation,
    error::ApiError,
    http::jobs::{Closing, Interrupting, MessageQueued, read_message},
    worker::{JobHandle, Worker},
};

#[utoipa::path(post, path = "/jobs/{jobId}/messages", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    request_body(content = crate::http::jobs::ConversationMessage, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued: it starts turn `turn` when the running turn ends, or at once with `interrupt`", body = MessageQueued),
        (status = 400, description = "The body is not JSON (`invalid_json`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job here (`job_not_found`)", body = crate::error::ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_SECONDS (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 409, description = "The job is no conversation (`not_a_conversation`), or it ended or is closing (`job_finished`)", body = crate::error::ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = crate::error::ErrorBody),
        (status = 415, description = "Not `application/json`", body = crate::error::ErrorBody),
        (status = 422, description = "`text` missing or empty, or an unknown field", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn message(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job_named(&path)?;
    // The conversation is checked before the body is read, so a wrong job costs no upload.
    conversation_of(&job)?;
    let message = read_message(&req, payload, worker.settings.max_body_bytes).await?;
    let conversation = conversation_of(&job)?;
    let sent = conversation
        .send(message.text, message.interrupt)
        .map_err(|_| finished(&job))?;
    tracing::info!(job_id = %job.id, turn = sent.turn, interrupt = message.interrupt, "message queued");
    Ok(HttpResponse::Accepted().json(MessageQueued {
        job_id: job.id.clone(),
        turn: sent.turn,
        withdrawn: sent.withdrawn,
    }))
}

#[utoipa::path(post, path = "/jobs/{jobId}/interrupt", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "The running turn (if any) is being stopped, the queued messages withdrawn; the conversation then waits for a message", body = Interrupting),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job here (`job_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "The job is no conversation (`not_a_conversation`), or it ended or is closing (`job_finished`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn interrupt(
    req: HttpRequest,
    path: web::Path<String>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job_named(&path)?;
    let withdrawn = conversation_of(&job)?.interrupt().map_err(|_| finished(&job))?;
    tracing::info!(job_id = %job.id, "turn interrupted");
    Ok(HttpResponse::Accepted().json(Interrupting {
        status: "interrupting",
        job_id: job.id.clone(),
        withdrawn,
    }))
}

#[utoipa::path(post, path = "/jobs/{jobId}/close", tag = "jobs",
    params(("jobId" = String, Path, description = "The job's id")),
    responses(
        (status = 202, description = "Closing: the running turn and the queued messages run, then push and pull request, then `completed`", body = Closing),
        (status = 401, description = "Missing or wrong bearer token", body = crate::error::ErrorBody),
        (status = 404, description = "No such job here (`job_not_found`)", body = crate::error::ErrorBody),
        (status = 409, description = "The job is no conversation (`not_a_conversation`) or has ended (`job_finished`)", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn close(
    req: HttpRequest,
    path: web::Path<String>,
    worker: web::Data<Arc<Worker>>,
) -> Result<HttpResponse, ApiError> {
    auth::require_token(&req, &worker.settings)?;
    let job = worker.job_named(&path)?;
    conversation_of(&job)?.close();
    tracing::info!(job_id = %job.id, "conversation closing");
    Ok(HttpResponse::Accepted().json(Closing {
        status: "closing",
        job_id: job.id.clone(),
    }))
}

/// The job's conversation while it can still take messages or a close.
fn conversation_of(job: &JobHandle) -> Result<&Conversation, ApiError> {
    let conversation = job
        .conversation
        .as_ref()
        .ok_or_else(|| ApiError::NotAConversation { job_id: job.id.clone() })?;
    if job.log.is_closed() {
        return Err(finished(job));
    }
    Ok(conversation)
}

fn finished(job: &JobHandle) -> ApiError {
    ApiError::JobFinished { job_id: job.id.clone() }
}
