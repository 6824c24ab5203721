//! Command-line arguments of `exec` and the `/execute` body built from them. Credentials come from environment
//! variables only: a token on the command line would end up in shell history and `ps`.

use std::time::Duration;

use serde_json::{Value, json};

pub const USAGE: &str = "usage: unified-worker exec [--url URL] [--provider P] [--repo URL [--branch B]] [--resume ID]
                            [--push-branch B [--pr]] [--token-env VAR] [--workspace DIR] [--model M]
                            [--max-wait SECONDS] [--json] [--cancel-on-exit] [PROMPT | -]

  --url URL           worker or fleet address (default $UNIFIED_WORKER_URL or http://127.0.0.1:5000)
  --provider P        the provider's name (default claude-code; the worker's /health lists them)
  --token-env VAR     send the value of $VAR as the provider credential
  --repo URL          GitHub repository to clone (token from $GITHUB_TOKEN when set)
  --push-branch B     push the changes to branch B afterwards; --pr also opens a pull request
  --max-wait SECONDS  how long to wait for a free worker (default 600)
  --json              print the raw events as JSON lines
  --cancel-on-exit    on Ctrl-C, cancel the job instead of leaving it running
The prompt is the last argument, or stdin when it is absent or '-'. $WORKER_API_TOKEN is sent as the bearer token.";

#[derive(Debug, Default)]
pub struct ExecArgs {
    pub url: String,
    pub provider: String,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub resume: Option<String>,
    pub push_branch: Option<String>,
    pub pull_request: bool,
    pub token_env: Option<String>,
    pub workspace: Option<String>,
    pub model: Option<String>,
    pub max_wait: Duration,
    pub json: bool,
    pub cancel_on_exit: bool,
    pub prompt: Option<String>,
    pub job_id: String,
    pub api_token: Option<String>,
}

impl ExecArgs {
    pub fn parse(raw: Vec<String>) -> Result<Self, String> {
        let mut args = ExecArgs {
            url: std::env::var("UNIFIED_WORKER_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".into()),
            provider: "claude-code".into(),
            max_wait: Duration::from_secs(600),
            job_id: uuid::Uuid::new_v4().to_string(),
            api_token: std::env::var("WORKER_API_TOKEN").ok().filter(|t| !t.is_empty()),
            ..ExecArgs::default()
        };
        let mut it = raw.into_iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--url" => args.url = value("--url")?,
                "--provider" => args.provider = value("--provider")?,
                "--repo" => args.repo = Some(value("--repo")?),
                "--branch" => args.branch = Some(value("--branch")?),
                "--resume" => args.resume = Some(value("--resume")?),
                "--push-branch" => args.push_branch = Some(value("--push-branch")?),
                "--pr" => args.pull_request = true,
                "--token-env" => args.token_env = Some(value("--token-env")?),
                "--workspace" => args.workspace = Some(value("--workspace")?),
                "--model" => args.model = Some(value("--model")?),
                "--max-wait" => {
                    let raw = value("--max-wait")?;
                    let secs: f64 = raw
                        .parse()
                        .map_err(|_| format!("--max-wait: {raw:?} is not a number of seconds"))?;
                    args.max_wait = Duration::try_from_secs_f64(secs).map_err(|_| format!("--max-wait: {raw:?}"))?;
                }
                "--json" => args.json = true,
                "--cancel-on-exit" => args.cancel_on_exit = true,
                "-" if args.prompt.is_none() => {}
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                _ if args.prompt.is_some() => return Err("only one prompt, please (quote it)".into()),
                _ => args.prompt = Some(arg),
            }
        }
        if args.branch.is_some() && args.repo.is_none() {
            return Err("--branch needs --repo".into());
        }
        if args.push_branch.is_some() && args.repo.is_none() {
            return Err("--push-branch needs --repo".into());
        }
        if args.pull_request && args.push_branch.is_none() {
            return Err("--pr needs --push-branch".into());
        }
        args.url = args.url.trim_end_matches('/').to_string();
        Ok(args)
    }

    pub fn request_body(&self) -> Result<Value, String> {
        let mut body = json!({
            "userRequest": self.prompt.clone().unwrap_or_default(),
            "codingAssistantProvider": self.provider,
            "jobId": self.job_id,
        });
        if let Some(var) = &self.token_env {
            let token = std::env::var(var).map_err(|_| format!("--token-env: ${var} is not set"))?;
            body["codingAssistantAccessToken"] = json!(token);
        }
        if let Some(id) = &self.resume {
            body["resumeSessionId"] = json!(id);
        }
        if let Some(workspace) = &self.workspace {
            body["workspace"] = json!(workspace);
        }
        if let Some(model) = &self.model {
            body["providerOptions"] = json!({ "model": model });
        }
        if let Some(repo) = &self.repo {
            let mut github = json!({ "repoUrl": repo });
            if let Some(branch) = &self.branch {
                github["branch"] = json!(branch);
            }
            if let Ok(token) = std::env::var("GITHUB_TOKEN")
                && !token.is_empty()
            {
                github["accessToken"] = json!(token);
            }
            if let Some(push) = &self.push_branch {
                // The commit message and the pull request title are left to the worker's defaults (the prompt's
                // first line with text on it).
                let mut push = json!({ "branch": push });
                if self.pull_request {
                    push["pullRequest"] = json!({});
                }
                github["push"] = push;
            }
            body["github"] = github;
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ExecArgs, String> {
        ExecArgs::parse(args.iter().map(|s| s.to_string()).collect())
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
    }

    #[test]
    fn bad_usage_is_explained() {
        assert!(parse(&["--pr", "x"]).unwrap_err().contains("--push-branch"));
        assert!(parse(&["--bogus"]).unwrap_err().contains("unknown option"));
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
