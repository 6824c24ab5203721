//! The git steps of a job's life: the clone before the provider runs, and after a successful run the change
//! summary, the push and the pull request. Each blocking step races the job's cancel and deadlines; the loser is
//! told to stop through the abort flag that libgit2's callbacks check.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::time::Instant;

use super::{Pipeline, seconds};
use crate::{
    event::{Changes, ErrorCode, EventKind, Failure, PullRequestRef},
    git::{self, GitError, RepoSpec, clone::Cloned, pull_request::NewPullRequest, push::CommitSpec},
    request::GithubSpec,
    secret::Secret,
};

impl Pipeline<'_> {
    pub(super) async fn clone_repo(&self, github: &GithubSpec, deadline: Instant) -> Result<Cloned, Failure> {
        let settings = &self.worker.settings;
        git::set_server_timeouts(settings.clone_timeout);
        let spec = self.repo_spec(github);
        let dir = self.workdir.clone();
        let log = self.job.log.clone();
        let limit = Failure::new(
            ErrorCode::CloneFailed,
            format!(
                "the clone did not finish within CLONE_TIMEOUT_SECONDS ({})",
                seconds(settings.clone_timeout)
            ),
        );
        let started = Instant::now();
        let cloned = self
            .blocking(
                deadline,
                Some((started + settings.clone_timeout, limit)),
                move |abort| {
                    git::clone::clone(&spec, &dir, abort, &|p| {
                        log.append(EventKind::GithubPullProgress(p));
                    })
                },
            )
            .await?;
        tracing::info!(job_id = %self.job.id, branch = ?cloned.branch, ms = started.elapsed().as_millis() as u64, "repository cloned");
        Ok(cloned)
    }

    pub(super) fn repo_spec(&self, github: &GithubSpec) -> RepoSpec {
        RepoSpec {
            url: github.repo_url.clone(),
            branch: github.branch.clone().map(String::from),
            depth: github.depth.unwrap_or(1),
            token: github.access_token.clone().map(Secret::new),
        }
    }

    /// After a successful run: `git_changes`, then the push and the pull request if the request asked for them.
    pub(super) async fn publish(
        &self,
        github: &GithubSpec,
        cloned: &Cloned,
        deadline: Instant,
    ) -> Result<(Option<Changes>, Option<PullRequestRef>), Failure> {
        let (dir, base) = (self.workdir.clone(), cloned.head);
        let changes = match self
            .blocking(deadline, None, move |_| git::changes::summarize(&dir, base))
            .await
        {
            Ok(changes) => {
                self.emit(EventKind::GitChanges(changes.clone()));
                Some(changes)
            }
            Err(failure) if failure.code == ErrorCode::Internal => {
                self.emit(EventKind::warn(failure.message));
                None
            }
            Err(failure) => return Err(failure),
        };
        let Some(push) = &github.push else {
            return Ok((changes, None));
        };
        let token = github.access_token.clone().map(Secret::new);
        let message = push
            .commit_message
            .clone()
            .unwrap_or_else(|| default_message(&self.request.prompt));
        let settings = self.worker.settings.clone();
        let (dir, branch, push_token) = (self.workdir.clone(), push.branch.clone(), token.clone());
        let pushed = self
            .blocking(deadline, None, move |abort| {
                let spec = CommitSpec {
                    base,
                    branch: &branch,
                    message: &message,
                    author_name: &settings.git_author_name,
                    author_email: &settings.git_author_email,
                };
                git::push::commit_and_push(&dir, &spec, push_token.as_ref(), abort)
            })
            .await?;
        let Some(pushed) = pushed else {
            self.emit(EventKind::info(
                "the run changed no files: nothing was committed or pushed and no pull request was opened",
            ));
            return Ok((changes, None));
        };
        self.emit(EventKind::GitPush {
            branch: pushed.branch.clone(),
            commit: pushed.commit.clone(),
            remote: github.repo_url.clone(),
        });

        let (Some(pr), Some(token)) = (&push.pull_request, token) else {
            return Ok((changes, None));
        };
        let first_line = push.commit_message.as_deref().map(first_line).filter(|l| !l.is_empty());
        let title = pr
            .title
            .clone()
            .or(first_line)
            .unwrap_or_else(|| default_message(&self.request.prompt));
        let base_branch = pr
            .base
            .clone()
            .map(String::from)
            .or_else(|| cloned.branch.clone())
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::PullRequestFailed,
                    "the repository was empty, so there is no base branch; send pullRequest.base",
                )
            })?;
        let owner_repo = git::owner_and_repo(&github.repo_url).ok_or_else(|| {
            Failure::new(
                ErrorCode::PullRequestFailed,
                "github.repoUrl does not name an owner and a repository",
            )
        })?;
        let request = NewPullRequest {
            title: &title,
            head: &pushed.branch,
            base: &base_branch,
            body: pr.body.as_deref(),
            draft: pr.draft.unwrap_or(false),
        };
        let api = &self.worker.settings.github_api_url;
        let created = tokio::select! {
            created = git::pull_request::create(api, (&owner_repo.0, &owner_repo.1), &request, &token) => {
                created.map_err(GitError::into_failure)?
            }
            _ = self.job.cancelled() => return Err(self.stopped_from_outside()),
            _ = tokio::time::sleep_until(deadline) => return Err(self.job_timed_out()),
        };
        self.emit(EventKind::PullRequest(created.clone()));
        Ok((changes, Some(created)))
    }

    /// Runs one blocking git step until it ends or the job is cancelled, times out, or the step's own limit passes.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        deadline: Instant,
        limit: Option<(Instant, Failure)>,
        step: impl FnOnce(&AtomicBool) -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, Failure> {
        let abort = Arc::new(AtomicBool::new(false));
        let flag = abort.clone();
        let mut task = tokio::task::spawn_blocking(move || step(&flag));
        let (limit_at, limit_failure) = match limit {
            Some((at, failure)) => (at, Some(failure)),
            None => (deadline, None),
        };
        let stop = tokio::select! {
            biased;
            joined = &mut task => return match joined {
                Ok(result) => result.map_err(GitError::into_failure),
                Err(e) => Err(Failure::new(ErrorCode::Internal, format!("a git step failed: {e}"))),
            },
            _ = self.job.cancelled() => self.stopped_from_outside(),
            _ = tokio::time::sleep_until(deadline) => self.job_timed_out(),
            _ = tokio::time::sleep_until(limit_at), if limit_failure.is_some() => limit_failure.unwrap_or_else(|| self.job_timed_out()),
        };
        abort.store(true, Ordering::SeqCst);
        // The callbacks see the flag with the next chunk of data; a server that sends nothing is cut off by the
        // libgit2 server timeout, which the job does not wait for beyond the kill grace.
        if tokio::time::timeout(self.worker.settings.kill_grace, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(job_id = %self.job.id, "a git step is still waiting for the server; not waiting for it");
        }
        Err(stop)
    }
}

/// The first line with text on it: prompts often start with a blank line.
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// The commit message when the request gives none: the first line of the prompt, cut to a readable length.
fn default_message(prompt: &str) -> String {
    let line = first_line(prompt);
    let mut cut: String = line.chars().take(72).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    if cut.is_empty() {
        "Changes by unified-worker".into()
    } else {
        cut
    }
}
