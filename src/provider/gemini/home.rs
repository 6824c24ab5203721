//! The CLI's own home for one job (`GEMINI_CLI_HOME`, inside the job's private folder): the user settings the
//! worker runs it with, and the project folder where it keeps this workspace's conversations.
//!
//! Gemini CLI 0.61.0 files a workspace's state under `~/.gemini/tmp/<project>/`, where `<project>` is whichever
//! folder there holds a `.project_root` file naming the workspace (otherwise it makes one up from the folder's
//! name). The worker names that folder itself, so where a session lives is known before the CLI starts: a
//! session restored there is found, whatever the workspace was called on the replica that ran it.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};

/// The project folder's name in this private home; the `.project_root` inside it ties it to the workspace.
const PROJECT: &str = "workspace";

pub struct CliHome {
    root: PathBuf,
}

impl CliHome {
    pub fn new(private_dir: &Path) -> Self {
        CliHome {
            root: private_dir.to_path_buf(),
        }
    }

    /// The value of `GEMINI_CLI_HOME`: the CLI keeps everything under `<root>/.gemini`. `HOME` stays the
    /// worker's, so the agent's own tools (git, npm) find their usual configuration.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the CLI writes temporary files, its full error reports among them (they hold the conversation):
    /// inside the private folder they go with the job instead of staying behind in the machine-wide `/tmp`.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn project(&self) -> PathBuf {
        self.root.join(".gemini").join("tmp").join(PROJECT)
    }

    /// The conversations of this workspace: `session-<time>-<first 8 characters of the id>.jsonl`, one JSON
    /// record per line (plus a folder per session for its subagents' conversations). Each job has a fresh home,
    /// so this folder holds the job's one session and nothing else: it is what a session store carries.
    pub fn chats(&self) -> PathBuf {
        self.project().join("chats")
    }

    /// Writes the settings (with the job's MCP servers, whose env and headers may hold credentials: the file is
    /// private) and ties the project folder to the workspace.
    pub async fn write(&self, workdir: &Path, max_attempts: Option<u32>, mcp_servers: Option<Value>) -> io::Result<()> {
        let dot_gemini = self.root.join(".gemini");
        tokio::fs::create_dir_all(self.project()).await?;
        tokio::fs::create_dir_all(self.tmp()).await?;
        let mut settings = settings(max_attempts);
        if let Some(servers) = mcp_servers {
            settings["mcpServers"] = servers;
        }
        let settings = serde_json::to_vec_pretty(&settings).map_err(io::Error::other)?;
        crate::provider::private_files::write_private(&dot_gemini.join("settings.json"), &settings).await?;
        // The CLI compares it with its working directory as the kernel reports it, symlinks resolved.
        let workdir = tokio::fs::canonicalize(workdir).await?;
        tokio::fs::write(
            self.project().join(".project_root"),
            workdir.to_string_lossy().as_bytes(),
        )
        .await
    }
}

/// The user settings: API-key authentication (with only a base URL set the CLI would pick its gateway mode,
/// which headless runs refuse), and none of its traffic besides the model API: no usage statistics, no
/// telemetry, no update checks. `maxAttempts` stays the CLI's own default (10 tries, minutes on a 429) unless
/// the worker is told otherwise.
fn settings(max_attempts: Option<u32>) -> Value {
    let mut general = json!({ "enableAutoUpdate": false, "enableAutoUpdateNotification": false });
    if let Some(attempts) = max_attempts {
        general["maxAttempts"] = json!(attempts);
    }
    json!({
        "security": { "auth": { "selectedType": "gemini-api-key" } },
        "privacy": { "usageStatisticsEnabled": false },
        "telemetry": { "enabled": false },
        "general": general,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_home_holds_the_settings_and_names_the_workspace() {
        let private = tempfile::tempdir().unwrap();
        let workspace = tempfile::tempdir().unwrap();
        let home = CliHome::new(private.path());

        home.write(workspace.path(), Some(1), Some(json!({"docs": {"command": "docs-server"}})))
            .await
            .unwrap();

        let settings: Value =
            serde_json::from_slice(&std::fs::read(private.path().join(".gemini/settings.json")).unwrap()).unwrap();
        assert_eq!(settings["security"]["auth"]["selectedType"], "gemini-api-key");
        assert_eq!(settings["privacy"]["usageStatisticsEnabled"], false);
        assert_eq!(settings["telemetry"]["enabled"], false);
        assert_eq!(settings["general"]["enableAutoUpdate"], false);
        assert_eq!(settings["general"]["maxAttempts"], 1);
        assert_eq!(settings["mcpServers"]["docs"]["command"], "docs-server");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(private.path().join(".gemini/settings.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the settings may hold credentials");
        let marker = std::fs::read_to_string(private.path().join(".gemini/tmp/workspace/.project_root")).unwrap();
        assert_eq!(Path::new(&marker), workspace.path().canonicalize().unwrap());
        assert_eq!(home.chats(), private.path().join(".gemini/tmp/workspace/chats"));
        assert!(home.tmp().is_dir());
    }

    #[test]
    fn retries_are_the_clis_own_unless_set() {
        assert!(settings(None)["general"].get("maxAttempts").is_none());
        assert_eq!(settings(Some(3))["general"]["maxAttempts"], 3);
    }
}
