//! Command-line arguments of `exec` and the `/execute` body built from them. Credentials come from environment
//! variables only: a token on the command line would end up in shell history and `ps`.

use std::time::Duration;

use serde_json::{Value, json};

/// What `exec` and `acp` both ask a job for: the worker, the provider with its model and credential, the
/// repository.
#[derive(Debug, Clone, clap::Args)]
pub struct JobTarget {
    /// Worker or fleet address.
    #[arg(long, env = "UNIFIED_WORKER_URL", default_value = "http://127.0.0.1:5000")]
    pub url: String,
    /// The provider's name (the worker's /health lists them).
    #[arg(long, default_value = "claude-code")]
    pub provider: String,
    /// GitHub repository to clone (token from $GITHUB_TOKEN when set).
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch to check out (default: the remote's default branch).
    #[arg(long, requires = "repo")]
    pub branch: Option<String>,
    /// Send the value of this environment variable as the provider credential.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Model to ask the provider for.
    #[arg(long)]
    pub model: Option<String>,
}

/// The credentials a `JobTarget` names, read from the environment.
#[derive(Debug)]
pub struct Credentials {
    provider: Option<String>,
    github: Option<String>,
}

impl JobTarget {
    pub fn credentials(&self) -> Result<Credentials, String> {
        let provider = match &self.token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| format!("--token-env: ${var} is not set"))?),
            None => None,
        };
        Ok(Credentials {
            provider,
            github: std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty()),
        })
    }

    /// The request's provider, credential, model and `github` fields; what `github.push` holds is each client's own.
    pub fn fill(&self, body: &mut Value, credentials: &Credentials) {
        body["codingAssistantProvider"] = json!(self.provider);
        if let Some(credential) = &credentials.provider {
            body["codingAssistantAccessToken"] = json!(credential);
        }
        if let Some(model) = &self.model {
            body["providerOptions"] = json!({ "model": model });
        }
        if let Some(repo) = &self.repo {
            let mut github = json!({ "repoUrl": repo });
            if let Some(branch) = &self.branch {
                github["branch"] = json!(branch);
            }
            if let Some(token) = &credentials.github {
                github["accessToken"] = json!(token);
            }
            body["github"] = github;
        }
    }
}

/// The options of `exec`; the subcommand's help text is in `main.rs`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("approval_mode").multiple(true))]
pub struct ExecArgs {
    #[command(flatten)]
    pub target: JobTarget,
    /// Continue this provider session.
    #[arg(long)]
    pub resume: Option<String>,
    /// Push the changes to this new branch afterwards.
    #[arg(long, requires = "repo")]
    pub push_branch: Option<String>,
    /// Also open a pull request for the pushed branch.
    #[arg(long = "pr", requires = "push_branch")]
    pub pull_request: bool,
    /// Sub-folder of the worker's WORKSPACE_DIR to run in.
    #[arg(long)]
    pub workspace: Option<String>,
    /// How long to wait for a free worker, in seconds.
    #[arg(long = "max-wait", value_name = "SECONDS", default_value = "600", value_parser = seconds)]
    pub max_wait: Duration,
    /// Print the raw events as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Hold a conversation: after each turn the next message is read from the terminal (or, with --json, a line
    /// of stdin); Ctrl-C during a turn interrupts it, Ctrl-D (end of input) closes the conversation.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: how long the worker waits for a message after a turn before it closes the conversation.
    #[arg(long, value_name = "SECONDS", requires = "chat", value_parser = clap::value_parser!(u64).range(1..=2_147_483_647))]
    pub idle: Option<u64>,
    /// On Ctrl-C, cancel the job instead of leaving it running.
    #[arg(long)]
    pub cancel_on_exit: bool,
    /// Ask before each tool call: the questions are shown and answered here (on a terminal), or read as lines
    /// from stdin with --json.
    #[arg(long, group = "approval_mode")]
    pub approvals: bool,
    /// Run with approvals and answer every question "allow once" (or else "allow always").
    #[arg(long, group = "approval_mode", conflicts_with = "reject_all")]
    pub approve_all: bool,
    /// Run with approvals and answer every question "reject once" (or else "reject always").
    #[arg(long, group = "approval_mode")]
    pub reject_all: bool,
    /// How long the worker waits for an answer before --on-timeout applies (worker default 300).
    #[arg(long, value_name = "SECONDS", requires = "approval_mode",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub approval_timeout: Option<u64>,
    /// What the worker decides when no answer came in time (worker default: reject).
    #[arg(long, value_enum, requires = "approval_mode")]
    pub on_timeout: Option<OnTimeout>,
    /// The prompt ('-' or nothing: read it from stdin).
    #[arg(value_name = "PROMPT")]
    pub prompt: Option<String>,
    #[arg(skip = uuid::Uuid::new_v4().to_string())]
    pub job_id: String,
    #[arg(skip = std::env::var("WORKER_API_TOKEN").ok().filter(|t| !t.is_empty()))]
    pub api_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnTimeout {
    Allow,
    Reject,
}

/// An answer given to every question without asking anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoAnswer {
    ApproveAll,
    RejectAll,
}

fn seconds(raw: &str) -> Result<Duration, String> {
    let secs: f64 = raw.parse().map_err(|_| format!("{raw:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{raw:?} is not a valid duration"))
}

impl ExecArgs {
    /// What the parser leaves to do: the URL without a trailing slash, `-` as "read stdin".
    pub fn normalize(mut self) -> Self {
        self.target.url = self.target.url.trim_end_matches('/').to_string();
        if self.prompt.as_deref() == Some("-") {
            self.prompt = None;
        }
        self
    }

    /// Whether the job runs with `approvals` (asked for, or implied by an automatic answer).
    pub fn approvals_enabled(&self) -> bool {
        self.approvals || self.approve_all || self.reject_all
    }

    pub fn auto_answer(&self) -> Option<AutoAnswer> {
        if self.approve_all {
            Some(AutoAnswer::ApproveAll)
        } else if self.reject_all {
            Some(AutoAnswer::RejectAll)
        } else {
            None
        }
    }

    pub fn request_body(&self) -> Result<Value, String> {
        let mut body = json!({
            "userRequest": self.prompt.clone().unwrap_or_default(),
            "jobId": self.job_id,
        });
        self.target.fill(&mut body, &self.target.credentials()?);
        if let Some(id) = &self.resume {
            body["resumeSessionId"] = json!(id);
        }
        if let Some(workspace) = &self.workspace {
            body["workspace"] = json!(workspace);
        }
        if let Some(push) = &self.push_branch {
            // `--push-branch` needs `--repo`, so `github` is there. The commit message and the pull request title
            // are left to the worker's defaults (the prompt's first line with text on it).
            let mut push = json!({ "branch": push });
            if self.pull_request {
                push["pullRequest"] = json!({});
            }
            body["github"]["push"] = push;
        }
        if self.chat {
            body["conversation"] = match self.idle {
                Some(secs) => json!({ "idleSeconds": secs }),
                None => json!({}),
            };
        }
        if self.approvals_enabled() {
            // Unset fields are left out so that the worker's defaults apply.
            let mut approvals = json!({ "mode": "client" });
            if let Some(secs) = self.approval_timeout {
                approvals["timeoutSeconds"] = json!(secs);
            }
            if let Some(on_timeout) = self.on_timeout {
                approvals["onTimeout"] = json!(match on_timeout {
                    OnTimeout::Allow => "allow",
                    OnTimeout::Reject => "reject",
                });
            }
            body["approvals"] = approvals;
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Exec {
        #[command(flatten)]
        args: ExecArgs,
    }

    fn parse(args: &[&str]) -> Result<ExecArgs, String> {
        use clap::Parser;
        Exec::try_parse_from(std::iter::once("exec").chain(args.iter().copied()))
            .map(|e| e.args.normalize())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn builds_the_request_from_flags() {
        let args = parse(&[
            "--provider",
            "copilot",
            "--repo",
            "https://github.com/o/r",
            "--push-branch",
            "b",
            "--pr",
            "fix it",
        ])
        .unwrap();
        let body = args.request_body().unwrap();
        assert_eq!(body["codingAssistantProvider"], "copilot");
        assert_eq!(body["github"]["push"]["branch"], "b");
        assert!(body["github"]["push"]["pullRequest"].is_object());
        assert_eq!(body["jobId"], args.job_id.as_str());
        assert!(body.get("approvals").is_none(), "no approvals unless asked for");
    }

    #[test]
    fn approval_flags_shape_the_approvals_field() {
        let body = |args: &[&str]| parse(args).unwrap().request_body().unwrap();
        assert_eq!(body(&["--approvals", "x"])["approvals"], json!({"mode": "client"}));
        assert_eq!(
            body(&["--approvals", "--approval-timeout", "60", "--on-timeout", "allow", "x"])["approvals"],
            json!({"mode": "client", "timeoutSeconds": 60, "onTimeout": "allow"})
        );
        let auto = parse(&["--approve-all", "x"]).unwrap();
        assert_eq!(auto.auto_answer(), Some(AutoAnswer::ApproveAll));
        assert_eq!(auto.request_body().unwrap()["approvals"]["mode"], "client");
        let auto = parse(&["--reject-all", "--on-timeout", "reject", "x"]).unwrap();
        assert_eq!(auto.auto_answer(), Some(AutoAnswer::RejectAll));
        assert_eq!(auto.request_body().unwrap()["approvals"]["onTimeout"], "reject");
        assert_eq!(parse(&["--approvals", "x"]).unwrap().auto_answer(), None);
        assert!(
            parse(&["--approvals", "--approve-all", "x"])
                .unwrap()
                .approvals_enabled()
        );
    }

    #[test]
    fn approval_flags_are_checked() {
        assert!(
            parse(&["--approve-all", "--reject-all", "x"])
                .unwrap_err()
                .contains("--reject-all")
        );
        assert!(
            parse(&["--approval-timeout", "5", "x"])
                .unwrap_err()
                .contains("--approvals")
        );
        assert!(
            parse(&["--on-timeout", "allow", "x"])
                .unwrap_err()
                .contains("--approvals")
        );
        assert!(parse(&["--approvals", "--on-timeout", "maybe", "x"]).is_err());
        assert!(parse(&["--approvals", "--approval-timeout", "0", "x"]).is_err());
        assert!(parse(&["--approvals", "--approval-timeout", "86401", "x"]).is_err());
    }

    #[test]
    fn bad_usage_is_explained() {
        assert!(parse(&["--pr", "x"]).unwrap_err().contains("--push-branch"));
        assert!(parse(&["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(parse(&["--max-wait", "soon", "x"]).unwrap_err().contains("seconds"));
        assert_eq!(parse(&["--url", "http://h:1/", "-"]).unwrap().target.url, "http://h:1");
        assert_eq!(parse(&["-"]).unwrap().prompt, None);
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&["--url"]).is_err());
        assert!(
            parse(&["--token-env", "UNIFIED_WORKER_SURELY_UNSET", "x"])
                .unwrap()
                .request_body()
                .is_err()
        );
    }
}
