//! The one place that maps request-time failures to HTTP statuses and JSON error bodies (docs/api.md), including
//! how a JSON document that does not fit its type is answered.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};

/// The worker's phase as clients see it (`/status`, the body of a 429). Defined here, at the bottom, because the
/// busy error carries it; the worker's state machine moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Busy,
    Draining,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Busy => "busy",
            Phase::Draining => "draining",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidJson { message: String, field: Option<String> },
    #[error("{message}")]
    InvalidRequest { message: String, field: String },
    #[error("{message}")]
    RepoUrlNotAllowed { message: String, field: String },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body did not arrive in full within `BODY_TIMEOUT_SECONDS` of the request's head.
    #[error("the request body did not arrive in time; send it at once, on a new connection")]
    BodyTimeout,
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("the worker is {}; retry on a new connection", phase.as_str())]
    Busy { phase: Phase, retry_after_seconds: u64 },
    #[error("events before {first_available} were evicted from memory; read them from persistence")]
    EventsEvicted { first_available: u64 },
    #[error("no job has run on this worker yet")]
    NoJob,
    #[error("no job is running")]
    NotRunning,
    #[error("this process has no job {job_id}")]
    JobNotFound { job_id: String },
    #[error("job has no permission request {request_id}")]
    PermissionNotFound { request_id: String },
    #[error("permission request {request_id} was already answered")]
    AlreadyAnswered { request_id: String },
    /// A message or close for a job that was not started with `conversation`.
    #[error("job {job_id} is not a conversation: it ends with its one turn")]
    NotAConversation { job_id: String },
    /// A message or close for a conversation that ended or is closing.
    #[error("job {job_id} has ended or is closing; start a new job with resumeSessionId to go on")]
    JobFinished { job_id: String },
    #[error("this path answers {allow} only")]
    MethodNotAllowed { allow: String },
    /// Job ids are unique fleet-wide: this one waits, runs, or ended within the gateways' memory.
    #[error("job {job_id} is already {state}; follow it with GET /jobs/{job_id}/events")]
    JobExists { job_id: String, state: &'static str },
    /// The gateways' store of fleet state cannot be reached: nothing new is taken until it is back.
    #[error("the fleet's store is unavailable; retry later")]
    StoreUnavailable { retry_after_seconds: u64 },
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            field: field.into(),
        }
    }

    /// A JSON document found at `base` (`""` for the body itself, else the field it sits in) that serde could not
    /// turn into its type. Structure problems (missing or unknown fields, values out of range, unknown variants)
    /// are 422 and type mismatches 400, as docs/api.md asks, each naming the field.
    pub fn from_json(err: serde_path_to_error::Error<serde_json::Error>, base: &str) -> Self {
        let inner = err.path().to_string();
        let path = match (base, inner.as_str()) {
            ("", inner) => inner.to_string(),
            (base, ".") => base.to_string(),
            (base, inner) => format!("{base}.{inner}"),
        };
        let message = err.inner().to_string();
        let join = |name: &str| {
            if path == "." {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        if let Some(name) = backticked(&message, "missing field `") {
            return ApiError::invalid(join(name), format!("{} is required", join(name)));
        }
        if let Some(name) = backticked(&message, "unknown field `") {
            let field = if path.ends_with(name) { path.clone() } else { join(name) };
            // serde's list of what is expected helps the client fix a typo.
            let expected = strip_position(&message).split_once(", expected ").map(|(_, e)| e);
            return ApiError::invalid(
                field.clone(),
                match expected {
                    Some(expected) => format!("unknown field {field}, expected {expected}"),
                    None => format!("unknown field {field}"),
                },
            );
        }
        let field = if path == "." { None } else { Some(path) };
        if message.starts_with("invalid value") || message.starts_with("unknown variant") {
            return ApiError::InvalidRequest {
                field: field.unwrap_or_default(),
                message: strip_position(&message).to_string(),
            };
        }
        let shown = field.clone().unwrap_or_else(|| "body".into());
        ApiError::InvalidJson {
            message: format!("{shown}: {}", strip_position(&message)),
            field,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson { .. } => "invalid_json",
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::RepoUrlNotAllowed { .. } => "repo_url_not_allowed",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Busy { .. } => "busy",
            ApiError::EventsEvicted { .. } => "events_evicted",
            ApiError::NoJob => "no_job",
            ApiError::NotRunning => "not_running",
            ApiError::JobNotFound { .. } => "job_not_found",
            ApiError::PermissionNotFound { .. } => "permission_not_found",
            ApiError::AlreadyAnswered { .. } => "already_answered",
            ApiError::NotAConversation { .. } => "not_a_conversation",
            ApiError::JobFinished { .. } => "job_finished",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::JobExists { .. } => "job_exists",
            ApiError::StoreUnavailable { .. } => "store_unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// Every code an HTTP answer of either server can carry: what the reference (docs/api.md) is checked against.
    /// `code` matches every variant, so a new one fails to compile there; `samples` must then grow with it, and a
    /// test holds it to one sample per variant.
    pub fn codes() -> Vec<&'static str> {
        Self::samples().iter().map(ApiError::code).collect()
    }

    fn samples() -> Vec<ApiError> {
        let id = String::new;
        vec![
            ApiError::InvalidJson {
                message: id(),
                field: None,
            },
            ApiError::invalid("", ""),
            ApiError::RepoUrlNotAllowed {
                message: id(),
                field: id(),
            },
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge { limit: 0 },
            ApiError::BodyTimeout,
            ApiError::Unauthorized,
            ApiError::Busy {
                phase: Phase::Busy,
                retry_after_seconds: 0,
            },
            ApiError::EventsEvicted { first_available: 0 },
            ApiError::NoJob,
            ApiError::NotRunning,
            ApiError::JobNotFound { job_id: id() },
            ApiError::PermissionNotFound { request_id: id() },
            ApiError::AlreadyAnswered { request_id: id() },
            ApiError::NotAConversation { job_id: id() },
            ApiError::JobFinished { job_id: id() },
            ApiError::MethodNotAllowed { allow: id() },
            ApiError::JobExists {
                job_id: id(),
                state: "",
            },
            ApiError::StoreUnavailable { retry_after_seconds: 0 },
            ApiError::Internal,
        ]
    }
}

/// A request body that must be a JSON object of type `T`: not JSON, or not an object, is 400 naming no field; a
/// document that does not fit `T` is answered as `from_json` says.
pub fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    object_of(&json_body(body)?)
}

/// The body as a JSON object, not yet typed: for a caller that checks more of the document than its type can.
pub fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson {
        message: format!("body is not valid JSON: {e}"),
        field: None,
    })?;
    if !value.is_object() {
        return Err(ApiError::InvalidJson {
            message: "body must be a JSON object".into(),
            field: None,
        });
    }
    Ok(value)
}

/// `json_body`'s document as `T`, answered as `from_json` says when it does not fit.
pub fn object_of<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| ApiError::from_json(e, ""))
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

impl From<crate::approvals::ApprovalError> for ApiError {
    fn from(e: crate::approvals::ApprovalError) -> Self {
        use crate::approvals::ApprovalError;
        match e {
            ApprovalError::Invalid { field, message } => ApiError::invalid(field, message),
            ApprovalError::NotFound { request_id } => ApiError::PermissionNotFound { request_id },
            ApprovalError::AlreadyAnswered { request_id } => ApiError::AlreadyAnswered { request_id },
        }
    }
}

impl From<crate::event_log::Evicted> for ApiError {
    fn from(e: crate::event_log::Evicted) -> Self {
        ApiError::EventsEvicted {
            first_available: e.first_available,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidRequest { .. } | ApiError::RepoUrlNotAllowed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::EventsEvicted { .. } => StatusCode::GONE,
            ApiError::NoJob => StatusCode::NOT_FOUND,
            ApiError::NotRunning => StatusCode::CONFLICT,
            ApiError::JobNotFound { .. } | ApiError::PermissionNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyAnswered { .. } | ApiError::NotAConversation { .. } | ApiError::JobFinished { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::JobExists { .. } => StatusCode::CONFLICT,
            ApiError::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let field = match self {
            ApiError::InvalidJson { field, .. } => field.clone(),
            ApiError::InvalidRequest { field, .. } | ApiError::RepoUrlNotAllowed { field, .. } => Some(field.clone()),
            _ => None,
        };
        let mut body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field,
                first_available: match self {
                    ApiError::EventsEvicted { first_available } => Some(*first_available),
                    _ => None,
                },
                job_id: match self {
                    ApiError::JobExists { job_id, .. }
                    | ApiError::NotAConversation { job_id }
                    | ApiError::JobFinished { job_id } => Some(job_id.clone()),
                    _ => None,
                },
                state: match self {
                    ApiError::JobExists { state, .. } => Some(state),
                    _ => None,
                },
            },
            status: None,
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Busy {
                phase,
                retry_after_seconds,
            } => {
                body.status = Some(phase.as_str());
                // Swarm's mesh balances per connection: closing it makes the client's retry land on another replica.
                response
                    .insert_header(("Retry-After", retry_after_seconds.to_string()))
                    .insert_header(("Connection", "close"));
                response.force_close();
            }
            ApiError::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header(("Allow", allow.as_str()));
            }
            ApiError::StoreUnavailable { retry_after_seconds } => {
                response.insert_header(("Retry-After", retry_after_seconds.to_string()));
            }
            // What is left of the body may still trickle in: the connection cannot carry another request.
            ApiError::BodyTimeout => {
                response.insert_header(("Connection", "close"));
                response.force_close();
            }
            _ => {}
        }
        response.json(body)
    }
}

/// Every error answer: `{"error":{"code","message","field"?,"firstAvailable"?},"status"?}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// With `busy` (429): the worker's phase, `busy` or `draining`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub status: Option<&'static str>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// `invalid_json`, `invalid_request`, `repo_url_not_allowed`, `unsupported_media_type`, `payload_too_large`,
    /// `body_timeout`, `unauthorized`, `busy`, `events_evicted`, `no_job`, `not_running`, `job_not_found`, `permission_not_found`,
    /// `already_answered`, `method_not_allowed`, `job_exists`, `store_unavailable`, `internal` (docs/api.md).
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, as a path (`github.repoUrl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `events_evicted`: the first event id still held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_available: Option<u64>,
    /// With `job_exists`: the job that has the id, and its state (`queued`, `running`, `finished`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub state: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_one_sample() {
        let samples = ApiError::samples();
        let mut codes = ApiError::codes();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(
            codes.len(),
            samples.len(),
            "one sample per variant, each with its own code"
        );
        // The count of variants, spelled out by a match that stops compiling when one is added.
        let variant = |e: &ApiError| match e {
            ApiError::InvalidJson { .. } => 0,
            ApiError::InvalidRequest { .. } => 1,
            ApiError::RepoUrlNotAllowed { .. } => 2,
            ApiError::UnsupportedMediaType => 3,
            ApiError::PayloadTooLarge { .. } => 4,
            ApiError::BodyTimeout => 5,
            ApiError::Unauthorized => 6,
            ApiError::Busy { .. } => 7,
            ApiError::EventsEvicted { .. } => 8,
            ApiError::NoJob => 9,
            ApiError::NotRunning => 10,
            ApiError::JobNotFound { .. } => 11,
            ApiError::PermissionNotFound { .. } => 12,
            ApiError::AlreadyAnswered { .. } => 13,
            ApiError::NotAConversation { .. } => 14,
            ApiError::JobFinished { .. } => 15,
            ApiError::MethodNotAllowed { .. } => 16,
            ApiError::JobExists { .. } => 17,
            ApiError::StoreUnavailable { .. } => 18,
            ApiError::Internal => 19,
        };
        let seen: Vec<usize> = samples.iter().map(variant).collect();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }
}
