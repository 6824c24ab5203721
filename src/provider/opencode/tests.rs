//! The opencode provider's own decisions: options, the command line, where the key goes, the job's home.

use std::path::Path;

use serde_json::json;

use super::*;

fn ctx<'a>(private_dir: &'a Path, resume: Option<&'a str>) -> RunContext<'a> {
    RunContext {
        binary: Path::new("opencode"),
        workdir: Path::new("/w"),
        private_dir,
        prompt: "hi",
        resume_session_id: resume,
        broker_until: None,
    }
}

fn run(model: Option<&str>, key: Option<(&str, &str)>) -> OpencodeRun {
    OpencodeRun {
        key: key.map(|(provider, token)| ProviderKey {
            provider: provider.into(),
            token: Secret::new(token),
        }),
        options: Options {
            model: model.and_then(ModelRef::parse),
        },
        mcp_servers: McpServers::default(),
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn a_model_is_provider_slash_model_and_the_model_may_hold_slashes() {
    let routed = ModelRef::parse("openrouter/anthropic/claude-sonnet-4").unwrap();
    assert_eq!(
        (routed.provider.as_str(), routed.full.as_str()),
        ("openrouter", "openrouter/anthropic/claude-sonnet-4")
    );
    for bad in ["claude-sonnet-4-5", "/claude", "anthropic/", "my provider/x"] {
        assert_eq!(ModelRef::parse(bad), None, "{bad}");
    }
    match Options::parse(Some(json!({"model": "gpt-5"}))) {
        Err(ApiError::InvalidRequest { field, .. }) => assert_eq!(field, "providerOptions.model"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_command_line_names_the_model_and_the_session_but_never_the_prompt() {
    let private = Path::new("/p");
    assert_eq!(
        run(Some("mock/mock-model"), None).args(&ctx(private, None)).join(" "),
        "run --format json --thinking --auto -m mock/mock-model"
    );
    assert_eq!(
        run(None, None).args(&ctx(private, Some("ses_1"))).join(" "),
        "run --format json --thinking --auto -s ses_1"
    );
}

#[test]
fn the_request_key_replaces_the_workers_keys_for_the_models_provider() {
    let mut env = vars(&[
        ("ANTHROPIC_API_KEY", "worker-anthropic"),
        ("OPENCODE_AUTH_CONTENT", r#"{"mock":{"type":"api","key":"worker-mock"}}"#),
        ("OPENCODE_CONFIG_CONTENT", "{}"),
        ("PATH", "/bin"),
    ]);

    run(None, Some(("mock", "request-key-123"))).credential(&mut env).unwrap();

    let auth = get_env(&env, AUTH_CONTENT).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(auth).unwrap(),
        json!({"mock": {"type": "api", "key": "request-key-123"}})
    );
    assert_eq!(get_env(&env, "ANTHROPIC_API_KEY"), None);
    assert_eq!(get_env(&env, CONFIG_CONTENT), Some("{}"));
}

#[test]
fn without_a_request_key_the_workers_own_must_exist_somewhere_opencode_looks() {
    for present in ["OPENAI_API_KEY", AUTH_CONTENT, CONFIG_CONTENT, "OPENCODE_CONFIG"] {
        let mut env = vars(&[("PATH", "/bin"), (present, "x")]);
        assert!(run(None, None).credential(&mut env).is_ok(), "{present}");
    }
    let mut env = vars(&[("PATH", "/bin"), ("ANTHROPIC_API_KEY", "")]);
    let failure = run(None, None).credential(&mut env).unwrap_err();
    assert_eq!(failure.code, ErrorCode::AuthFailed);
}

#[tokio::test]
async fn every_opencode_folder_is_inside_the_jobs_private_folder_and_the_plugin_sdk_counts_as_installed() {
    let private = tempfile::tempdir().unwrap();
    let ctx = ctx(private.path(), None);
    let home = Home::of(&ctx);

    home.write(&McpServers::default()).await.unwrap();
    let env = home.env();

    for var in ["HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"] {
        assert!(get_env(&env, var).unwrap().starts_with(&*private.path().to_string_lossy()), "{var}");
    }
    for (var, value) in QUIET {
        assert_eq!(get_env(&env, var), Some(*value));
    }
    let dir = private.path().join("opencode-home/.config/opencode");
    let config: Value = serde_json::from_slice(&std::fs::read(dir.join("opencode.json")).unwrap()).unwrap();
    assert_eq!(config, json!({"autoupdate": false, "share": "disabled"}));
    assert!(dir.join("node_modules").is_dir());
    let lock: Value = serde_json::from_slice(&std::fs::read(dir.join("package-lock.json")).unwrap()).unwrap();
    assert!(lock["packages"][""]["dependencies"]["@opencode-ai/plugin"].is_string());
    assert_eq!(
        run(None, None).session_files(&ctx, "ses_1").unwrap().local,
        private.path().join("opencode-sessions/ses_1.json")
    );
}

#[tokio::test]
async fn the_jobs_mcp_servers_go_into_its_config_in_opencodes_shape_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let request = ProviderRequest {
        credential: Some(json!("request-key-0123")),
        options: Some(json!({"model": "mock/m", "mcpServers": {
            "docs": {"command": "npx", "args": ["-y", "docs-mcp"], "env": {"DOCS_TOKEN": "docs-secret-123"}},
        }})),
        ..ProviderRequest::default()
    };
    let run = Opencode.configure(request).unwrap();
    assert!(run.secrets().contains(&"docs-secret-123"));
    let private = tempfile::tempdir().unwrap();

    let prepared = run.prepare(&ctx(private.path(), None)).await.unwrap();

    let file = private.path().join("opencode-home/.config/opencode/opencode.json");
    let config: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        config["mcp"],
        json!({"docs": {"type": "local", "command": ["npx", "-y", "docs-mcp"],
            "environment": {"DOCS_TOKEN": "docs-secret-123"}, "enabled": true}})
    );
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!prepared.plan.args.iter().any(|a| a.contains("docs")));
}
