//! The git token's only way out: libgit2's credentials callback, answered at most once per operation, and the
//! scrubbing of libgit2 error texts before they travel anywhere.

use std::sync::atomic::{AtomicU32, Ordering};

use git2::{Cred, CredentialType};

use super::GitError;
use crate::secret::{REDACTED, Secret};

/// GitHub takes any user name with a token as the password; this is the one its docs use for app tokens.
const TOKEN_USER: &str = "x-access-token";

pub struct Auth<'a> {
    token: Option<&'a Secret>,
    asked: AtomicU32,
}

impl<'a> Auth<'a> {
    pub fn new(token: Option<&'a Secret>) -> Self {
        Auth {
            token,
            asked: AtomicU32::new(0),
        }
    }

    /// libgit2 asks again whenever the server answers 401; answering again with the same token would loop until
    /// libgit2's replay limit, so the second question is an answer in itself: the token was refused.
    pub fn answer(&self, allowed: CredentialType) -> Result<Cred, git2::Error> {
        let round = self.asked.fetch_add(1, Ordering::SeqCst);
        match self.token {
            None => Err(git2::Error::from_str("the repository needs credentials")),
            Some(_) if round > 0 => Err(git2::Error::from_str("the git server refused the token")),
            Some(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(TOKEN_USER, token.expose())
            }
            Some(_) => Err(git2::Error::from_str(
                "the git server asked for an unsupported kind of credentials",
            )),
        }
    }

    /// Turns a libgit2 failure into a typed error whose text cannot hold the token.
    pub fn classify(&self, e: &git2::Error, otherwise: fn(String) -> GitError) -> GitError {
        let asked = self.asked.load(Ordering::SeqCst);
        let message = scrub(e.message(), self.token);
        let refused = asked > 1 || (asked == 1 && self.token.is_none()) || e.code() == git2::ErrorCode::Auth;
        if refused {
            return GitError::Auth(match self.token {
                None => "the git server asked for credentials; send github.accessToken".into(),
                Some(_) => format!("the git server refused github.accessToken ({message})"),
            });
        }
        otherwise(message)
    }
}

/// libgit2 messages can quote URLs and server answers; none of ours carries the token, but a server could echo it.
pub fn scrub(message: &str, token: Option<&Secret>) -> String {
    match token {
        Some(t) if !t.expose().is_empty() => message.replace(t.expose(), REDACTED),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_given_once_then_refused() {
        let token = Secret::new("ghp_canary_token_123");
        let auth = Auth::new(Some(&token));
        assert!(auth.answer(CredentialType::USER_PASS_PLAINTEXT).is_ok());
        let Err(again) = auth.answer(CredentialType::USER_PASS_PLAINTEXT) else {
            panic!("the second question must be refused")
        };
        let classified = auth.classify(&again, GitError::Clone);
        assert!(matches!(classified, GitError::Auth(_)), "{classified:?}");
    }

    #[test]
    fn no_token_means_auth_failed_and_messages_are_scrubbed() {
        let auth = Auth::new(None);
        let Err(e) = auth.answer(CredentialType::USER_PASS_PLAINTEXT) else {
            panic!("no token, no answer")
        };
        assert!(matches!(auth.classify(&e, GitError::Clone), GitError::Auth(_)));
        let token = Secret::new("ghp_canary_token_123");
        assert_eq!(scrub("bad ghp_canary_token_123!", Some(&token)), "bad [REDACTED]!");
    }
}
