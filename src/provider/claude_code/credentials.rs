//! How a credential reaches Claude Code. The CLI itself does not look at token prefixes, so the worker routes:
//! `sk-ant-oat…` is an OAuth token, anything else an API key (gateways use their own key formats), and a
//! credentials object becomes the CLI's credentials file for the run. Without a request credential the worker's
//! own is used: its variables, an existing credentials file, or the one configured through
//! `CLAUDE_CODE_CREDENTIALS_JSON` / `CLAUDE_CODE_CREDENTIALS_SECRET`.
//!
//! With the model-API broker on, a credentials object whose access token outlives the job is not written as a
//! file the agent could read: the CLI gets the access token as `CLAUDE_CODE_OAUTH_TOKEN`, which the broker then
//! swaps for its placeholder. One that expires sooner stays a file, for the CLI to refresh.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

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
    broker_until: Option<SystemTime>,
) -> Result<Cleanup, Failure> {
    let file = config_dir.join(CREDENTIALS_FILE);
    let Some(credential) = credential else {
        return worker_credentials(env, &file, broker_until).await.map(|()| Cleanup::default());
    };
    env.retain(|(k, _)| !CREDENTIAL_VARS.contains(&k.as_str()));
    match credential {
        Credential::OauthToken(token) => set_env(env, "CLAUDE_CODE_OAUTH_TOKEN", token.expose()),
        Credential::ApiKey(token) => set_env(env, "ANTHROPIC_API_KEY", token.expose()),
        Credential::File { json, .. } => {
            if let Some(token) = brokerable_token(json.expose(), broker_until) {
                set_env(env, "CLAUDE_CODE_OAUTH_TOKEN", token);
                return Ok(Cleanup::default());
            }
            let previous = tokio::fs::read(&file).await.ok();
            write_file(&file, json.expose()).await?;
            return Ok(Cleanup::restore_file(file, previous));
        }
    }
    Ok(Cleanup::default())
}

/// The access token of credentials file `json` if the broker can hold it for the run: it is valid until
/// `broker_until` (or says no expiry). Expiring sooner, it needs the refresh only the CLI does.
fn brokerable_token(json: &str, broker_until: Option<SystemTime>) -> Option<String> {
    let until = broker_until?;
    let oauth = serde_json::from_str::<Value>(json).ok()?.get("claudeAiOauth")?.clone();
    let token = oauth.get("accessToken")?.as_str().filter(|t| !t.trim().is_empty())?.to_string();
    let lasts = match oauth.get("expiresAt") {
        None | Some(Value::Null) => true,
        Some(expires) => {
            let until_ms = until.duration_since(UNIX_EPOCH).ok()?.as_millis();
            expires.as_u64().is_some_and(|ms| u128::from(ms) >= until_ms)
        }
    };
    lasts.then_some(token)
}

async fn worker_credentials(
    env: &mut Vec<(String, String)>,
    file: &Path,
    broker_until: Option<SystemTime>,
) -> Result<(), Failure> {
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
        Some(json) => match brokerable_token(&json, broker_until) {
            Some(token) => {
                set_env(env, "CLAUDE_CODE_OAUTH_TOKEN", token);
                Ok(())
            }
            // The worker's own file stays after the job, as `entrypoint.sh` would have written it.
            None => write_file(file, &json).await,
        },
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

        let cleanup = route(Some(&credential), &mut env, dir.path(), None).await.unwrap();

        assert!(env.is_empty(), "the request's credential replaces the worker's");
        assert!(std::fs::read_to_string(&file).unwrap().contains("sk-ant-oat01-abcdefgh"));
        cleanup.run().await;
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "worker's own");
    }

    #[tokio::test]
    async fn with_the_broker_on_a_token_that_outlives_the_job_is_no_file_and_one_that_expires_sooner_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CREDENTIALS_FILE);
        let until = SystemTime::now() + std::time::Duration::from_secs(3600);
        let in_ms = |secs: u64| (SystemTime::now() + std::time::Duration::from_secs(secs)).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let lasting = Credential::parse(json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-lasting",
            "refreshToken": "sk-ant-ort01-r", "expiresAt": in_ms(7200)}}))
        .unwrap();
        let mut env = Vec::new();

        let _nothing_to_undo = route(Some(&lasting), &mut env, dir.path(), Some(until)).await.unwrap();

        assert_eq!(get_env(&env, "CLAUDE_CODE_OAUTH_TOKEN"), Some("sk-ant-oat01-lasting"));
        assert!(!file.exists(), "no file for the agent to read");

        let expiring = Credential::parse(json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-expiring",
            "expiresAt": in_ms(600)}}))
        .unwrap();
        let mut env = Vec::new();
        let cleanup = route(Some(&expiring), &mut env, dir.path(), Some(until)).await.unwrap();
        assert!(env.is_empty());
        assert!(std::fs::read_to_string(&file).unwrap().contains("sk-ant-oat01-expiring"));
        cleanup.run().await;

        // Without the broker the file is written whatever its expiry.
        let mut env = Vec::new();
        let _undone_with_the_folder = route(Some(&lasting), &mut env, dir.path(), None).await.unwrap();
        assert!(file.exists() && env.is_empty());
    }
}
