//! Codex behind the worker's model-API broker. Its endpoint is not a variable but the `base_url` of the model
//! provider its `config.toml` selects (`model_provider`), with the key in that provider's `env_key` variable: the
//! run's own copy of the file is pointed at the broker, and every variable that held the key gets the placeholder.
//! Codex's built-in `openai` provider cannot be given another `base_url` by the table, so a run that uses it gets
//! a provider of the worker's own in its place, one that speaks the same Responses API through the broker.

use std::path::Path;

use serde_json::Value;
use toml_edit::{DocumentMut, InlineTable, value};

use super::KEY_VARS;
use crate::{
    broker::{BrokerAddress, ModelApi},
    event::{ErrorCode, Failure},
    provider::env::{get_env, set_env},
};

/// The worker's stand-in for the built-in `openai` provider, which Codex does not let a configuration change.
const STAND_IN: &str = "openai-brokered";
/// The operator's setting for the real OpenAI API; like `OPENAI_BASE_URL`, it ends in `/v1`.
pub(super) const UPSTREAM_VAR: &str = "OPENAI_UPSTREAM_URL";
const OPENAI_API: &str = "https://api.openai.com/v1";

/// The selected provider's endpoint and key variable, and the configuration with the broker as its endpoint.
#[derive(Debug, PartialEq)]
struct Rewritten {
    config: String,
    upstream: String,
    env_key: String,
}

fn selected(document: &DocumentMut) -> String {
    document.get("model_provider").and_then(|v| v.as_str()).unwrap_or("openai").to_string()
}

fn rewrite(config: &str, base_url: &str) -> Option<Rewritten> {
    let mut document: DocumentMut = config.parse().ok()?;
    let name = selected(&document);
    let provider = document
        .get_mut("model_providers")?
        .as_table_like_mut()?
        .get_mut(&name)?
        .as_table_like_mut()?;
    let upstream = provider.get("base_url")?.as_str()?.to_string();
    let env_key = provider.get("env_key")?.as_str()?.to_string();
    provider.insert("base_url", value(base_url));
    Some(Rewritten {
        config: document.to_string(),
        upstream,
        env_key,
    })
}

/// For a configuration that uses the built-in `openai` provider: the same configuration with the stand-in
/// selected, and the OpenAI API it would have called (`openai_base_url`, else the vendor's).
///
/// The stand-in is named `OpenAI` (Codex treats a provider of that name as OpenAI's own) and reads the key from
/// `CODEX_API_KEY` like the built-in one does for `exec`. It sends the organisation and project headers the
/// built-in one sends, and never tries the built-in one's WebSocket transport, which the broker does not carry.
fn stand_in(config: &str, base_url: &str) -> Option<(String, String)> {
    let mut document: DocumentMut = config.parse().ok()?;
    if selected(&document) != "openai" {
        return None;
    }
    let upstream = document
        .remove("openai_base_url")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| OPENAI_API.to_string());
    let mut headers = InlineTable::new();
    headers.insert("OpenAI-Organization", "OPENAI_ORGANIZATION".into());
    headers.insert("OpenAI-Project", "OPENAI_PROJECT".into());
    let mut provider = InlineTable::new();
    provider.insert("name", "OpenAI".into());
    provider.insert("base_url", base_url.into());
    provider.insert("wire_api", "responses".into());
    provider.insert("env_key", KEY_VARS[0].into());
    provider.insert("env_http_headers", headers.into());
    provider.insert("supports_websockets", false.into());
    document["model_provider"] = value(STAND_IN);
    let providers = document
        .entry("model_providers")
        .or_insert(toml_edit::table())
        .as_table_like_mut()?;
    providers.insert(STAND_IN, value(provider));
    Some((document.to_string(), upstream))
}

pub(super) async fn route(env: &mut Vec<(String, String)>, broker: &BrokerAddress<'_>) -> Result<Option<ModelApi>, Failure> {
    let Some(home) = get_env(env, "CODEX_HOME").map(std::path::PathBuf::from) else {
        return Ok(None);
    };
    let path = home.join("config.toml");
    let config = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    if let Some(rewritten) = rewrite(&config, broker.base_url) {
        return custom(env, &path, rewritten, broker.placeholder).await;
    }
    built_in(env, &home, &config, broker).await
}

/// A provider of the operator's `config.toml`: its `base_url` is the upstream, its `env_key` holds the key.
async fn custom(
    env: &mut Vec<(String, String)>,
    path: &Path,
    rewritten: Rewritten,
    placeholder: &str,
) -> Result<Option<ModelApi>, Failure> {
    let Some(credential) = get_env(env, &rewritten.env_key).map(String::from) else {
        return Ok(None);
    };
    super::write(path, rewritten.config.as_bytes()).await?;
    replace_everywhere(env, &credential, placeholder);
    if rewritten.upstream.trim().is_empty() {
        return Err(Failure::new(
            ErrorCode::Internal,
            "the Codex model provider's base_url is empty",
        ));
    }
    Ok(Some(ModelApi {
        credential,
        upstream: rewritten.upstream,
    }))
}

/// The built-in `openai` provider with an API key, from the variables or from an `auth.json` that holds only a
/// key. A ChatGPT sign-in (tokens the CLI refreshes itself) keeps its path.
async fn built_in(
    env: &mut Vec<(String, String)>,
    home: &Path,
    config: &str,
    broker: &BrokerAddress<'_>,
) -> Result<Option<ModelApi>, Failure> {
    let Some((config, configured)) = stand_in(config, broker.base_url) else {
        return Ok(None);
    };
    let auth_path = home.join("auth.json");
    let from_env = KEY_VARS.iter().find_map(|var| get_env(env, var)).map(String::from);
    let credential = match from_env {
        Some(key) => key,
        None => {
            let Ok(auth) = tokio::fs::read(&auth_path).await else {
                return Ok(None);
            };
            let Ok(auth) = serde_json::from_slice::<Value>(&auth) else {
                return Ok(None);
            };
            match (&auth["OPENAI_API_KEY"], &auth["tokens"]) {
                (Value::String(key), Value::Null) if !key.trim().is_empty() => key.clone(),
                _ => return Ok(None),
            }
        }
    };
    super::write(&home.join("config.toml"), config.as_bytes()).await?;
    // An `auth.json` holding the key would still hand it to the agent; the variable is where the stand-in looks.
    if tokio::fs::try_exists(&auth_path).await.unwrap_or(false) {
        tokio::fs::remove_file(&auth_path).await.map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("could not remove the run's auth.json: {e}"),
            )
        })?;
    }
    replace_everywhere(env, &credential, broker.placeholder);
    set_env(env, KEY_VARS[0], broker.placeholder);
    let upstream = broker.upstream(UPSTREAM_VAR).map(String::from).unwrap_or(configured);
    Ok(Some(ModelApi { credential, upstream }))
}

/// The key went in under several names (`CODEX_API_KEY` too); none of them may keep it. A key variable that holds
/// another key (the worker's OpenAI key beside a gateway provider's own) is dropped: the run calls only the broker.
fn replace_everywhere(env: &mut Vec<(String, String)>, credential: &str, placeholder: &str) {
    for (_, v) in env.iter_mut() {
        if *v == credential {
            *v = placeholder.to_string();
        }
    }
    env.retain(|(k, v)| !KEY_VARS.contains(&k.as_str()) || v == placeholder);
}
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const CONFIG: &str = r#"model_provider = "mock"
model = "gpt-5.5"

[model_providers.mock]
name = "Mock"
base_url = "http://127.0.0.1:4000/v1"
wire_api = "responses"
env_key = "OPENAI_API_KEY"
"#;

    #[test]
    fn the_selected_provider_points_at_the_broker_and_the_rest_stays() {
        let rewritten = rewrite(CONFIG, "http://127.0.0.1:5555").unwrap();

        assert_eq!(rewritten.upstream, "http://127.0.0.1:4000/v1");
        assert_eq!(rewritten.env_key, "OPENAI_API_KEY");
        assert_eq!(
            rewritten.config,
            CONFIG.replace("http://127.0.0.1:4000/v1", "http://127.0.0.1:5555")
        );
    }

    #[test]
    fn an_inline_provider_table_is_rewritten_too_and_the_built_in_provider_is_left_alone() {
        let inline = "model_provider = \"gw\"\nmodel_providers.gw = { base_url = \"https://gw.example/v1\", env_key = \"GW_KEY\" }\n";
        let rewritten = rewrite(inline, "http://127.0.0.1:1").unwrap();
        assert_eq!(rewritten.upstream, "https://gw.example/v1");
        assert!(rewritten.config.contains("base_url = \"http://127.0.0.1:1\""), "{}", rewritten.config);

        assert_eq!(rewrite("model = \"gpt-5\"\n", "http://127.0.0.1:1"), None);
        assert_eq!(rewrite("model_provider = \"mock\"\n[model_providers.mock]\nbase_url = \"x\"\n", "u"), None);
        assert_eq!(rewrite("not toml = = =", "u"), None);
    }

    #[tokio::test]
    async fn the_key_leaves_every_variable_and_the_file_names_the_broker() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("config.toml"), CONFIG).unwrap();
        let mut env = vec![
            ("CODEX_HOME".to_string(), home.path().display().to_string()),
            ("OPENAI_API_KEY".to_string(), "sk-real-key-1234".to_string()),
            ("CODEX_API_KEY".to_string(), "sk-real-key-1234".to_string()),
        ];

        let upstreams = HashMap::new();
        let broker = BrokerAddress::for_tests("http://127.0.0.1:5555", "uwb-placeholder", &upstreams);
        let api = route(&mut env, &broker).await.unwrap().unwrap();

        assert_eq!(api.credential, "sk-real-key-1234");
        assert_eq!(api.upstream, "http://127.0.0.1:4000/v1");
        assert!(!format!("{env:?}").contains("sk-real"), "{env:?}");
        assert_eq!(get_env(&env, "OPENAI_API_KEY"), Some("uwb-placeholder"));
        let written = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
        assert!(written.contains("http://127.0.0.1:5555") && !written.contains("4000"));
    }

    #[tokio::test]
    async fn an_openai_key_beside_a_gateway_providers_own_is_not_passed() {
        let home = tempfile::tempdir().unwrap();
        let config = CONFIG.replace("OPENAI_API_KEY", "CODEX_GATEWAY_KEY");
        std::fs::write(home.path().join("config.toml"), config).unwrap();
        let mut env = vec![
            ("CODEX_HOME".to_string(), home.path().display().to_string()),
            ("CODEX_GATEWAY_KEY".to_string(), "gw-real-key-1234".to_string()),
            ("OPENAI_API_KEY".to_string(), "sk-openai-real-5678".to_string()),
            ("CODEX_API_KEY".to_string(), "sk-openai-real-5678".to_string()),
        ];
        let upstreams = HashMap::new();
        let broker = BrokerAddress::for_tests("http://127.0.0.1:5555", "uwb-p", &upstreams);

        let api = route(&mut env, &broker).await.unwrap().unwrap();

        assert_eq!(api.credential, "gw-real-key-1234");
        assert_eq!(get_env(&env, "CODEX_GATEWAY_KEY"), Some("uwb-p"));
        assert!(!format!("{env:?}").contains("real"), "{env:?}");
    }

    #[tokio::test]
    async fn the_built_in_provider_gets_a_stand_in_that_reaches_the_broker() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("config.toml"), "model = \"gpt-5.5\"\nopenai_base_url = \"https://gw.example/v1\"\n").unwrap();
        let mut env = vec![
            ("CODEX_HOME".to_string(), home.path().display().to_string()),
            ("CODEX_API_KEY".to_string(), "sk-real-key-1234".to_string()),
            ("OPENAI_API_KEY".to_string(), "sk-real-key-1234".to_string()),
        ];
        let upstreams = HashMap::new();
        let broker = BrokerAddress::for_tests("http://127.0.0.1:5555", "uwb-p", &upstreams);

        let api = route(&mut env, &broker).await.unwrap().unwrap();

        assert_eq!((api.credential.as_str(), api.upstream.as_str()), ("sk-real-key-1234", "https://gw.example/v1"));
        assert!(!format!("{env:?}").contains("sk-real"), "{env:?}");
        let written: toml_edit::DocumentMut = std::fs::read_to_string(home.path().join("config.toml")).unwrap().parse().unwrap();
        assert_eq!(written["model_provider"].as_str(), Some(STAND_IN));
        assert_eq!(written["model"].as_str(), Some("gpt-5.5"));
        assert!(written.get("openai_base_url").is_none());
        let provider = &written["model_providers"][STAND_IN];
        assert_eq!(provider["base_url"].as_str(), Some("http://127.0.0.1:5555"));
        assert_eq!(provider["env_key"].as_str(), Some("CODEX_API_KEY"));
        assert_eq!(provider["supports_websockets"].as_bool(), Some(false));
    }

    #[tokio::test]
    async fn the_upstream_setting_wins_a_key_only_auth_json_is_taken_and_a_sign_in_keeps_its_path() {
        let home = tempfile::tempdir().unwrap();
        let auth = home.path().join("auth.json");
        std::fs::write(&auth, r#"{"OPENAI_API_KEY":"sk-file-key-5678","tokens":null}"#).unwrap();
        let mut env = vec![("CODEX_HOME".to_string(), home.path().display().to_string())];
        let upstreams = HashMap::from([(UPSTREAM_VAR, "http://127.0.0.1:4000/v1".to_string())]);
        let broker = BrokerAddress::for_tests("http://127.0.0.1:5555", "uwb-p", &upstreams);

        let api = route(&mut env, &broker).await.unwrap().unwrap();

        assert_eq!((api.credential.as_str(), api.upstream.as_str()), ("sk-file-key-5678", "http://127.0.0.1:4000/v1"));
        assert!(!auth.exists(), "the file that held the key is gone");
        assert_eq!(get_env(&env, "CODEX_API_KEY"), Some("uwb-p"));

        let signed_in = r#"{"OPENAI_API_KEY":null,"tokens":{"access_token":"at-1234567890","refresh_token":"rt-1234567890"}}"#;
        std::fs::write(&auth, signed_in).unwrap();
        std::fs::remove_file(home.path().join("config.toml")).unwrap();
        let mut env = vec![("CODEX_HOME".to_string(), home.path().display().to_string())];
        assert!(route(&mut env, &broker).await.unwrap().is_none());
        assert_eq!(std::fs::read_to_string(&auth).unwrap(), signed_in);
        assert!(!home.path().join("config.toml").exists(), "nothing written for a run that keeps its path");
    }
}
