//! Outbound HTTP common to persistence and the completion webhook: how the client is built and the one retry
//! policy both follow (docs/persistence.md); and how the `exec` client names a failed request.

use std::time::{Duration, SystemTime};

use reqwest::{
    StatusCode,
    header::{HeaderMap, RETRY_AFTER},
};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A server may ask for a longer pause than this, but a job's drain is bounded anyway; capping keeps a bogus
/// `Retry-After: 86400` from silently turning into "never".
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A client for persistence or webhook calls; `request_timeout` bounds one attempt, not the retries.
pub fn client(request_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(5)))
        // A redirect would carry a bearer token or a job result to a URL the policy never checked.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("unified-worker/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What to do after one attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again, after the server's `Retry-After` if it gave one.
    Retry(Option<Duration>),
    /// The server refused for good (a 4xx other than 408/429, or a redirect that is not followed).
    Refused(StatusCode),
}

pub fn classify(status: StatusCode, headers: &HeaderMap) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Verdict::Retry(retry_after(headers))
    } else {
        Verdict::Refused(status)
    }
}

/// Delta-seconds only: that is what rate limiters send; an HTTP date falls back to the backoff.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Whether a transport error is worth another attempt. Connection errors and timeouts are; a request that could
/// not even be built never will be.
pub fn transient(err: &reqwest::Error) -> bool {
    !err.is_builder()
}

/// Exponential backoff with jitter, so that many replicas retrying against a recovering server spread out.
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(FIRST_BACKOFF, MAX_BACKOFF)
    }
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The pause before the next attempt: the server's wish when it stated one, otherwise the backoff.
    pub fn delay(&mut self, server: Option<Duration>) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        if let Some(wanted) = server {
            return wanted;
        }
        base / 2 + base.mul_f64(unit_random() / 2.0)
    }
}

/// A number in [0, 1) good enough to spread retries of many clients apart; no cryptographic use.
pub fn unit_random() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// The innermost cause of a failed request ("connection refused", not reqwest's "error sending request").
pub fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn statuses_follow_the_retry_policy() {
        let none = HeaderMap::new();
        assert_eq!(classify(StatusCode::OK, &none), Verdict::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT, &none), Verdict::Delivered);
        for code in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify(status, &none), Verdict::Retry(None), "{code}");
        }
        for code in [301, 400, 401, 403, 404, 409, 413, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify(status, &none), Verdict::Refused(status), "{code}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers),
            Verdict::Retry(Some(Duration::from_secs(2)))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Verdict::Retry(Some(MAX_RETRY_AFTER))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(classify(StatusCode::TOO_MANY_REQUESTS, &headers), Verdict::Retry(None));
    }

    #[test]
    fn backoff_grows_to_a_cap_and_yields_to_the_server() {
        let mut backoff = Backoff::default();
        let first = backoff.delay(None);
        assert!(first >= FIRST_BACKOFF / 2 && first <= FIRST_BACKOFF, "{first:?}");
        let delays: Vec<Duration> = (0..10).map(|_| backoff.delay(None)).collect();
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF));
        assert!(delays.last().is_some_and(|d| *d >= MAX_BACKOFF / 2));
        assert_eq!(backoff.delay(Some(Duration::from_secs(3))), Duration::from_secs(3));
    }
}
