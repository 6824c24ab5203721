//! The job's git workspace (docs/git.md), on libgit2 only: clone with progress, change summary, commit + push, and the
//! pull request. Everything here except the pull request is blocking and runs on a blocking thread; a common abort
//! flag, checked in libgit2's callbacks, is how a cancel or a timeout stops it.

pub mod changes;
pub mod clone;
mod credentials;
pub mod progress;
pub mod pull_request;
pub mod push;
pub mod snapshot;

use crate::{
    event::{ErrorCode, Failure},
    secret::Secret,
};

pub use credentials::scrub;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// Connecting, listing or downloading failed.
    #[error("{0}")]
    Clone(String),
    /// The requested branch does not exist, or its files could not be written.
    #[error("{0}")]
    Checkout(String),
    /// The server refused (or asked for) credentials.
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Push(String),
    #[error("{0}")]
    PullRequest(String),
    /// The abort flag was seen in a callback: the caller already knows why.
    #[error("stopped")]
    Aborted,
    #[error("{0}")]
    Internal(String),
}

impl GitError {
    pub fn code(&self) -> ErrorCode {
        match self {
            GitError::Clone(_) => ErrorCode::CloneFailed,
            GitError::Checkout(_) => ErrorCode::CheckoutFailed,
            GitError::Auth(_) => ErrorCode::AuthFailed,
            GitError::Push(_) => ErrorCode::PushFailed,
            GitError::PullRequest(_) => ErrorCode::PullRequestFailed,
            GitError::Aborted | GitError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn into_failure(self) -> Failure {
        let code = self.code();
        Failure::new(code, self.to_string())
    }
}

/// What a job asks of git, resolved from the request and the settings.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    pub url: String,
    pub branch: Option<String>,
    /// 0 = full history.
    pub depth: u32,
    pub token: Option<Secret>,
}

/// `owner` and `repo` of a GitHub-style URL path (`/owner/repo(.git)`), for the pull request API.
pub fn owner_and_repo(url: &str) -> Option<(String, String)> {
    let url = reqwest::Url::parse(url).ok()?;
    let path = url.path().trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut parts = path.split('/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || owner.is_empty() || repo.is_empty() {
        return None;
    }
    Some((owner.to_string(), repo.to_string()))
}

/// libgit2 keeps its settings process-wide. A server that stays silent longer than this fails the read, which is
/// what ends a stalled clone that no callback would ever see.
pub fn set_server_timeouts(limit: std::time::Duration) {
    let ms = limit.as_millis().clamp(1, 60_000) as i32;
    // SAFETY: plain integer options; libgit2 reads them when it opens the next connection.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_repo_come_from_the_path() {
        assert_eq!(
            owner_and_repo("https://github.com/acme/app.git"),
            Some(("acme".into(), "app".into()))
        );
        assert_eq!(
            owner_and_repo("https://github.com/acme/app/"),
            Some(("acme".into(), "app".into()))
        );
        assert_eq!(owner_and_repo("https://github.com/acme"), None);
        assert_eq!(owner_and_repo("https://github.com/a/b/c"), None);
    }
}
