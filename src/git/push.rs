//! `github.push`: one commit of the whole working tree on a new branch from the checked-out commit, pushed to
//! `origin` with the token. The agent's own commits, staging or branch switches do not change what is pushed.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use git2::{IndexAddOption, PushOptions, RemoteCallbacks, RemoteRedirect, Repository, Signature};

use super::{GitError, clone::proxy, credentials::Auth};
use crate::secret::Secret;

pub struct CommitSpec<'a> {
    pub base: Option<git2::Oid>,
    pub branch: &'a str,
    pub message: &'a str,
    pub author_name: &'a str,
    pub author_email: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    pub branch: String,
    pub commit: String,
}

/// Commits and pushes; `Ok(None)` when the run changed nothing, in which case nothing is pushed.
/// `abort` stops the push at its next progress callback (cancel, SIGTERM, job timeout).
pub fn commit_and_push(
    dir: &Path,
    spec: &CommitSpec<'_>,
    token: Option<&Secret>,
    abort: &AtomicBool,
) -> Result<Option<Pushed>, GitError> {
    let fail = |e: git2::Error| GitError::Push(format!("could not commit the changes: {}", e.message()));
    let repo = Repository::open(dir).map_err(fail)?;
    let base = spec.base.map(|oid| repo.find_commit(oid)).transpose().map_err(fail)?;
    let mut index = repo.index().map_err(fail)?;
    match &base {
        Some(commit) => index.read_tree(&commit.tree().map_err(fail)?).map_err(fail)?,
        None => index.clear().map_err(fail)?,
    }
    index.add_all(["*"], IndexAddOption::DEFAULT, None).map_err(fail)?;
    index.update_all(["*"], None).map_err(fail)?;
    let tree_id = index.write_tree().map_err(fail)?;
    let unchanged = match &base {
        Some(commit) => commit.tree_id() == tree_id,
        None => index.is_empty(),
    };
    if unchanged {
        return Ok(None);
    }
    index.write().map_err(fail)?;
    let tree = repo.find_tree(tree_id).map_err(fail)?;
    let author = Signature::now(spec.author_name, spec.author_email).map_err(fail)?;
    let parents: Vec<&git2::Commit<'_>> = base.iter().collect();
    let commit = repo
        .commit(None, &author, &author, spec.message, &tree, &parents)
        .map_err(fail)?;
    let refname = format!("refs/heads/{}", spec.branch);
    repo.reference(&refname, commit, true, "unified-worker: commit for push")
        .map_err(fail)?;
    repo.set_head(&refname).map_err(fail)?;

    push(&repo, &refname, token, abort)?;
    Ok(Some(Pushed {
        branch: spec.branch.to_string(),
        commit: commit.to_string(),
    }))
}

fn push(repo: &Repository, refname: &str, token: Option<&Secret>, abort: &AtomicBool) -> Result<(), GitError> {
    let mut remote = repo
        .find_remote("origin")
        .map_err(|e| GitError::Push(format!("the workspace has no origin remote: {}", e.message())))?;
    let auth = Auth::new(token);
    let mut rejected: Option<String> = None;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_, _, allowed| {
        if abort.load(Ordering::SeqCst) {
            return Err(git2::Error::from_str("the push was stopped"));
        }
        auth.answer(allowed)
    });
    // libgit2 gives up the transfer when the server's progress callback returns false.
    callbacks.sideband_progress(|_| !abort.load(Ordering::SeqCst));
    callbacks.push_update_reference(|_, status| {
        if let Some(status) = status {
            rejected = Some(status.to_string());
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options
        .remote_callbacks(callbacks)
        .proxy_options(proxy())
        .follow_redirects(RemoteRedirect::None);
    if abort.load(Ordering::SeqCst) {
        return Err(GitError::Push("the push was stopped before it started".into()));
    }
    let pushed = remote.push(&[format!("{refname}:{refname}")], Some(&mut options));
    drop(options);
    pushed.map_err(|e| auth.classify(&e, |m| GitError::Push(format!("could not push: {m}"))))?;
    if let Some(status) = rejected {
        let status = super::scrub(&status, token);
        return Err(GitError::Push(format!("the server refused {refname}: {status}")));
    }
    Ok(())
}
