//! The work tree carried with a session (docs/persistence.md): a commit on top of the checked-out base holding every
//! tracked and untracked, not ignored file exactly as it is on disk, and a pack of the objects that commit adds to
//! its base. Reading it back into a work tree is `restore`.

mod restore;

use std::{
    fs::File,
    io::{self, Write},
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
};

use git2::{
    FileMode, Index, IndexEntry, IndexTime, ObjectType, Oid, PackBuilder, Repository, Signature, Status, StatusOptions,
    Tree,
};

pub use restore::{Restored, restore_clone, restore_folder};

use super::GitError;

/// What a saved snapshot holds, for its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit the work tree started from; None when there was none (an empty repository).
    pub base: Option<Oid>,
    pub commit: Oid,
    /// Files the snapshot adds or changes against its base, and their size on disk.
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    Written(Snapshot),
    /// The work tree adds more than the bound to its base (at least this many bytes): nothing was written.
    TooLarge {
        bytes: u64,
    },
}

/// Who the snapshot commit names as author; it is never pushed, so this only shows in a restored repository.
pub struct Author<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// Snapshots the clone in `workdir` on top of `base` (the commit it checked out) into a pack at `pack`.
pub fn save_clone(
    workdir: &Path,
    base: Option<Oid>,
    author: &Author<'_>,
    max_bytes: u64,
    pack: &Path,
) -> Result<Saved, GitError> {
    let repo = Repository::open(workdir).map_err(fail)?;
    save(&repo, base, Carry::Changes, author, max_bytes, pack)
}

/// Snapshots a work folder that is no repository, through a repository made for it elsewhere (so the folder gains
/// no `.git`); the base is an empty commit, and the pack holds everything, base included.
pub fn save_folder(workdir: &Path, author: &Author<'_>, max_bytes: u64, pack: &Path) -> Result<Saved, GitError> {
    let scratch = tempfile::Builder::new()
        .prefix("unified-worker-snapshot-")
        .tempdir()
        .map_err(|e| GitError::Internal(format!("could not create a scratch repository: {e}")))?;
    let repo = Repository::init_bare(scratch.path()).map_err(fail)?;
    repo.set_workdir(workdir, false).map_err(fail)?;
    let base = empty_commit(&repo, author)?;
    save(&repo, Some(base), Carry::Base, author, max_bytes, pack)
}

/// The base of a work folder's snapshot; fixed author and time, so every folder snapshot shares the same one.
pub fn empty_commit(repo: &Repository, author: &Author<'_>) -> Result<Oid, GitError> {
    let tree = repo.treebuilder(None).and_then(|b| b.write()).map_err(fail)?;
    let tree = repo.find_tree(tree).map_err(fail)?;
    let signature = Signature::new(author.name, author.email, &git2::Time::new(0, 0)).map_err(fail)?;
    repo.commit(None, &signature, &signature, "work folder", &tree, &[])
        .map_err(fail)
}

fn fail(e: git2::Error) -> GitError {
    GitError::Internal(format!("could not snapshot the work tree: {}", e.message()))
}

fn io_fail(path: &Path, e: io::Error) -> GitError {
    GitError::Internal(format!("could not snapshot {}: {e}", path.display()))
}

/// Whether the pack holds the base commit too, or only what the snapshot adds to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Carry {
    Base,
    Changes,
}

/// A commit of the work tree as it is now, on top of `base`, for the changes of a conversation's turn: nothing is
/// packed and no bound applies, since it never leaves the repository.
pub fn checkpoint(workdir: &Path, base: Option<Oid>, author: &Author<'_>) -> Result<Oid, GitError> {
    let repo = Repository::open(workdir).map_err(fail)?;
    match commit_work_tree(&repo, base, author, u64::MAX)? {
        Saved::Written(snapshot) => Ok(snapshot.commit),
        Saved::TooLarge { .. } => Err(GitError::Internal(
            "the work tree is larger than memory can count".into(),
        )),
    }
}

fn save(
    repo: &Repository,
    base: Option<Oid>,
    carry: Carry,
    author: &Author<'_>,
    max_bytes: u64,
    pack: &Path,
) -> Result<Saved, GitError> {
    let snapshot = match commit_work_tree(repo, base, author, max_bytes)? {
        Saved::Written(snapshot) => snapshot,
        too_large => return Ok(too_large),
    };
    let commit = repo.find_commit(snapshot.commit).map_err(fail)?;
    let tree = commit.tree().map_err(fail)?;
    let base_commit = base.map(|oid| repo.find_commit(oid)).transpose().map_err(fail)?;
    let base_tree = base_commit.as_ref().map(|c| c.tree()).transpose().map_err(fail)?;

    let mut builder = repo.packbuilder().map_err(fail)?;
    builder.insert_object(commit.id(), None).map_err(fail)?;
    // A folder's base exists nowhere else: the pack carries it too.
    if let (Some(base), Carry::Base) = (&base_commit, carry) {
        builder.insert_object(base.id(), None).map_err(fail)?;
        builder.insert_object(base.tree_id(), None).map_err(fail)?;
    }
    insert_new(repo, &mut builder, &tree, base_tree.as_ref())?;
    let mut out = File::create(pack).map_err(|e| io_fail(pack, e))?;
    let mut written: io::Result<()> = Ok(());
    builder
        .foreach(|chunk| {
            written = out.write_all(chunk);
            written.is_ok()
        })
        .map_err(fail)?;
    written.and_then(|()| out.sync_all()).map_err(|e| io_fail(pack, e))?;
    Ok(Saved::Written(snapshot))
}

/// Writes every tracked and untracked, not ignored file of the work tree as it is on disk into a commit on
/// `base`; stops as soon as what it adds to the base passes `max_bytes`.
fn commit_work_tree(
    repo: &Repository,
    base: Option<Oid>,
    author: &Author<'_>,
    max_bytes: u64,
) -> Result<Saved, GitError> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| GitError::Internal("the repository has no work tree".into()))?
        .to_path_buf();
    let base_commit = base.map(|oid| repo.find_commit(oid)).transpose().map_err(fail)?;
    let base_tree = base_commit.as_ref().map(|c| c.tree()).transpose().map_err(fail)?;
    let index = repo.index().map_err(fail)?;

    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_unmodified(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options)).map_err(fail)?;
    let mut snapshot = Index::new().map_err(fail)?;
    let (mut files, mut bytes) = (0u64, 0u64);
    for entry in statuses.iter() {
        let relative = PathBuf::from(std::ffi::OsStr::from_bytes(entry.path_bytes()));
        // A tracked file whose folder the agent replaced with a symlink would be read through it, from wherever it
        // points: the link itself is carried (as its own entry), never what is behind it.
        if behind_a_symlink(&workdir, &relative) {
            continue;
        }
        let path = workdir.join(&relative);
        // Deleted files are absent from the snapshot; a folder here is a nested repository, which is not carried.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let (oid, mode, size) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| io_fail(&path, e))?;
            let target = target.as_os_str().as_bytes();
            (repo.blob(target).map_err(fail)?, FileMode::Link, target.len() as u64)
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                FileMode::BlobExecutable
            } else {
                FileMode::Blob
            };
            // Unmodified per the index's stat data and as the base has it: no need to read it again.
            let known = (entry.status() == Status::CURRENT)
                .then(|| index.get_path(&relative, 0))
                .flatten()
                .map(|e| e.id)
                .filter(|oid| in_base(base_tree.as_ref(), &relative, *oid, mode));
            let oid = match known {
                Some(oid) => oid,
                None => {
                    // Hashed first, written only when new: a touched but unchanged file costs nothing.
                    let oid = Oid::hash_file(ObjectType::Blob, &path).map_err(fail)?;
                    if !in_base(base_tree.as_ref(), &relative, oid, mode) {
                        if bytes + meta.len() > max_bytes {
                            return Ok(Saved::TooLarge {
                                bytes: bytes + meta.len(),
                            });
                        }
                        if write_blob(repo, &path, meta.len())? != oid {
                            return Err(changed_meanwhile(&path));
                        }
                    }
                    oid
                }
            };
            (oid, mode, meta.len())
        } else {
            continue;
        };
        if !in_base(base_tree.as_ref(), &relative, oid, mode) {
            files += 1;
            bytes += size;
            if bytes > max_bytes {
                return Ok(Saved::TooLarge { bytes });
            }
        }
        snapshot
            .add(&IndexEntry {
                ctime: IndexTime::new(0, 0),
                mtime: IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: u32::from(mode),
                uid: 0,
                gid: 0,
                file_size: 0,
                id: oid,
                flags: 0,
                flags_extended: 0,
                path: entry.path_bytes().to_vec(),
            })
            .map_err(fail)?;
    }
    let tree = snapshot.write_tree_to(repo).map_err(fail)?;
    let tree = repo.find_tree(tree).map_err(fail)?;
    let signature = Signature::now(author.name, author.email).map_err(fail)?;
    let parents: Vec<&git2::Commit<'_>> = base_commit.iter().collect();
    let commit = repo
        .commit(None, &signature, &signature, "work tree snapshot", &tree, &parents)
        .map_err(fail)?;
    Ok(Saved::Written(Snapshot {
        base,
        commit,
        files,
        bytes,
    }))
}

/// Whether a folder on the way to `relative` is a symlink (or no folder at all).
fn behind_a_symlink(workdir: &Path, relative: &Path) -> bool {
    let mut at = workdir.to_path_buf();
    let Some(parent) = relative.parent() else {
        return false;
    };
    parent.components().any(|component| {
        at.push(component);
        !std::fs::symlink_metadata(&at).is_ok_and(|meta| meta.is_dir())
    })
}

/// Streams the file into the object database, so a large file is never held in memory whole.
fn write_blob(repo: &Repository, path: &Path, len: u64) -> Result<Oid, GitError> {
    let odb = repo.odb().map_err(fail)?;
    let mut writer = odb.writer(len as usize, ObjectType::Blob).map_err(fail)?;
    let mut file = File::open(path).map_err(|e| io_fail(path, e))?;
    let copied = io::copy(&mut file, &mut writer).map_err(|e| io_fail(path, e))?;
    if copied != len {
        return Err(changed_meanwhile(path));
    }
    writer.finalize().map_err(fail)
}

/// The agent has finished, so only a stray process of its can change a file while it is read.
fn changed_meanwhile(path: &Path) -> GitError {
    GitError::Internal(format!("{} changed while it was snapshotted", path.display()))
}

fn base_entry(base: Option<&Tree<'_>>, path: &Path) -> Option<(Oid, i32)> {
    let entry = base?.get_path(path).ok()?;
    Some((entry.id(), entry.filemode()))
}

fn in_base(base: Option<&Tree<'_>>, path: &Path, oid: Oid, mode: FileMode) -> bool {
    base_entry(base, path) == Some((oid, i32::from(mode)))
}

/// Adds `tree` and whatever below it the base does not have at the same place: a folder the agent did not touch
/// is one comparison, not a walk.
fn insert_new(
    repo: &Repository,
    builder: &mut PackBuilder<'_>,
    tree: &Tree<'_>,
    base: Option<&Tree<'_>>,
) -> Result<(), GitError> {
    builder.insert_object(tree.id(), None).map_err(fail)?;
    for entry in tree.iter() {
        let in_base = base.and_then(|b| b.get_name_bytes(entry.name_bytes()));
        if in_base.as_ref().is_some_and(|b| b.id() == entry.id()) {
            continue;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let sub = repo.find_tree(entry.id()).map_err(fail)?;
                let base_sub = in_base
                    .filter(|b| b.kind() == Some(ObjectType::Tree))
                    .map(|b| repo.find_tree(b.id()))
                    .transpose()
                    .map_err(fail)?;
                insert_new(repo, builder, &sub, base_sub.as_ref())?;
            }
            _ => builder.insert_object(entry.id(), None).map_err(fail)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
