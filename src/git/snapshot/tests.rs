use std::{
    collections::BTreeMap,
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
};

use git2::{IndexAddOption, Repository};
use tempfile::TempDir;

use super::*;

const AUTHOR: Author<'static> = Author {
    name: "t",
    email: "t@example.com",
};

/// Every file under `dir` but `.git`: path → (kind and mode, content or link target).
fn tree_of(dir: &Path) -> BTreeMap<String, (String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if relative == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(relative, ("link".into(), target.to_string_lossy().as_bytes().to_vec()));
            } else if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                let kind = if exec { "exec" } else { "file" };
                out.insert(relative, (kind.into(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn write(dir: &Path, path: &str, content: &[u8]) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn make_executable(dir: &Path, path: &str) {
    std::fs::set_permissions(dir.join(path), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An origin with a first commit, and a clone of it standing for the job's checkout.
fn origin_and_clone() -> (TempDir, TempDir, Oid) {
    let origin = TempDir::new().unwrap();
    let repo = Repository::init(origin.path()).unwrap();
    write(origin.path(), "keep.txt", b"keep\n");
    write(origin.path(), "edit.txt", b"one\n");
    write(origin.path(), "gone.txt", b"gone\n");
    write(origin.path(), "dir/gone-too.txt", b"x\n");
    write(origin.path(), "was-file", b"file\n");
    write(origin.path(), "tool.sh", b"#!/bin/sh\n");
    write(origin.path(), ".gitignore", b"ignored/\n*.log\n");
    write(origin.path(), "tracked.log", b"tracked though ignored\n");
    let mut index = repo.index().unwrap();
    index.add_all(["*"], IndexAddOption::FORCE, None).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let base = repo.commit(Some("HEAD"), &sig, &sig, "base", &tree, &[]).unwrap();
    let clone = TempDir::new().unwrap();
    Repository::clone(origin.path().to_str().unwrap(), clone.path()).unwrap();
    (origin, clone, base)
}

/// What an agent does to a work tree: edits, deletions, untracked files, a symlink, an executable, a file that
/// becomes a folder, ignored files.
fn agent_changes(dir: &Path) {
    write(dir, "edit.txt", b"one\ntwo\r\n\x00binary\n");
    std::fs::remove_file(dir.join("gone.txt")).unwrap();
    std::fs::remove_file(dir.join("dir/gone-too.txt")).unwrap();
    std::fs::remove_file(dir.join("was-file")).unwrap();
    write(dir, "was-file/now-in-folder.txt", b"inside\n");
    write(dir, "new/deep/untracked.txt", b"untracked\n");
    symlink("../edit.txt", dir.join("new/link")).unwrap();
    symlink("/etc/passwd", dir.join("outside-link")).unwrap();
    write(dir, "run.sh", b"#!/bin/sh\necho hi\n");
    make_executable(dir, "run.sh");
    make_executable(dir, "tool.sh");
    write(dir, "ignored/big.bin", &[7u8; 4096]);
    write(dir, "debug.log", b"noise\n");
}

fn without_ignored(mut tree: BTreeMap<String, (String, Vec<u8>)>) -> BTreeMap<String, (String, Vec<u8>)> {
    tree.retain(|path, _| !path.starts_with("ignored/") && path != "debug.log");
    tree
}

#[test]
fn a_clone_comes_back_byte_for_byte_as_uncommitted_changes_without_its_ignored_files() {
    let (origin, job1, base) = origin_and_clone();
    agent_changes(job1.path());
    let store = TempDir::new().unwrap();
    let pack = store.path().join("objects.pack");

    let saved = save_clone(job1.path(), Some(base), &AUTHOR, 1 << 20, &pack).unwrap();

    let Saved::Written(snapshot) = saved else {
        panic!("{saved:?}")
    };
    assert_eq!(snapshot.base, Some(base));
    // edit.txt, was-file/now-in-folder.txt, new/deep/untracked.txt, new/link, outside-link, run.sh, tool.sh (mode).
    assert_eq!(snapshot.files, 7);
    let job2 = TempDir::new().unwrap();
    std::fs::remove_dir(job2.path()).unwrap();
    Repository::clone(origin.path().to_str().unwrap(), job2.path()).unwrap();
    let restored = restore_clone(job2.path(), &pack, Some(base), snapshot.commit).unwrap();

    assert_eq!(tree_of(job2.path()), without_ignored(tree_of(job1.path())));
    assert_eq!((restored.files, restored.bytes), (snapshot.files, snapshot.bytes));
    assert_eq!(restored.deleted, 3);
    let repo = Repository::open(job2.path()).unwrap();
    assert_eq!(repo.head().unwrap().target(), Some(base), "HEAD stays on the base");
    let staged = repo
        .diff_tree_to_index(Some(&repo.find_commit(base).unwrap().tree().unwrap()), None, None)
        .unwrap();
    assert_eq!(staged.deltas().len(), 0, "the changes are not staged");
    assert!(
        !repo.statuses(None).unwrap().is_empty(),
        "the changes are there, uncommitted"
    );
    assert_eq!(
        std::fs::read_link(job2.path().join("outside-link")).unwrap(),
        Path::new("/etc/passwd"),
        "a symlink is carried as a link, never followed"
    );
}

#[test]
fn a_folder_replaced_by_a_symlink_is_carried_as_the_link_and_nothing_behind_it_is_read() {
    let (origin, job1, base) = origin_and_clone();
    let outside = TempDir::new().unwrap();
    write(outside.path(), "gone-too.txt", b"a secret of the worker's\n");
    std::fs::remove_dir_all(job1.path().join("dir")).unwrap();
    symlink(outside.path(), job1.path().join("dir")).unwrap();
    let store = TempDir::new().unwrap();
    let pack = store.path().join("objects.pack");

    let Saved::Written(snapshot) = save_clone(job1.path(), Some(base), &AUTHOR, 1 << 20, &pack).unwrap() else {
        panic!("not saved")
    };

    let repo = Repository::open(job1.path()).unwrap();
    let tree = repo.find_commit(snapshot.commit).unwrap().tree().unwrap();
    let entry = tree.get_path(Path::new("dir")).unwrap();
    assert_eq!(
        entry.filemode(),
        i32::from(git2::FileMode::Link),
        "the folder is now the link"
    );
    assert!(
        tree.get_path(Path::new("dir/gone-too.txt")).is_err(),
        "nothing read through the link"
    );
    let job2 = TempDir::new().unwrap();
    std::fs::remove_dir(job2.path()).unwrap();
    Repository::clone(origin.path().to_str().unwrap(), job2.path()).unwrap();
    restore_clone(job2.path(), &pack, Some(base), snapshot.commit).unwrap();
    assert_eq!(std::fs::read_link(job2.path().join("dir")).unwrap(), outside.path());
}

#[test]
fn the_pack_holds_only_what_the_base_lacks() {
    let (_origin, job1, base) = origin_and_clone();
    write(job1.path(), "added.txt", b"added\n");
    let store = TempDir::new().unwrap();
    let pack = store.path().join("objects.pack");

    let Saved::Written(snapshot) = save_clone(job1.path(), Some(base), &AUTHOR, 1 << 20, &pack).unwrap() else {
        panic!("not written")
    };

    // The commit, its root tree and the one new blob.
    let repo = Repository::init_bare(store.path().join("check")).unwrap();
    super::restore::unpack(&repo, &pack).unwrap();
    assert!(repo.find_commit(snapshot.commit).is_ok());
    let mut objects = 0;
    repo.odb()
        .unwrap()
        .foreach(|_| {
            objects += 1;
            true
        })
        .unwrap();
    assert_eq!(objects, 3);
    assert_eq!((snapshot.files, snapshot.bytes), (1, 6));
}

#[test]
fn a_plain_work_folder_travels_without_gaining_a_git_folder() {
    let job1 = TempDir::new().unwrap();
    write(job1.path(), "notes.txt", b"notes\n");
    write(job1.path(), ".gitignore", b"*.tmp\n");
    write(job1.path(), "scratch.tmp", b"scratch\n");
    write(job1.path(), "bin/tool", b"#!/bin/sh\n");
    make_executable(job1.path(), "bin/tool");
    symlink("notes.txt", job1.path().join("link")).unwrap();
    let store = TempDir::new().unwrap();
    let pack = store.path().join("objects.pack");

    let Saved::Written(snapshot) = save_folder(job1.path(), &AUTHOR, 1 << 20, &pack).unwrap() else {
        panic!("not written")
    };
    let job2 = TempDir::new().unwrap();
    let restored = restore_folder(job2.path(), &pack, snapshot.commit, &AUTHOR).unwrap();

    assert!(!job1.path().join(".git").exists());
    assert!(!job2.path().join(".git").exists());
    let mut expected = tree_of(job1.path());
    expected.remove("scratch.tmp");
    assert_eq!(tree_of(job2.path()), expected);
    assert_eq!(restored.files, 4);
}

#[test]
fn a_work_tree_above_the_bound_is_not_written() {
    let (_origin, job1, base) = origin_and_clone();
    write(job1.path(), "big.bin", &[1u8; 2000]);
    write(job1.path(), "ignored/huge.bin", &[1u8; 100_000]);
    let store = TempDir::new().unwrap();
    let pack = store.path().join("objects.pack");

    let saved = save_clone(job1.path(), Some(base), &AUTHOR, 1000, &pack).unwrap();

    assert_eq!(saved, Saved::TooLarge { bytes: 2000 });
    assert!(!pack.exists());
    let fits = save_clone(job1.path(), Some(base), &AUTHOR, 2000, &pack).unwrap();
    assert!(
        matches!(fits, Saved::Written(_)),
        "ignored files do not count: {fits:?}"
    );
}

#[test]
fn a_stored_path_that_would_leave_the_work_tree_is_refused() {
    let dir = TempDir::new().unwrap();
    for bad in [&b"../x"[..], b"/etc/x", b".git/config", b"a/.GIT/hooks", b""] {
        assert!(super::restore::inside(dir.path(), Some(bad)).is_err(), "{bad:?}");
    }
    assert!(super::restore::inside(dir.path(), Some(b"a/b.git")).is_ok());
}
