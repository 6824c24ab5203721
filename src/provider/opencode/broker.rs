//! opencode behind the worker's model-API broker. Its endpoint is the `baseURL` of the model's provider in the
//! operator's `OPENCODE_CONFIG_CONTENT`; the run's copy of that variable names the broker instead, and the key
//! (the request's or the worker's stored credential, or the provider's `apiKey` in the config) becomes the
//! placeholder wherever it was. A provider from opencode's built-in list (no `baseURL`) keeps its path.

use serde_json::Value;

use super::{AUTH_CONTENT, CONFIG_CONTENT, ModelRef};
use crate::{broker::ModelApi, provider::env::get_env};

/// Points `env` at the broker; `model` is the request's `providerOptions.model`, if any. None, and `env`
/// untouched: the run keeps its path.
pub(super) fn route(
    env: &mut [(String, String)],
    model: Option<&ModelRef>,
    base_url: &str,
    placeholder: &str,
) -> Option<ModelApi> {
    let mut config: Value = serde_json::from_str(get_env(env, CONFIG_CONTENT)?).ok()?;
    let provider = match model {
        Some(model) => model.provider.clone(),
        None => ModelRef::parse(config["model"].as_str()?)?.provider,
    };
    let options = config.get_mut("provider")?.get_mut(&provider)?.get_mut("options")?;
    let upstream = options.get("baseURL")?.as_str()?.to_string();
    let stored = get_env(env, AUTH_CONTENT)
        .and_then(|auth| serde_json::from_str::<Value>(auth).ok())
        .and_then(|auth| auth[&provider]["key"].as_str().map(String::from));
    let credential = stored.or_else(|| options.get("apiKey")?.as_str().map(String::from))?;
    options["baseURL"] = Value::String(base_url.to_string());

    let mut routed: Vec<(String, String)> = env.to_vec();
    for (key, value) in routed.iter_mut() {
        if key == CONFIG_CONTENT {
            *value = config.to_string();
        }
        *value = value.replace(&credential, placeholder);
    }
    // A key written with JSON escapes would survive the replacement: then nothing is changed at all.
    let escaped = serde_json::to_string(&credential).ok()?;
    let escaped = escaped.trim_matches('"');
    if routed.iter().any(|(_, v)| v.contains(&credential) || v.contains(escaped)) {
        return None;
    }
    env.clone_from_slice(&routed);
    Some(ModelApi { credential, upstream })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn worker_env(auth: Option<&str>, api_key: Option<&str>) -> Vec<(String, String)> {
        let mut options = json!({"baseURL": "http://127.0.0.1:4000/v1"});
        if let Some(key) = api_key {
            options["apiKey"] = json!(key);
        }
        let config = json!({"provider": {"mock": {"npm": "@ai-sdk/openai-compatible", "options": options}},
            "model": "mock/mock-model"});
        let mut env = vec![(CONFIG_CONTENT.to_string(), config.to_string())];
        if let Some(key) = auth {
            env.push((AUTH_CONTENT.to_string(), json!({"mock": {"type": "api", "key": key}}).to_string()));
        }
        env
    }

    #[test]
    fn the_models_provider_points_at_the_broker_and_its_stored_key_becomes_the_placeholder() {
        let mut env = worker_env(Some("sk-real-stored-1234"), None);

        let api = route(&mut env, None, "http://127.0.0.1:5555", "uwb-p").unwrap();

        assert_eq!((api.credential.as_str(), api.upstream.as_str()), ("sk-real-stored-1234", "http://127.0.0.1:4000/v1"));
        let text = format!("{env:?}");
        assert!(!text.contains("sk-real") && !text.contains("4000"), "{text}");
        let config: Value = serde_json::from_str(get_env(&env, CONFIG_CONTENT).unwrap()).unwrap();
        assert_eq!(config["provider"]["mock"]["options"]["baseURL"], "http://127.0.0.1:5555");
        assert!(get_env(&env, AUTH_CONTENT).unwrap().contains("uwb-p"));
    }

    #[test]
    fn a_key_in_the_config_is_found_too_and_a_provider_without_base_url_keeps_its_path() {
        let mut env = worker_env(None, Some("sk-config-key-9876"));
        let api = route(&mut env, None, "http://127.0.0.1:5555", "uwb-p").unwrap();
        assert_eq!(api.credential, "sk-config-key-9876");
        assert!(!format!("{env:?}").contains("sk-config"));

        let mut other = worker_env(Some("sk-real-stored-1234"), None);
        let model = ModelRef::parse("anthropic/claude-sonnet-4-5").unwrap();
        let before = other.clone();
        assert!(route(&mut other, Some(&model), "http://127.0.0.1:5555", "uwb-p").is_none());
        assert_eq!(other, before, "untouched");
        assert!(route(&mut [], None, "u", "p").is_none());
    }
}
