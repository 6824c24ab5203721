//! Putting a snapshot back: its pack into a repository's object database, then its files over the base's as
//! uncommitted changes (the index and HEAD stay on the base), byte for byte, with modes and symlinks.

use std::{
    ffi::OsStr,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    path::{Component, Path, PathBuf},
};

use git2::{Delta, DiffOptions, FileMode, Oid, Repository, ResetType};

use super::{Author, GitError, empty_commit};

/// What a restore wrote: files added or changed against the base and their bytes, and files it deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub files: u64,
    pub bytes: u64,
    pub deleted: u64,
}

fn fail(e: git2::Error) -> GitError {
    GitError::Checkout(format!("could not restore the session's work tree: {}", e.message()))
}

fn io_fail(path: &Path, e: io::Error) -> GitError {
    GitError::Checkout(format!(
        "could not restore the session's work tree at {}: {e}",
        path.display()
    ))
}

/// Adds the pack's objects to the repository (indexed as a pack of its own, as a fetch would).
pub fn unpack(repo: &Repository, pack: &Path) -> Result<(), GitError> {
    let odb = repo.odb().map_err(fail)?;
    let mut writer = odb.packwriter().map_err(fail)?;
    let mut file = File::open(pack).map_err(|e| io_fail(pack, e))?;
    io::copy(&mut file, &mut writer).map_err(|e| io_fail(pack, e))?;
    writer.commit().map_err(fail)?;
    Ok(())
}

/// The clone in `workdir` with the snapshot over it: HEAD, its branch and the index on `base` (the clone's commit,
/// or the snapshot's base when the branch has moved on since), the working tree the snapshot's.
pub fn restore_clone(workdir: &Path, pack: &Path, base: Option<Oid>, snapshot: Oid) -> Result<Restored, GitError> {
    let repo = Repository::open(workdir).map_err(fail)?;
    unpack(&repo, pack)?;
    if let Some(base) = base {
        let head = repo.head().ok().and_then(|h| h.target());
        if head != Some(base) {
            let commit = repo.find_object(base, None).map_err(|e| {
                GitError::Checkout(format!(
                    "the session's work tree starts from commit {base}, which the repository does not have: {}",
                    e.message()
                ))
            })?;
            repo.reset(&commit, ResetType::Hard, None).map_err(fail)?;
        }
    }
    overlay(&repo, workdir, base, snapshot)
}

/// A work folder that is no repository: the snapshot's files written into it, through a repository made for it
/// elsewhere.
pub fn restore_folder(workdir: &Path, pack: &Path, snapshot: Oid, author: &Author<'_>) -> Result<Restored, GitError> {
    let scratch = tempfile::Builder::new()
        .prefix("unified-worker-restore-")
        .tempdir()
        .map_err(|e| GitError::Internal(format!("could not create a scratch repository: {e}")))?;
    let repo = Repository::init_bare(scratch.path()).map_err(fail)?;
    unpack(&repo, pack)?;
    let base = empty_commit(&repo, author)?;
    overlay(&repo, workdir, Some(base), snapshot)
}

/// Writes into `workdir` what differs between the base's tree and the snapshot's: deletions first, so a file that
/// became a folder (or the reverse) has its place free.
pub fn overlay(repo: &Repository, workdir: &Path, base: Option<Oid>, snapshot: Oid) -> Result<Restored, GitError> {
    let base_tree = base
        .map(|oid| repo.find_commit(oid).and_then(|c| c.tree()))
        .transpose()
        .map_err(fail)?;
    let snapshot_tree = repo.find_commit(snapshot).and_then(|c| c.tree()).map_err(fail)?;
    let mut options = DiffOptions::new();
    options.include_typechange(false);
    let diff = repo
        .diff_tree_to_tree(base_tree.as_ref(), Some(&snapshot_tree), Some(&mut options))
        .map_err(fail)?;
    let mut restored = Restored::default();
    let mut writes = Vec::new();
    for delta in diff.deltas() {
        match delta.status() {
            Delta::Deleted => {
                let path = inside(workdir, delta.old_file().path_bytes())?;
                remove(&path).map_err(|e| io_fail(&path, e))?;
                remove_empty_parents(workdir, &path);
                restored.deleted += 1;
            }
            _ => {
                let file = delta.new_file();
                let path = inside(workdir, file.path_bytes())?;
                writes.push((path, file.id(), file.mode()));
            }
        }
    }
    for (path, oid, mode) in writes {
        let blob = repo.find_blob(oid).map_err(fail)?;
        make_parents(workdir, &path)?;
        remove(&path).map_err(|e| io_fail(&path, e))?;
        let content = blob.content();
        match mode {
            FileMode::Link => std::os::unix::fs::symlink(OsStr::from_bytes(content), &path),
            FileMode::Blob | FileMode::BlobExecutable => {
                // Created like a checkout creates them: the umask decides the bits besides executable or not.
                let bits = if mode == FileMode::BlobExecutable { 0o777 } else { 0o666 };
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(bits)
                    .open(&path)
                    .and_then(|mut f| f.write_all(content))
            }
            // Submodules are never snapshotted.
            _ => continue,
        }
        .map_err(|e| io_fail(&path, e))?;
        restored.files += 1;
        restored.bytes += content.len() as u64;
    }
    Ok(restored)
}

/// The place of a snapshot path in the work tree; a path that would leave it or touch `.git` is refused, whatever
/// the store holds.
pub(super) fn inside(workdir: &Path, path: Option<&[u8]>) -> Result<PathBuf, GitError> {
    let relative = Path::new(OsStr::from_bytes(path.unwrap_or_default()));
    let safe = !relative.as_os_str().is_empty()
        && relative.components().all(|c| match c {
            Component::Normal(name) => !name.as_bytes().eq_ignore_ascii_case(b".git"),
            _ => false,
        });
    if !safe {
        return Err(GitError::Checkout(format!(
            "the session's work tree names a path outside the work tree: {}",
            relative.display()
        )));
    }
    Ok(workdir.join(relative))
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Folders up to `path`, replacing whatever else is in the way: a symlink there must not carry a write outside.
fn make_parents(workdir: &Path, path: &Path) -> Result<(), GitError> {
    let Some(parent) = path.parent() else { return Ok(()) };
    let Ok(relative) = parent.strip_prefix(workdir) else {
        return Ok(());
    };
    let mut at = workdir.to_path_buf();
    for component in relative.components() {
        at.push(component);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => std::fs::remove_file(&at).map_err(|e| io_fail(&at, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_fail(&at, e)),
        }
        std::fs::create_dir(&at).map_err(|e| io_fail(&at, e))?;
    }
    Ok(())
}

/// As git does after removing a folder's last file.
fn remove_empty_parents(workdir: &Path, path: &Path) {
    let mut at = path.parent();
    while let Some(dir) = at.filter(|d| *d != workdir && d.starts_with(workdir)) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
        at = dir.parent();
    }
}
