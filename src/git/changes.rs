//! The change summary after a run: the working tree (untracked files included, ignored ones not) against the
//! commit that was checked out, whatever the agent committed or staged in between.

use std::path::Path;

use git2::{Delta, DiffFindOptions, DiffOptions, Patch, Repository};

use super::GitError;
use crate::event::{Changes, FileChange};

pub fn summarize(dir: &Path, base: Option<git2::Oid>) -> Result<Changes, GitError> {
    let fail = |e: git2::Error| GitError::Internal(format!("could not compute the changes: {}", e.message()));
    let repo = Repository::open(dir).map_err(fail)?;
    let tree = base
        .map(|oid| repo.find_commit(oid).and_then(|c| c.tree()))
        .transpose()
        .map_err(fail)?;
    let mut options = DiffOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .include_typechange(true);
    let mut diff = repo
        .diff_tree_to_workdir_with_index(tree.as_ref(), Some(&mut options))
        .map_err(fail)?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true).for_untracked(true)))
        .map_err(fail)?;

    let mut changes = Changes::default();
    for index in 0..diff.deltas().len() {
        let Some(delta) = diff.get_delta(index) else { continue };
        let path = delta
            .new_file()
            .path()
            .or_else(|| delta.old_file().path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Binary files have no line counts; they still count as changed.
        let (insertions, deletions) = match Patch::from_diff(&diff, index).map_err(fail)? {
            Some(patch) if !delta.flags().is_binary() => {
                let (_, added, removed) = patch.line_stats().map_err(fail)?;
                (added as u64, removed as u64)
            }
            _ => (0, 0),
        };
        changes.files.push(FileChange {
            path,
            status: status(delta.status()).to_string(),
            insertions,
            deletions,
        });
        changes.insertions += insertions;
        changes.deletions += deletions;
    }
    changes.files_changed = changes.files.len() as u64;
    Ok(changes)
}

fn status(delta: Delta) -> &'static str {
    match delta {
        Delta::Added | Delta::Untracked => "added",
        Delta::Deleted => "deleted",
        Delta::Renamed => "renamed",
        Delta::Copied => "copied",
        Delta::Typechange => "typechange",
        _ => "modified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_all(repo: &Repository) -> git2::Oid {
        let mut index = repo.index().unwrap();
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "base", &tree, &[]).unwrap()
    }

    #[test]
    fn counts_modified_untracked_deleted_renamed_and_binary_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\n").unwrap();
        std::fs::write(dir.path().join("gone.txt"), "x\n").unwrap();
        std::fs::write(dir.path().join("moved.txt"), "a\nb\nc\nd\n").unwrap();
        std::fs::write(dir.path().join(".gitignore"), "target/\n").unwrap();
        let base = commit_all(&repo);

        std::fs::write(dir.path().join("a.txt"), "one\n2\nthree\n").unwrap();
        std::fs::remove_file(dir.path().join("gone.txt")).unwrap();
        std::fs::rename(dir.path().join("moved.txt"), dir.path().join("renamed.txt")).unwrap();
        std::fs::create_dir(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new/b.txt"), "b\n").unwrap();
        std::fs::write(dir.path().join("blob.bin"), [0u8, 159, 146, 150, 0, 1]).unwrap();
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("target/ignored"), "x\n").unwrap();

        let changes = summarize(dir.path(), Some(base)).unwrap();
        let mut files: Vec<_> = changes
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.status.as_str(), f.insertions, f.deletions))
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                ("a.txt", "modified", 2, 1),
                ("blob.bin", "added", 0, 0),
                ("gone.txt", "deleted", 0, 1),
                ("new/b.txt", "added", 1, 0),
                ("renamed.txt", "renamed", 0, 0),
            ]
        );
        assert_eq!(
            (changes.files_changed, changes.insertions, changes.deletions),
            (5, 3, 2)
        );
    }
}
