//! opencode behind the worker's model-API broker. Its endpoint is the `baseURL` of the model's provider in the
//! operator's `OPENCODE_CONFIG_CONTENT`; the run's copy of that variable names the broker instead, and the key
//! (the request's or the worker's stored credential, the provider's `apiKey` in the config, or the provider's
//! key variable) becomes the placeholder wherever it was. A provider from opencode's built-in list that the
//! configuration gives no `baseURL` (`anthropic`, `openai`, `google`, `openrouter`) gets one: the broker, standing for the
//! vendor's API or the operator's upstream setting.

use serde_json::{Value, json};

use super::{AUTH_CONTENT, CONFIG_CONTENT, KEY_VARS, ModelRef};
use crate::{
    broker::{BrokerAddress, ModelApi},
    provider::env::get_env,
};

/// One of opencode's built-in providers the broker can stand in for.
struct BuiltIn {
    id: &'static str,
    /// Where opencode reads its key when no stored credential names the provider.
    key_var: &'static str,
    /// The operator's setting for the real API, in the form of the base URL variable it stands for. None: the
    /// vendor's API, unless the configuration names another `baseURL` (then it is not the built-in path at all).
    upstream_var: Option<&'static str>,
    /// The vendor's API, in that same form.
    default_upstream: &'static str,
    /// What opencode's own default `baseURL` has after that form: the path the broker's address needs so that
    /// the calls reach the same paths upstream.
    suffix: &'static str,
}

const BUILT_IN: [BuiltIn; 4] = [
    BuiltIn {
        id: "anthropic",
        key_var: "ANTHROPIC_API_KEY",
        upstream_var: Some("ANTHROPIC_UPSTREAM_URL"),
        default_upstream: "https://api.anthropic.com",
        suffix: "/v1",
    },
    BuiltIn {
        id: "openai",
        key_var: "OPENAI_API_KEY",
        upstream_var: Some("OPENAI_UPSTREAM_URL"),
        default_upstream: "https://api.openai.com/v1",
        suffix: "",
    },
    BuiltIn {
        id: "google",
        key_var: "GOOGLE_GENERATIVE_AI_API_KEY",
        upstream_var: Some("GEMINI_UPSTREAM_URL"),
        default_upstream: "https://generativelanguage.googleapis.com",
        suffix: "/v1beta",
    },
    BuiltIn {
        id: "openrouter",
        key_var: "OPENROUTER_API_KEY",
        upstream_var: Some("OPENROUTER_UPSTREAM_URL"),
        default_upstream: "https://openrouter.ai/api/v1",
        suffix: "",
    },
];

/// The upstream settings opencode's built-in providers use.
pub(super) fn upstream_vars() -> Vec<&'static str> {
    BUILT_IN.iter().filter_map(|b| b.upstream_var).collect()
}

/// Points `env` at the broker; `model` is the request's `providerOptions.model`, if any. None, and `env`
/// untouched: the run keeps its path.
pub(super) fn route(env: &mut Vec<(String, String)>, model: Option<&ModelRef>, broker: &BrokerAddress<'_>) -> Option<ModelApi> {
    let mut config: Value = match get_env(env, CONFIG_CONTENT) {
        Some(content) => serde_json::from_str(content).ok()?,
        None => json!({}),
    };
    let provider = match model {
        Some(model) => model.provider.clone(),
        None => ModelRef::parse(config.get("model")?.as_str()?)?.provider,
    };
    let stored = get_env(env, AUTH_CONTENT)
        .and_then(|auth| serde_json::from_str::<Value>(auth).ok())
        .and_then(|auth| match auth[&provider]["type"].as_str() {
            Some("api") => auth[&provider]["key"].as_str().map(String::from),
            // An OAuth sign-in is opencode's to refresh: not brokered, and the run keeps its path.
            Some(_) => Some(String::new()),
            None => None,
        });
    let built_in = BUILT_IN.iter().find(|b| b.id == provider);
    let options = config.get("provider").and_then(|p| p.get(&provider)).and_then(|p| p.get("options"));
    let (upstream, base_url) = match options.and_then(|o| o.get("baseURL")).and_then(Value::as_str) {
        Some(upstream) => (upstream.to_string(), broker.base_url.to_string()),
        None => {
            let built_in = built_in?;
            let configured = built_in.upstream_var.and_then(|var| broker.upstream(var));
            let upstream = configured.unwrap_or(built_in.default_upstream);
            (upstream.to_string(), format!("{}{}", broker.base_url, built_in.suffix))
        }
    };
    let from_config = options.and_then(|o| o.get("apiKey")).and_then(Value::as_str).map(String::from);
    let from_var = built_in.and_then(|b| get_env(env, b.key_var)).map(String::from);
    let credential = stored.or(from_config).or(from_var).filter(|c| !c.trim().is_empty())?;

    set_base_url(&mut config, &provider, base_url)?;
    let mut routed: Vec<(String, String)> = env.to_vec();
    if get_env(&routed, CONFIG_CONTENT).is_none() {
        routed.push((CONFIG_CONTENT.to_string(), String::new()));
    }
    for (key, value) in routed.iter_mut() {
        if key == CONFIG_CONTENT {
            *value = config.to_string();
        }
        *value = value.replace(&credential, broker.placeholder);
    }
    // A key written with JSON escapes would survive the replacement: then nothing is changed at all.
    let escaped = serde_json::to_string(&credential).ok()?;
    let escaped = escaped.trim_matches('"');
    if routed.iter().any(|(_, v)| v.contains(&credential) || v.contains(escaped)) {
        return None;
    }
    // The worker's keys for other providers reach opencode through the same variables; this run calls only the
    // broker, so none of them stays for the agent to read.
    routed.retain(|(key, value)| !KEY_VARS.contains(&key.as_str()) || value == broker.placeholder);
    *env = routed;
    Some(ModelApi { credential, upstream })
}

/// `provider.<id>.options.baseURL` = `base_url`, creating what is missing; None if the configuration has
/// something other than an object on the way.
fn set_base_url(config: &mut Value, provider: &str, base_url: String) -> Option<()> {
    let mut node = config;
    for key in ["provider", provider, "options"] {
        let object = node.as_object_mut()?;
        node = object.entry(key).or_insert_with(|| json!({}));
    }
    node.as_object_mut()?.insert("baseURL".to_string(), Value::String(base_url));
    Some(())
}
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn at<'a>(upstreams: &'a HashMap<&'static str, String>) -> BrokerAddress<'a> {
        BrokerAddress::for_tests("http://127.0.0.1:5555", "uwb-p", upstreams)
    }

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

        let api = route(&mut env, None, &at(&HashMap::new())).unwrap();

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
        let api = route(&mut env, None, &at(&HashMap::new())).unwrap();
        assert_eq!(api.credential, "sk-config-key-9876");
        assert!(!format!("{env:?}").contains("sk-config"));

        let mut other = worker_env(Some("sk-real-stored-1234"), None);
        let model = ModelRef::parse("mistral/mistral-large").unwrap();
        let before = other.clone();
        assert!(route(&mut other, Some(&model), &at(&HashMap::new())).is_none(), "not a built-in we know");
        assert_eq!(other, before, "untouched");
        assert!(route(&mut Vec::new(), None, &at(&HashMap::new())).is_none());
    }

    #[test]
    fn a_built_in_provider_gets_the_broker_as_its_base_url_with_the_path_of_its_own() {
        let upstreams = HashMap::from([("ANTHROPIC_UPSTREAM_URL", "http://127.0.0.1:4100".to_string())]);
        let mut env = vec![("ANTHROPIC_API_KEY".to_string(), "sk-ant-real-1234".to_string())];
        let model = ModelRef::parse("anthropic/claude-sonnet-4-5").unwrap();

        let api = route(&mut env, Some(&model), &at(&upstreams)).unwrap();

        assert_eq!((api.credential.as_str(), api.upstream.as_str()), ("sk-ant-real-1234", "http://127.0.0.1:4100"));
        assert_eq!(get_env(&env, "ANTHROPIC_API_KEY"), Some("uwb-p"));
        let config: Value = serde_json::from_str(get_env(&env, CONFIG_CONTENT).unwrap()).unwrap();
        assert_eq!(config["provider"]["anthropic"]["options"]["baseURL"], "http://127.0.0.1:5555/v1");

        // Without the setting, the vendor's API; Google's calls go under /v1beta.
        let mut env = vec![
            (CONFIG_CONTENT.to_string(), json!({"model": "google/gemini-2.5-pro", "share": "disabled"}).to_string()),
            (AUTH_CONTENT.to_string(), json!({"google": {"type": "api", "key": "AIza-real-5678"}}).to_string()),
        ];
        let api = route(&mut env, None, &at(&HashMap::new())).unwrap();
        assert_eq!(api.upstream, "https://generativelanguage.googleapis.com");
        let config: Value = serde_json::from_str(get_env(&env, CONFIG_CONTENT).unwrap()).unwrap();
        assert_eq!(config["provider"]["google"]["options"]["baseURL"], "http://127.0.0.1:5555/v1beta");
        assert_eq!(config["share"], "disabled", "the rest of the configuration stays");
        assert!(!format!("{env:?}").contains("AIza-real"));
    }

    #[test]
    fn openrouter_goes_to_its_own_api() {
        let mut env = vec![("OPENROUTER_API_KEY".to_string(), "sk-or-real-1234".to_string())];
        let model = ModelRef::parse("openrouter/anthropic/claude-sonnet-4.5").unwrap();
        let api = route(&mut env, Some(&model), &at(&HashMap::new())).unwrap();
        assert_eq!(api.upstream, "https://openrouter.ai/api/v1");
        assert_eq!(get_env(&env, "OPENROUTER_API_KEY"), Some("uwb-p"));

        // The worker's key for another provider is not passed along.
        let mut env = vec![
            ("OPENROUTER_API_KEY".to_string(), "sk-or-real-1234".to_string()),
            ("ANTHROPIC_API_KEY".to_string(), "sk-ant-other-5678".to_string()),
        ];
        route(&mut env, Some(&model), &at(&HashMap::new())).unwrap();
        assert_eq!(get_env(&env, "OPENROUTER_API_KEY"), Some("uwb-p"));
        assert_eq!(get_env(&env, "ANTHROPIC_API_KEY"), None);
    }

    #[test]
    fn an_oauth_sign_in_keeps_its_path() {
        let auth = json!({"anthropic": {"type": "oauth", "access": "at-123456789", "refresh": "rt-123456789"}});
        let mut env = vec![(AUTH_CONTENT.to_string(), auth.to_string()), ("ANTHROPIC_API_KEY".to_string(), "sk-x-12345678".to_string())];
        let before = env.clone();
        let model = ModelRef::parse("anthropic/claude-sonnet-4-5").unwrap();
        assert!(route(&mut env, Some(&model), &at(&HashMap::new())).is_none());
        assert_eq!(env, before);
    }
}
