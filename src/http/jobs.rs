//! The bodies of the job-addressed requests that the worker and the gateway both answer: a permission answer
//! (`POST /jobs/{jobId}/permissions/{requestId}`), read the same way by the worker that settles it and by the
//! gateway that checks it before forwarding it, and the acknowledgement of a cancel.

use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The answer: one of the `optionId`s of the `permission_request` event.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PermissionAnswer {
    #[schema(min_length = 1)]
    pub option_id: String,
}

/// The answer as taken.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionAnswered {
    pub request_id: String,
    pub option_id: String,
}

/// An answer is a few bytes; anything larger is not one.
const MAX_ANSWER_BYTES: usize = 4096;

/// The body, checked the way `/execute`'s is; the gateway reads it the same way before forwarding it.
pub async fn read_answer(req: &HttpRequest, payload: web::Payload) -> Result<PermissionAnswer, ApiError> {
    super::body::require_json(req)?;
    let body = super::body::read(req, payload, MAX_ANSWER_BYTES).await?;
    let answer: PermissionAnswer = crate::error::json_object(&body)?;
    crate::request::required("optionId", &answer.option_id)?;
    Ok(answer)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cancelling {
    /// `cancelling`
    #[schema(value_type = String)]
    pub status: &'static str,
    pub job_id: String,
}

/// A conversation's next message (`POST /jobs/{jobId}/messages`, docs/conversations.md).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConversationMessage {
    /// What the agent is told next; must not be empty.
    #[schema(min_length = 1)]
    pub text: String,
    /// Stop the running turn (and withdraw the messages still waiting) so this one starts at once.
    #[serde(default)]
    pub interrupt: bool,
}

/// The message as queued: the turn it starts.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueued {
    pub job_id: String,
    pub turn: u64,
    /// Turns an interrupt withdrew before they started; each gets `turn_failed` with code `interrupted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<u64>,
}

/// Read the way `/execute`'s body is, bounded like it; the gateway reads it the same way before forwarding it.
pub async fn read_message(
    req: &HttpRequest,
    payload: web::Payload,
    max_bytes: usize,
) -> Result<ConversationMessage, ApiError> {
    super::body::require_json(req)?;
    let body = super::body::read(req, payload, max_bytes).await?;
    let message: ConversationMessage = crate::error::json_object(&body)?;
    crate::request::required("text", &message.text)?;
    Ok(message)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Closing {
    /// `closing`
    #[schema(value_type = String)]
    pub status: &'static str,
    pub job_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interrupting {
    /// `interrupting`
    #[schema(value_type = String)]
    pub status: &'static str,
    pub job_id: String,
    /// Turns withdrawn before they started; each gets `turn_failed` with code `interrupted`.
    pub withdrawn: Vec<u64>,
}
