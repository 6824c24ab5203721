//! The blocking clone: list the remote, fetch the one branch (shallow unless `depth` is 0), check it out, and report
//! progress on the way. Same-host redirects are followed, redirects to another host refused.

use std::{
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use git2::{
    AutotagOption, Direction, FetchOptions, ProxyOptions, RemoteCallbacks, RemoteRedirect, Repository,
    build::CheckoutBuilder,
};

use super::{
    GitError, RepoSpec,
    credentials::Auth,
    progress::{self, Throttle},
};
use crate::event::PullProgress;

/// The checked-out state that the change summary and the push start from.
#[derive(Clone, Debug)]
pub struct Cloned {
    /// None for an empty repository (nothing to check out).
    pub branch: Option<String>,
    pub head: Option<git2::Oid>,
}

struct Reporter<'a> {
    throttle: Mutex<Throttle>,
    emit: &'a (dyn Fn(PullProgress) + Sync),
    abort: &'a AtomicBool,
}

impl Reporter<'_> {
    fn offer(&self, sample: PullProgress) {
        let mut throttle = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(event) = throttle.offer(sample, Instant::now()) {
            (self.emit)(event);
        }
    }

    fn last(&self) -> PullProgress {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner()).last()
    }

    fn done(&self) {
        let done = self
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .done(Instant::now());
        (self.emit)(done);
    }

    fn check(&self) -> Result<(), GitError> {
        if self.abort.load(Ordering::SeqCst) {
            return Err(GitError::Aborted);
        }
        Ok(())
    }
}

/// The proxy settings of the environment (`HTTPS_PROXY`, `NO_PROXY`), as git itself would use them.
pub fn proxy<'a>() -> ProxyOptions<'a> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

pub fn clone(
    spec: &RepoSpec,
    dir: &Path,
    abort: &AtomicBool,
    emit: &(dyn Fn(PullProgress) + Sync),
) -> Result<Cloned, GitError> {
    let reporter = Reporter {
        throttle: Mutex::new(Throttle::default()),
        emit,
        abort,
    };
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(GitError::Clone(
            "the workspace folder is not empty; a repository is cloned into an empty one".into(),
        ));
    }
    reporter.offer(PullProgress::default());
    let internal = |e: git2::Error| GitError::Internal(format!("could not prepare the repository: {}", e.message()));
    let repo = Repository::init(dir).map_err(internal)?;
    // Also binds any git the agent runs in the workspace to the same policy.
    repo.config()
        .and_then(|mut c| c.set_str("http.followRedirects", "false"))
        .map_err(internal)?;

    let (branch, heads) = list_remote(&repo, spec)?;
    reporter.check()?;
    let Some(branch) = branch else {
        if heads.is_empty() {
            repo.remote("origin", &spec.url).map_err(internal)?;
            reporter.done();
            return Ok(Cloned {
                branch: None,
                head: None,
            });
        }
        return Err(GitError::Checkout(
            "the remote names no default branch; send github.branch".into(),
        ));
    };
    if !heads.iter().any(|h| *h == format!("refs/heads/{branch}")) {
        return Err(GitError::Checkout(format!(
            "branch {branch:?} does not exist on the remote"
        )));
    }

    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    let mut remote = repo
        .remote_with_fetch("origin", &spec.url, &refspec)
        .map_err(internal)?;
    let auth = Auth::new(spec.token.as_ref());
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_, _, allowed| auth.answer(allowed));
    callbacks.transfer_progress(|stats| {
        if abort.load(Ordering::SeqCst) {
            return false;
        }
        reporter.offer(progress::transfer(&stats));
        true
    });
    callbacks.sideband_progress(|_| !abort.load(Ordering::SeqCst));
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .proxy_options(proxy())
        .follow_redirects(RemoteRedirect::None)
        .download_tags(AutotagOption::Auto);
    if spec.depth > 0 {
        options.depth(spec.depth.min(i32::MAX as u32) as i32);
    }
    let fetched = remote.fetch(&[refspec.as_str()], Some(&mut options), None);
    reporter.check()?;
    fetched.map_err(|e| auth.classify(&e, |m| GitError::Clone(format!("could not fetch the repository: {m}"))))?;
    drop(options);

    let head = checkout(&repo, &branch, &reporter)?;
    reporter.done();
    Ok(Cloned {
        branch: Some(branch),
        head: Some(head),
    })
}

/// The remote's default branch (or the requested one) and its branch refs, from one connection.
fn list_remote(repo: &Repository, spec: &RepoSpec) -> Result<(Option<String>, Vec<String>), GitError> {
    let auth = Auth::new(spec.token.as_ref());
    let mut remote = repo
        .remote_anonymous(&spec.url)
        .map_err(|e| GitError::Clone(e.message().to_string()))?;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_, _, allowed| auth.answer(allowed));
    let connection = remote
        .connect_auth(Direction::Fetch, Some(callbacks), Some(proxy()))
        .map_err(|e| auth.classify(&e, |m| GitError::Clone(format!("could not reach the repository: {m}"))))?;
    let heads: Vec<String> = connection
        .list()
        .map_err(|e| GitError::Clone(e.message().to_string()))?
        .iter()
        .map(|h| h.name().to_string())
        .filter(|name| name.starts_with("refs/heads/"))
        .collect();
    let branch = match &spec.branch {
        Some(b) => Some(b.clone()),
        None => connection
            .default_branch()
            .ok()
            .and_then(|b| b.as_str().and_then(|s| s.strip_prefix("refs/heads/")).map(String::from)),
    };
    Ok((branch, heads))
}

fn checkout(repo: &Repository, branch: &str, reporter: &Reporter<'_>) -> Result<git2::Oid, GitError> {
    let fail = |e: git2::Error| GitError::Checkout(format!("could not check out {branch:?}: {}", e.message()));
    let commit = repo
        .find_reference(&format!("refs/remotes/origin/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .map_err(fail)?;
    let mut local = repo.branch(branch, &commit, true).map_err(fail)?;
    local.set_upstream(Some(&format!("origin/{branch}"))).map_err(fail)?;
    repo.set_head(&format!("refs/heads/{branch}")).map_err(fail)?;
    let base = reporter.last();
    let mut builder = CheckoutBuilder::new();
    builder.force().progress(|_, done, total| {
        if !reporter.abort.load(Ordering::SeqCst) {
            reporter.offer(progress::checkout(&base, done, total));
        }
    });
    repo.checkout_head(Some(&mut builder)).map_err(fail)?;
    reporter.check()?;
    Ok(commit.id())
}

/// Fetches the one commit `oid` into the clone in `dir` (shallow like the clone) when its branch no longer has it:
/// the base of a session's work tree after the branch moved on. The server must allow fetching a commit by id
/// (GitHub does; `git http-backend` with `uploadpack.allowReachableSHA1InWant`).
pub fn fetch_commit(dir: &Path, spec: &RepoSpec, oid: git2::Oid, abort: &AtomicBool) -> Result<(), GitError> {
    let missing = |m: &str| GitError::Checkout(format!("could not fetch the session's base commit {oid}: {m}"));
    let repo = Repository::open(dir).map_err(|e| missing(e.message()))?;
    if repo.find_commit(oid).is_ok() {
        return Ok(());
    }
    let mut remote = repo.remote_anonymous(&spec.url).map_err(|e| missing(e.message()))?;
    let auth = Auth::new(spec.token.as_ref());
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_, _, allowed| auth.answer(allowed));
    callbacks.transfer_progress(|_| !abort.load(Ordering::SeqCst));
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .proxy_options(proxy())
        .follow_redirects(RemoteRedirect::None)
        .download_tags(AutotagOption::None);
    if spec.depth > 0 {
        options.depth(spec.depth.min(i32::MAX as u32) as i32);
    }
    let fetched = remote.fetch(&[oid.to_string()], Some(&mut options), None);
    if abort.load(Ordering::SeqCst) {
        return Err(GitError::Aborted);
    }
    fetched.map_err(|e| match auth.classify(&e, GitError::Checkout) {
        GitError::Checkout(m) => missing(&m),
        other => other,
    })?;
    drop(options);
    repo.find_commit(oid).map(|_| ()).map_err(|e| missing(e.message()))
}
