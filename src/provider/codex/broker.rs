//! Codex behind the worker's model-API broker. Its endpoint is not a variable but the `base_url` of the model
//! provider its `config.toml` selects (`model_provider`), with the key in that provider's `env_key` variable: the
//! run's own copy of the file is pointed at the broker, and every variable that held the key gets the placeholder.
//! Codex's built-in `openai` provider has no `base_url` to point elsewhere and keeps its path.

use std::path::Path;

use toml_edit::{DocumentMut, value};

use crate::{
    broker::ModelApi,
    event::{ErrorCode, Failure},
    provider::env::get_env,
};

/// The selected provider's endpoint and key variable, and the configuration with the broker as its endpoint.
#[derive(Debug, PartialEq)]
struct Rewritten {
    config: String,
    upstream: String,
    env_key: String,
}

fn rewrite(config: &str, base_url: &str) -> Option<Rewritten> {
    let mut document: DocumentMut = config.parse().ok()?;
    let name = document.get("model_provider").and_then(|v| v.as_str()).unwrap_or("openai").to_string();
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

pub(super) async fn route(
    env: &mut [(String, String)],
    base_url: &str,
    placeholder: &str,
) -> Result<Option<ModelApi>, Failure> {
    let Some(home) = get_env(env, "CODEX_HOME") else {
        return Ok(None);
    };
    let path = Path::new(home).join("config.toml");
    let Ok(config) = tokio::fs::read_to_string(&path).await else {
        return Ok(None);
    };
    let Some(rewritten) = rewrite(&config, base_url) else {
        return Ok(None);
    };
    let Some(credential) = get_env(env, &rewritten.env_key).map(String::from) else {
        return Ok(None);
    };
    super::write(&path, rewritten.config.as_bytes()).await?;
    // The key went in under several names (`CODEX_API_KEY` too); none of them may keep it.
    for (_, v) in env.iter_mut() {
        if *v == credential {
            *v = placeholder.to_string();
        }
    }
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

#[cfg(test)]
mod tests {
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

        let api = route(&mut env, "http://127.0.0.1:5555", "uwb-placeholder").await.unwrap().unwrap();

        assert_eq!(api.credential, "sk-real-key-1234");
        assert_eq!(api.upstream, "http://127.0.0.1:4000/v1");
        assert!(!format!("{env:?}").contains("sk-real"), "{env:?}");
        assert_eq!(get_env(&env, "OPENAI_API_KEY"), Some("uwb-placeholder"));
        let written = std::fs::read_to_string(home.path().join("config.toml")).unwrap();
        assert!(written.contains("http://127.0.0.1:5555") && !written.contains("4000"));
    }
}
