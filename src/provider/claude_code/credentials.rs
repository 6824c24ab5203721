//! How a credential reaches Claude Code. The CLI itself does not look at token prefixes, so the worker routes:
//! `sk-ant-oat…` is an OAuth token, anything else an API key (gateways use their own key formats), and a
//! credentials object becomes the CLI's credentials file for the run. Without a request credential the worker's
//! own is used: its variables, an existing credentials file, or the one configured through
//! `CLAUDE_CODE_CREDENTIALS_JSON` / `CLAUDE_CODE_CREDENTIALS_SECRET`.

use std::path::Path;

use serde_json::Value;

use crate::{
    error::ApiError,
    event::{ErrorCode, Failure},
    provider::{
        Cleanup,
        env::{get_env, set_env, worker_var},
        input,
        private_files::write_private,
    },
    secret::{Secret, tokens_in_json},
};

/// The variables a credential can arrive in; a request credential replaces all of them, it is not passed
/// alongside the worker's own.
const CREDENTIAL_VARS: &[&str] = &["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"];
const CREDENTIALS_FILE: &str = ".credentials.json";

#[derive(Debug)]
pub(super) enum Credential {
    OauthToken(Secret),
    ApiKey(Secret),
    /// The content of Claude Code's credentials file (`{"claudeAiOauth":…}`), with the token strings inside it so
    /// that they are redacted on their own too.
    File { json: Secret, tokens: Vec<Secret> },
}

impl Credential {
    pub(super) fn parse(value: Value) -> Result<Self, ApiError> {
        match value {
            Value::String(raw) => {
                let token = input::token(&raw)?;
                Ok(if token.expose().starts_with("sk-ant-oat") {
                    Credential::OauthToken(token)
                } else {
                    Credential::ApiKey(token)
                })
            }
            value @ Value::Object(_) => {
                let has_access_token = value["claudeAiOauth"]["accessToken"].as_str().is_some_and(|t| !t.is_empty());
                let tokens: Vec<Secret> = tokens_in_json(&value).into_iter().map(Secret::new).collect();
                if !has_access_token || tokens.is_empty() {
                    return Err(ApiError::invalid(
                        input::CREDENTIAL_FIELD,
                        "a credentials object must hold claudeAiOauth.accessToken",
                    ));
                }
                Ok(Credential::File {
                    json: Secret::new(value.to_string()),
                    tokens,
                })
            }
            _ => Err(input::not_a(&"a string or a credentials object")),
        }
    }

    pub(super) fn secrets(&self) -> Vec<&str> {
        match self {
            Credential::OauthToken(token) | Credential::ApiKey(token) => vec![token.expose()],
            Credential::File { json, tokens } => std::iter::once(json.expose())
                .chain(tokens.iter().map(Secret::expose))
                .collect(),
        }
    }
}

/// Puts the run's credential where the CLI looks for it; the returned cleanup puts back a credentials file the
/// request's replaced.
pub(super) async fn route(
    credential: Option<&Credential>,
    env: &mut Vec<(String, String)>,
    config_dir: &Path,
) -> Result<Cleanup, Failure> {
    let file = config_dir.join(CREDENTIALS_FILE);
    let Some(credential) = credential else {
        return worker_credentials(env, &file).await.map(|()| Cleanup::default());
    };
    env.retain(|(k, _)| !CREDENTIAL_VARS.contains(&k.as_str()));
    match credential {
        Credential::OauthToken(token) => set_env(env, "CLAUDE_CODE_OAUTH_TOKEN", token.expose()),
        Credential::ApiKey(token) => set_env(env, "ANTHROPIC_API_KEY", token.expose()),
        Credential::File { json, .. } => {
            let previous = tokio::fs::read(&file).await.ok();
            write_file(&file, json.expose()).await?;
            return Ok(Cleanup::restore_file(file, previous));
        }
    }
    Ok(Cleanup::default())
}

async fn worker_credentials(env: &[(String, String)], file: &Path) -> Result<(), Failure> {
    if CREDENTIAL_VARS.iter().any(|k| get_env(env, k).is_some()) || tokio::fs::metadata(file).await.is_ok() {
        return Ok(());
    }
    let configured = match (
        worker_var("CLAUDE_CODE_CREDENTIALS_JSON"),
        worker_var("CLAUDE_CODE_CREDENTIALS_SECRET"),
    ) {
        (Some(json), _) => Some(json),
        (None, Some(path)) => tokio::fs::read_to_string(path).await.ok(),
        (None, None) => None,
    };
    match configured.filter(|c| !c.trim().is_empty()) {
        // The worker's own file stays after the job, as `entrypoint.sh` would have written it.
        Some(json) => write_file(file, &json).await,
        None => Err(Failure::new(
            ErrorCode::AuthFailed,
            "no Claude Code credentials: send codingAssistantAccessToken or configure the worker \
             (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, CLAUDE_CODE_CREDENTIALS_JSON or CLAUDE_CODE_CREDENTIALS_SECRET)",
        )),
    }
}

async fn write_file(path: &Path, json: &str) -> Result<(), Failure> {
    write_private(path, json.as_bytes()).await.map_err(|e| {
        Failure::new(
            ErrorCode::Internal,
            format!("could not write Claude Code credentials: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tokens_are_routed_by_their_prefix_and_objects_need_an_access_token() {
        assert!(matches!(
            Credential::parse(json!("sk-ant-oat01-abcdefgh")),
            Ok(Credential::OauthToken(_))
        ));
        assert!(matches!(
            Credential::parse(json!("gateway-key-1234")),
            Ok(Credential::ApiKey(_))
        ));
        let file = Credential::parse(json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefgh"}})).unwrap();
        assert!(file.secrets().contains(&"sk-ant-oat01-abcdefgh"));
        assert!(Credential::parse(json!({"other": {"accessToken": "sk-ant-oat01-abcdefgh"}})).is_err());
        assert!(matches!(
            Credential::parse(json!(42)),
            Err(ApiError::InvalidJson { .. })
        ));
    }

    #[tokio::test]
    async fn a_request_credentials_file_is_undone_after_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CREDENTIALS_FILE);
        std::fs::write(&file, "worker's own").unwrap();
        let credential = Credential::parse(json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefgh"}})).unwrap();
        let mut env = vec![("ANTHROPIC_API_KEY".to_string(), "worker-key-123".to_string())];

        let cleanup = route(Some(&credential), &mut env, dir.path()).await.unwrap();

        assert!(env.is_empty(), "the request's credential replaces the worker's");
        assert!(std::fs::read_to_string(&file).unwrap().contains("sk-ant-oat01-abcdefgh"));
        cleanup.run().await;
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "worker's own");
    }
}
