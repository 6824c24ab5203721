//! The pull request after a push: `POST {GITHUB_API_URL}/repos/{owner}/{repo}/pulls` (GitHub REST API).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GitError;
use crate::{event::PullRequestRef, secret::Secret};

#[derive(Debug, Serialize, PartialEq)]
pub struct NewPullRequest<'a> {
    pub title: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'a str>,
    pub draft: bool,
}

#[derive(Deserialize)]
struct Created {
    html_url: String,
    number: u64,
}

/// GitHub's error shape: `{"message":"Validation Failed","errors":[{"message":"A pull request already exists…"}]}`.
#[derive(Deserialize)]
struct GithubError {
    message: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

pub async fn create(
    api_url: &str,
    (owner, repo): (&str, &str),
    request: &NewPullRequest<'_>,
    token: &Secret,
) -> Result<PullRequestRef, GitError> {
    let url = format!("{api_url}/repos/{owner}/{repo}/pulls");
    // The common outbound client: no redirects, so the token never follows one to another host.
    let client = crate::outbound::client(Duration::from_secs(60))
        .map_err(|e| GitError::PullRequest(format!("could not build the HTTP client: {e}")))?;
    let response = client
        .post(&url)
        .bearer_auth(token.expose())
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .json(request)
        .send()
        .await
        .map_err(|e| GitError::PullRequest(format!("could not reach {url}: {}", e.without_url())))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(GitError::PullRequest(format!(
            "GitHub answered {status}: {}",
            github_message(&text)
        )));
    }
    let created: Created = serde_json::from_str(&text)
        .map_err(|e| GitError::PullRequest(format!("GitHub's answer was not a pull request: {e}")))?;
    Ok(PullRequestRef {
        url: created.html_url,
        number: created.number,
    })
}

fn github_message(body: &str) -> String {
    let Ok(error) = serde_json::from_str::<GithubError>(body) else {
        return body.chars().take(500).collect();
    };
    let details: Vec<String> = error
        .errors
        .iter()
        .filter_map(|e| match e {
            serde_json::Value::String(s) => Some(s.clone()),
            other => other["message"].as_str().map(String::from),
        })
        .collect();
    let head = error.message.unwrap_or_else(|| "no message".into());
    if details.is_empty() {
        head
    } else {
        format!("{head}: {}", details.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_validation_message_is_kept() {
        let body = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for acme:agent/x."}]}"#;
        assert_eq!(
            github_message(body),
            "Validation Failed: A pull request already exists for acme:agent/x."
        );
        assert_eq!(github_message("<html>"), "<html>");
    }
}
