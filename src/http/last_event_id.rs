//! The last event id a reconnecting client has: the `Last-Event-ID` header or `?after=`.

use actix_web::HttpRequest;

use crate::error::ApiError;

/// The last id the client has: the `Last-Event-ID` header (what a browser's EventSource sends on reconnect) wins
/// over `?after=`.
pub fn after(req: &HttpRequest, query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let header = req.headers().get("Last-Event-ID").map(|v| v.to_str().unwrap_or("?"));
    // Both are checked, so a malformed `after` is refused even when the header makes it moot.
    let query = query.map(|q| parse_id("after", q)).transpose()?;
    let header = header.map(|h| parse_id("Last-Event-ID", h)).transpose()?;
    Ok(header.or(query))
}

/// Event ids are published as `int64`: anything outside 0..=i64::MAX is not one.
fn parse_id(field: &str, raw: &str) -> Result<u64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .and_then(|id| u64::try_from(id).ok())
        .ok_or_else(|| ApiError::invalid(field, format!("{field} must be an event id (a whole number)")))
}
