//! Files a provider writes for its CLI that hold credentials: created private (mode 0600) from the first byte,
//! and the record of what must be put back after the run.

use std::{fmt, path::Path, path::PathBuf};

use tokio::io::AsyncWriteExt;

/// Creates or replaces the file with mode 0600 from the start, so there is no moment at which others can read it.
pub async fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await?;
    file.write_all(bytes).await?;
    file.flush().await?;
    // An existing file keeps its old mode on open; make sure it ends up private.
    tokio::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).await
}

/// What a run changed outside its private folder and must undo, whatever its outcome. Files inside the job's
/// private folder need no entry: the folder goes with the job.
#[derive(Default)]
#[must_use = "a cleanup that is dropped leaves a request's credentials behind"]
pub struct Cleanup {
    restores: Vec<Restore>,
}

struct Restore {
    path: PathBuf,
    /// What the file held before the run; None: it did not exist.
    previous: Option<Vec<u8>>,
}

impl Cleanup {
    /// After the run, `path` gets `previous` back, or is removed when it did not exist before.
    pub fn restore_file(path: PathBuf, previous: Option<Vec<u8>>) -> Self {
        Cleanup {
            restores: vec![Restore { path, previous }],
        }
    }

    pub async fn run(self) {
        for Restore { path, previous } in self.restores {
            let result = match previous {
                Some(bytes) => write_private(&path, &bytes).await,
                None => tokio::fs::remove_file(&path).await,
            };
            if let Err(e) = result {
                tracing::warn!(path = %path.display(), error = %e, "could not undo a credentials file of the run");
            }
        }
    }
}

/// Never shows the saved contents: they are credentials.
impl fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.restores.iter().map(|r| r.path.display()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn a_replaced_file_comes_back_and_a_new_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept.json");
        std::fs::write(&kept, "old").unwrap();
        write_private(&kept, b"request's").await.unwrap();
        let added = dir.path().join("added.json");
        write_private(&added, b"request's").await.unwrap();
        assert_eq!(std::fs::metadata(&added).unwrap().permissions().mode() & 0o777, 0o600);

        Cleanup::restore_file(kept.clone(), Some(b"old".to_vec())).run().await;
        Cleanup::restore_file(added.clone(), None).run().await;

        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old");
        assert!(!added.exists());
    }

    #[test]
    fn debug_names_paths_only() {
        let cleanup = Cleanup::restore_file("/x/.credentials.json".into(), Some(b"sk-secret-value".to_vec()));
        let shown = format!("{cleanup:?}");
        assert!(
            shown.contains("/x/.credentials.json") && !shown.contains("sk-secret"),
            "{shown}"
        );
    }
}
