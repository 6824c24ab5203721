//! Provider session files on a volume every replica mounts (`SESSION_STORE_DIR`), so a `resumeSessionId` run can continue on a
//! replica other than the one that ran the session: saved at the end of a job, restored before a resumed run.

use std::{
    io,
    path::{Path, PathBuf},
};

use crate::provider::{ProviderKind, SessionFiles};

mod work_tree;

pub use work_tree::{Staging, StoredWorkTree, WorkTreeManifest};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session id {0:?} cannot name a stored session")]
    InvalidId(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A folder with one sub-folder per provider and one entry per session id, copied to and from the place the CLI
/// keeps it on this replica.
#[derive(Clone, Debug)]
pub struct SessionStore {
    root: PathBuf,
}

impl SessionStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SessionStore { root: root.into() }
    }

    fn entry(&self, kind: ProviderKind, session_id: &str) -> Result<PathBuf, StoreError> {
        check_id(session_id)?;
        Ok(self.root.join(kind.as_str()).join(session_id))
    }

    /// Copies the session's files into the store, replacing an older copy of the same session. Returns false when
    /// the CLI left nothing to save (e.g. it failed before creating the session).
    pub async fn save(&self, kind: ProviderKind, session_id: &str, files: &SessionFiles) -> Result<bool, StoreError> {
        let entry = self.entry(kind, session_id)?;
        let local = files.local.clone();
        tokio::task::spawn_blocking(move || save_blocking(&local, &entry))
            .await
            .map_err(|e| io_err("save", Path::new(""), io::Error::other(e)))?
    }

    /// Puts a stored session where the CLI will look for it. Returns false when the store has no such session.
    pub async fn restore(
        &self,
        kind: ProviderKind,
        session_id: &str,
        files: &SessionFiles,
    ) -> Result<bool, StoreError> {
        let entry = self.entry(kind, session_id)?;
        let local = files.local.clone();
        tokio::task::spawn_blocking(move || restore_blocking(&entry, &local))
            .await
            .map_err(|e| io_err("restore", Path::new(""), io::Error::other(e)))?
    }
}

/// request.rs already restricts ids; checked again here because this is where the id becomes a path.
fn check_id(session_id: &str) -> Result<(), StoreError> {
    let safe = !session_id.is_empty()
        && session_id != "."
        && session_id != ".."
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !safe {
        return Err(StoreError::InvalidId(session_id.to_string()));
    }
    Ok(())
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn save_blocking(local: &Path, entry: &Path) -> Result<bool, StoreError> {
    if std::fs::symlink_metadata(local).is_err() {
        return Ok(false);
    }
    let parent = entry.parent().unwrap_or(entry);
    std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
    // Written next to its final place and renamed, so a replica restoring at the same moment sees the old copy
    // or the new one, never half of one.
    let staging = parent.join(format!(
        ".{}.{}.partial",
        entry.file_name().and_then(|n| n.to_str()).unwrap_or("session"),
        std::process::id()
    ));
    remove_any(&staging).map_err(|e| io_err("clear", &staging, e))?;
    copy_tree(local, &staging).map_err(|e| io_err("copy", local, e))?;
    replace(&staging, entry)?;
    Ok(true)
}

/// Puts `staging` in the place of `entry`, whatever was there.
fn replace(staging: &Path, entry: &Path) -> Result<(), StoreError> {
    let parent = entry.parent().unwrap_or(entry);
    let previous = parent.join(format!(
        ".{}.{}.old",
        entry.file_name().and_then(|n| n.to_str()).unwrap_or("session"),
        std::process::id()
    ));
    if std::fs::symlink_metadata(entry).is_ok() {
        std::fs::rename(entry, &previous).map_err(|e| io_err("replace", entry, e))?;
    }
    std::fs::rename(staging, entry).map_err(|e| io_err("store", entry, e))?;
    remove_any(&previous).map_err(|e| io_err("clear", &previous, e))?;
    Ok(())
}

fn restore_blocking(entry: &Path, local: &Path) -> Result<bool, StoreError> {
    if std::fs::symlink_metadata(entry).is_err() {
        return Ok(false);
    }
    if let Some(parent) = local.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
    }
    remove_any(local).map_err(|e| io_err("clear", local, e))?;
    copy_tree(entry, local).map_err(|e| io_err("copy", entry, e))?;
    Ok(true)
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies regular files and folders; symlinks and lock files are not session state and are left behind (a
/// symlink could also point the restore outside the CLI's folder).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".lock") {
                continue;
            }
            copy_tree(&entry.path(), &to.join(name))?;
        }
    } else if meta.is_file() {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(path: PathBuf) -> SessionFiles {
        SessionFiles { local: path }
    }

    fn copilot() -> ProviderKind {
        "copilot".parse().unwrap()
    }

    fn claude() -> ProviderKind {
        "claude-code".parse().unwrap()
    }

    #[tokio::test]
    async fn a_saved_folder_comes_back_on_another_home() {
        let store_dir = tempfile::tempdir().unwrap();
        let home_a = tempfile::tempdir().unwrap();
        let home_b = tempfile::tempdir().unwrap();
        let store = SessionStore::new(store_dir.path());
        let a = home_a.path().join("session-state/s-1");
        std::fs::create_dir_all(a.join("files")).unwrap();
        std::fs::write(a.join("events.jsonl"), "{\"a\":1}\n").unwrap();
        std::fs::write(a.join("files/x"), "x").unwrap();
        std::fs::write(a.join("in-use.lock"), "").unwrap();

        assert!(store.save(copilot(), "s-1", &files(a)).await.unwrap());
        let b = home_b.path().join("session-state/s-1");
        assert!(store.restore(copilot(), "s-1", &files(b.clone())).await.unwrap());

        assert_eq!(std::fs::read_to_string(b.join("events.jsonl")).unwrap(), "{\"a\":1}\n");
        assert_eq!(std::fs::read_to_string(b.join("files/x")).unwrap(), "x");
        assert!(!b.join("in-use.lock").exists());
    }

    #[tokio::test]
    async fn a_second_save_replaces_the_first_and_a_missing_session_is_reported() {
        let store_dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let store = SessionStore::new(store_dir.path());
        let file = home.path().join("s-2.jsonl");
        std::fs::write(&file, "one").unwrap();
        store.save(claude(), "s-2", &files(file.clone())).await.unwrap();
        std::fs::write(&file, "two").unwrap();
        store.save(claude(), "s-2", &files(file.clone())).await.unwrap();
        std::fs::remove_file(&file).unwrap();

        assert!(store.restore(claude(), "s-2", &files(file.clone())).await.unwrap());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
        let other = home.path().join("nope.jsonl");
        assert!(!store.restore(claude(), "nope", &files(other)).await.unwrap());
        assert!(
            !store
                .save(claude(), "gone", &files(home.path().join("gone")))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn ids_that_could_escape_the_store_are_refused() {
        let store = SessionStore::new("/nonexistent-store");
        for id in ["..", "../x", "a/b", "", "."] {
            let result = store.restore(copilot(), id, &files("/tmp/x".into())).await;
            assert!(matches!(result, Err(StoreError::InvalidId(_))), "{id}");
        }
    }
}
