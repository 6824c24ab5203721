//! The request body rules of both the worker's and the gateway's `POST /execute`: JSON only, never more than
//! `MAX_BODY_BYTES` buffered, and all of it within `BODY_TIMEOUT_SECONDS` (the deadline is `http::deadline`'s).

use actix_web::{
    HttpRequest,
    http::header::{CONTENT_LENGTH, CONTENT_TYPE},
    web,
};
use futures_util::StreamExt;

use crate::error::ApiError;

pub fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
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
pub async fn read(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
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
        let chunk = chunk.map_err(|e| {
            if super::deadline::is_deadline(&e) {
                ApiError::BodyTimeout
            } else {
                ApiError::InvalidJson {
                    message: format!("could not read the body: {e}"),
                    field: None,
                }
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
