//! Validation of the `github` part of a request: the repo URL policy, push and pull request rules (branch names are
//! `BranchName`s, checked when read).

use super::{ApiError, GithubSpec, Settings, required};
use crate::{secret::MIN_SECRET_LEN, url_policy::UrlPolicy};

pub(super) fn validate_github(mut github: GithubSpec, settings: &Settings) -> Result<GithubSpec, ApiError> {
    required("github.repoUrl", &github.repo_url)?;
    // Normalised here, once: what is checked is exactly what is cloned, sent and redacted.
    github.repo_url = github.repo_url.trim().to_string();
    github.access_token = github.access_token.map(|t| t.trim().to_string());
    let policy = UrlPolicy {
        allowed_hosts: &settings.git_allowed_hosts,
        allow_insecure: settings.git_allow_insecure,
    };
    policy
        .check(&github.repo_url)
        .map_err(|e| ApiError::RepoUrlNotAllowed {
            message: format!("github.repoUrl: {e}"),
            field: "github.repoUrl".into(),
        })?;
    if let Some(token) = &github.access_token
        && token.len() < MIN_SECRET_LEN
    {
        return Err(ApiError::invalid(
            "github.accessToken",
            "github.accessToken is too short to be a credential",
        ));
    }
    if github.depth.is_some_and(|d| d > i32::MAX as u32) {
        return Err(ApiError::invalid("github.depth", "github.depth is too large"));
    }
    if let Some(push) = &github.push {
        if github.access_token.is_none() {
            return Err(ApiError::invalid(
                "github.accessToken",
                "github.push needs github.accessToken to push with",
            ));
        }
        if let Some(message) = &push.commit_message {
            required("github.push.commitMessage", message)?;
        }
        if let Some(pr) = &push.pull_request {
            if crate::git::owner_and_repo(&github.repo_url).is_none() {
                return Err(ApiError::invalid(
                    "github.repoUrl",
                    "a pull request needs a repository URL of the form https://host/owner/repo",
                ));
            }
            if pr.base.as_ref().or(github.branch.as_ref()) == Some(&push.branch) {
                return Err(ApiError::invalid(
                    "github.push.branch",
                    "github.push.branch must differ from the pull request's base branch",
                ));
            }
        }
    }
    Ok(github)
}
