//! Carrying one opencode session between replicas. opencode keeps every session in one SQLite database
//! (`$XDG_DATA_HOME/opencode/opencode.db`), which cannot be copied a session at a time; its own `export <id>`
//! writes one session (its info, messages and parts) as JSON and `import <file>` puts it into another database
//! under the same id. The session store carries that JSON file.

use std::{
    io,
    path::Path,
    process::Output,
    time::Duration,
};

use super::parser::strip_ansi;
use crate::process::run_bounded;

/// Both commands only open the database; they never call a model. Long enough for a slow disk, short enough
/// that a hung CLI cannot hold the job.
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the CLI runs and with what: the job's binary, workspace and environment (its private home).
pub(super) struct Cli<'a> {
    pub binary: &'a Path,
    pub workdir: &'a Path,
    pub env: &'a [(String, String)],
}

impl Cli<'_> {
    /// `opencode export <id>`: the session as JSON on stdout, written to `file`.
    pub(super) async fn export(&self, session_id: &str, file: &Path) -> io::Result<()> {
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let output = self.run(&["export", session_id]).await?;
        // Its progress note goes to stderr; stdout is the JSON alone.
        let exported: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
            io::Error::other(format!(
                "opencode export printed no session ({e}): {}",
                tail(&output.stderr)
            ))
        })?;
        if exported["info"]["id"] != session_id {
            return Err(io::Error::other(format!(
                "opencode export did not return session {session_id}"
            )));
        }
        tokio::fs::write(file, &output.stdout).await
    }

    /// `opencode import <file>`: the session back in this job's database, under its own id.
    pub(super) async fn import(&self, file: &Path) -> io::Result<()> {
        self.run(&["import", &file.to_string_lossy()]).await.map(drop)
    }

    async fn run(&self, args: &[&str]) -> io::Result<Output> {
        let mut command = tokio::process::Command::new(self.binary);
        // Like `run`, these wait for stdin when it is left open (the helper closes it).
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.workdir);
        let output = run_bounded(command, HELPER_TIMEOUT).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("opencode {} did not finish within {HELPER_TIMEOUT:?}", args[0]),
            )
        })?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "opencode {} failed ({}): {}",
                args[0],
                output.status,
                tail(&output.stderr)
            )));
        }
        Ok(output)
    }
}

/// The end of a helper's stderr, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = strip_ansi(&String::from_utf8_lossy(stderr));
    let text = text.trim();
    let start = text.len().saturating_sub(500);
    let start = (start..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    text[start..].to_string()
}
