//! The job's private folder, handed to the provider for a CLI's home, config and credential files: outside the
//! workspace (the agent is not pointed at it, git does not list it), mode 0700, and gone when the run is over,
//! whether it succeeded or not and whatever `KEEP_WORKSPACE` says, since it may hold credentials.

use std::{
    io,
    path::{Path, PathBuf},
};

pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// `$HOME/.unified-worker/jobs/<jobId>`: the worker's own home rather than the temporary folder, where some
    /// CLIs refuse to set up helpers. A leftover of an earlier run with the same job id is replaced.
    pub async fn create(job_id: &str) -> io::Result<Self> {
        let root = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".unified-worker")
            .join("jobs");
        Self::create_in(&root, job_id).await
    }

    async fn create_in(root: &Path, job_id: &str) -> io::Result<Self> {
        let path = root.join(job_id);
        match tokio::fs::remove_dir_all(&path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .await?;
        // `mode` does not apply to folders that existed already; the job's own must be private in any case.
        tokio::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700)).await?;
        Ok(PrivateDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn remove(self) {
        if let Err(e) = tokio::fs::remove_dir_all(&self.path).await
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the job's private folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn the_folder_is_private_fresh_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let stale = root.path().join("job-1");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("auth.json"), "old").unwrap();

        let dir = PrivateDir::create_in(root.path(), "job-1").await.unwrap();

        assert_eq!(dir.path().metadata().unwrap().permissions().mode() & 0o777, 0o700);
        assert!(!dir.path().join("auth.json").exists(), "a leftover is not reused");
        let path = dir.path().to_path_buf();
        dir.remove().await;
        assert!(!path.exists());
    }
}
