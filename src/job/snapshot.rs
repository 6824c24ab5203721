//! The work tree that travels with a session (docs/persistence.md): found in the store before the job takes the
//! slot, put back in place of a plain clone before the agent runs, and saved again when the run ends.

use std::sync::Arc;

use tokio::time::Instant;

use super::Pipeline;
use crate::{
    error::ApiError,
    event::{ErrorCode, EventKind, Failure},
    git::{
        self, GitError,
        clone::Cloned,
        snapshot::{self, Author, Saved},
    },
    process::Outcome,
    request::{self, JobRequest},
    session_store::{SessionStore, StoredWorkTree, WorkTreeManifest},
    settings::Settings,
};

/// What a `resumeSessionId` job carries over from the store.
#[derive(Debug, Default)]
pub enum Carried {
    #[default]
    Nothing,
    WorkTree(StoredWorkTree),
    /// The store has something for the session that cannot be read: the job ends saying so rather than let the
    /// agent work on a tree that lacks its earlier changes.
    Unreadable(String),
}

/// Looks the session's snapshot up before the job takes the slot, so that a request that contradicts it costs
/// nothing: `github.repoUrl` is taken from the snapshot when the request leaves it out, and a different one is
/// refused with 422.
pub async fn carried_work_tree(request: &mut JobRequest, settings: &Settings) -> Result<Carried, ApiError> {
    let (Some(dir), Some(id)) = (&settings.session_store_dir, &request.resume_session_id) else {
        return Ok(Carried::Nothing);
    };
    let (store, kind, id) = (SessionStore::new(dir), request.provider, id.to_string());
    let stored = match tokio::task::spawn_blocking(move || store.work_tree(kind, &id)).await {
        Ok(Ok(Some(stored))) => stored,
        Ok(Ok(None)) => return Ok(Carried::Nothing),
        Ok(Err(e)) => return Ok(Carried::Unreadable(e.to_string())),
        Err(e) => return Ok(Carried::Unreadable(e.to_string())),
    };
    let manifest = &stored.manifest;
    match (&manifest.repo_url, &request.github) {
        (None, None) => {}
        (Some(url), None) => {
            request.github = Some(request::github_from_snapshot(
                url,
                manifest.branch.as_deref(),
                settings,
            )?);
        }
        (Some(url), Some(github)) if same_repository(url, &github.repo_url) => {
            if github.branch.is_none() {
                let from_snapshot = request::github_from_snapshot(url, manifest.branch.as_deref(), settings)?;
                if let Some(github) = &mut request.github {
                    github.branch = from_snapshot.branch;
                }
            }
        }
        (Some(url), Some(_)) => {
            return Err(ApiError::invalid(
                "github.repoUrl",
                format!(
                    "github.repoUrl differs from the repository of the session's work tree ({url}); send the same \
                     one or leave it out"
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "github.repoUrl",
                "the session's work tree is a work folder without a repository; leave github out to resume it",
            ));
        }
    }
    Ok(Carried::WorkTree(stored))
}

/// The same repository written with or without a trailing `/` or `.git`.
fn same_repository(a: &str, b: &str) -> bool {
    let plain = |url: &str| {
        let url = url.trim().trim_end_matches('/');
        url.strip_suffix(".git").unwrap_or(url).to_string()
    };
    plain(a) == plain(b)
}

impl Pipeline<'_> {
    fn author(&self) -> (String, String) {
        let settings = &self.worker.settings;
        (settings.git_author_name.clone(), settings.git_author_email.clone())
    }

    /// The snapshot's files over the clone (or the empty work folder), as uncommitted changes on its base.
    pub(super) async fn restore_work_tree(
        &self,
        stored: StoredWorkTree,
        cloned: Option<&Cloned>,
        deadline: Instant,
    ) -> Result<Option<git2::Oid>, Failure> {
        let manifest = stored.manifest.clone();
        let oid = |text: &str| {
            git2::Oid::from_str(text).map_err(|_| {
                Failure::new(
                    ErrorCode::Internal,
                    format!("the session's work tree names no commit: {text:?}"),
                )
            })
        };
        let snapshot = oid(&manifest.snapshot)?;
        let base = manifest.base.as_deref().map(oid).transpose()?;
        if let (Some(base), Some(cloned), Some(github)) = (base, cloned, &self.request.github)
            && cloned.head != Some(base)
        {
            self.fetch_base(github, base, deadline).await?;
        }
        let dir = self.workdir.clone();
        let (name, email) = self.author();
        let is_clone = cloned.is_some();
        let restored = self
            .blocking(deadline, None, move |_| match is_clone {
                true => snapshot::restore_clone(&dir, &stored.pack, base, snapshot),
                false => snapshot::restore_folder(
                    &dir,
                    &stored.pack,
                    snapshot,
                    &Author {
                        name: &name,
                        email: &email,
                    },
                ),
            })
            .await?;
        self.emit(EventKind::info(format!(
            "workspace restored: {} files, {} bytes",
            restored.files, restored.bytes
        )));
        Ok(base)
    }

    /// The base commit when the branch has moved on since the snapshot: fetched by its id.
    async fn fetch_base(
        &self,
        github: &request::GithubSpec,
        base: git2::Oid,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let spec = self.repo_spec(github);
        let dir = self.workdir.clone();
        self.blocking(deadline, None, move |abort| {
            git::clone::fetch_commit(&dir, &spec, base, abort)
        })
        .await
    }

    /// Saves the work tree beside the session's files, whatever the run's outcome; a failure or a work tree above
    /// `SESSION_SNAPSHOT_MAX_BYTES` is a warning, never the job's end.
    pub(super) async fn save_work_tree(&self, outcome: &Outcome, cloned: Option<&Cloned>) {
        let id = match outcome {
            Outcome::Completed(run) => run.session_id.clone(),
            Outcome::Failed(failure) => failure.session_id.clone(),
        };
        let (Some(store), Some(id)) = (self.session_store(), id) else {
            return;
        };
        let settings = Arc::clone(&self.worker.settings);
        let (kind, dir) = (self.request.provider, self.workdir.clone());
        let github = self.request.github.clone();
        let cloned = cloned.cloned();
        let saved = tokio::task::spawn_blocking(move || {
            let saved = (|| -> Result<Saved, String> {
                let staging = store.stage_work_tree(kind, &id).map_err(|e| e.to_string())?;
                let author = Author {
                    name: &settings.git_author_name,
                    email: &settings.git_author_email,
                };
                let max = settings.session_snapshot_max_bytes;
                let saved = match &cloned {
                    Some(cloned) => snapshot::save_clone(&dir, cloned.head, &author, max, &staging.pack()),
                    None => snapshot::save_folder(&dir, &author, max, &staging.pack()),
                }
                .map_err(|e: GitError| e.to_string())?;
                match &saved {
                    Saved::Written(written) => {
                        let manifest = WorkTreeManifest {
                            repo_url: github.as_ref().map(|g| g.repo_url.clone()),
                            base: written.base.map(|b| b.to_string()),
                            snapshot: written.commit.to_string(),
                            branch: cloned.and_then(|c| c.branch),
                            created_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                            bytes: written.bytes,
                            files: written.files,
                        };
                        store
                            .put_work_tree(kind, &id, staging, &manifest)
                            .map_err(|e| e.to_string())?;
                    }
                    Saved::TooLarge { .. } => store.drop_work_tree(kind, &id).map_err(|e| e.to_string())?,
                }
                Ok(saved)
            })();
            // Whatever went wrong, an older work tree must not come back with this newer conversation.
            if saved.is_err() {
                let _ = store.drop_work_tree(kind, &id);
            }
            saved
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|saved| saved);
        match saved {
            Ok(Saved::Written(written)) => {
                tracing::info!(job_id = %self.job.id, files = written.files, bytes = written.bytes, "work tree saved");
            }
            Ok(Saved::TooLarge { bytes }) => self.emit(EventKind::warn(format!(
                "the work tree was not saved with the session: its changes come to more than \
                 SESSION_SNAPSHOT_MAX_BYTES ({} bytes; at least {bytes} counted); a resume starts from a fresh \
                 workspace",
                self.worker.settings.session_snapshot_max_bytes
            ))),
            Err(e) => {
                tracing::warn!(error = %e, "could not save the work tree to the session store");
                self.emit(EventKind::warn(format!(
                    "the work tree could not be saved with the session: {e}"
                )));
            }
        }
    }
}
