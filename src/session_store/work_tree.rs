//! The work tree part of a stored session: `SESSION_STORE_DIR/worktrees/<provider>/<sessionId>/` holds the
//! snapshot's pack (`objects.pack`) and its manifest (`manifest.json`), replaced as a whole by a rename.
//! The calls here are blocking: they run on the same blocking thread as the git step they belong to.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{SessionStore, StoreError, check_id, io_err, remove_any, replace};
use crate::provider::ProviderKind;

const PACK: &str = "objects.pack";
const MANIFEST: &str = "manifest.json";

/// What a snapshot is, beside its pack (docs/persistence.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkTreeManifest {
    /// The repository the work tree was cloned from; None for a work folder without one.
    pub repo_url: Option<String>,
    /// The commit the snapshot sits on; None when the clone was of an empty repository.
    pub base: Option<String>,
    pub snapshot: String,
    pub branch: Option<String>,
    pub created_at: String,
    /// Size of the files the snapshot adds or changes against its base.
    pub bytes: u64,
    /// How many files those are.
    pub files: u64,
}

/// A snapshot found in the store.
#[derive(Clone, Debug)]
pub struct StoredWorkTree {
    pub manifest: WorkTreeManifest,
    pub pack: PathBuf,
}

/// A folder where a snapshot is being written, beside its final place.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    pub fn pack(&self) -> PathBuf {
        self.dir.join(PACK)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_any(&self.dir);
    }
}

impl SessionStore {
    // Under a folder of its own: a session id cannot collide with it, whatever the provider's ids look like.
    fn work_tree_entry(&self, kind: ProviderKind, session_id: &str) -> Result<PathBuf, StoreError> {
        check_id(session_id)?;
        Ok(self.root.join("worktrees").join(kind.as_str()).join(session_id))
    }

    /// An empty folder to write a snapshot in; removed unless `put_work_tree` moves it in place.
    pub fn stage_work_tree(&self, kind: ProviderKind, session_id: &str) -> Result<Staging, StoreError> {
        let entry = self.work_tree_entry(kind, session_id)?;
        let parent = entry.parent().unwrap_or(&entry);
        std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
        let dir = parent.join(format!(".{session_id}.{}.partial", std::process::id()));
        remove_any(&dir).map_err(|e| io_err("clear", &dir, e))?;
        std::fs::create_dir(&dir).map_err(|e| io_err("create", &dir, e))?;
        Ok(Staging { dir })
    }

    /// Writes the manifest and puts the staged snapshot in place of any older one of the session.
    pub fn put_work_tree(
        &self,
        kind: ProviderKind,
        session_id: &str,
        staging: Staging,
        manifest: &WorkTreeManifest,
    ) -> Result<(), StoreError> {
        let entry = self.work_tree_entry(kind, session_id)?;
        let path = staging.dir.join(MANIFEST);
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| io_err("write", &path, e.into()))?;
        std::fs::write(&path, json).map_err(|e| io_err("write", &path, e))?;
        replace(&staging.dir, &entry)
    }

    /// Forgets the session's snapshot: an older work tree must not come back with a newer conversation.
    pub fn drop_work_tree(&self, kind: ProviderKind, session_id: &str) -> Result<(), StoreError> {
        let entry = self.work_tree_entry(kind, session_id)?;
        remove_any(&entry).map_err(|e| io_err("remove", &entry, e))
    }

    /// The session's snapshot, if the store has one.
    pub fn work_tree(&self, kind: ProviderKind, session_id: &str) -> Result<Option<StoredWorkTree>, StoreError> {
        let entry = self.work_tree_entry(kind, session_id)?;
        let path = entry.join(MANIFEST);
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path, e)),
        };
        let manifest = serde_json::from_slice(&raw).map_err(|e| io_err("read", &path, e.into()))?;
        Ok(Some(StoredWorkTree {
            manifest,
            pack: entry.join(PACK),
        }))
    }
}
