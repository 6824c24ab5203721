//! Codex's command line and credential routing, without running the CLI.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;

fn ctx<'a>(private_dir: &'a Path, resume: Option<&'a str>) -> RunContext<'a> {
    RunContext {
        binary: Path::new("codex"),
        workdir: Path::new("/w"),
        private_dir,
        prompt: "hi",
        resume_session_id: resume,
        broker_until: None,
    }
}

fn run(credential: Option<Value>, options: Option<Value>) -> CodexRun {
    CodexRun {
        credential: credential.map(Credential::parse).transpose().unwrap(),
        options: ModelOnly::parse(options).unwrap(),
        mcp_servers: McpServers::default(),
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn the_command_line_keeps_the_prompt_off_argv_and_side_traffic_off() {
    let private = Path::new("/p");
    let args = run(None, Some(json!({"model": "gpt-5.5"}))).args(&ctx(private, Some("019a-thread")));
    let line = args.join(" ");
    assert!(
        line.starts_with("exec --json --skip-git-repo-check --sandbox workspace-write --disable plugins"),
        "{line}"
    );
    assert!(line.contains("-c analytics.enabled=false"), "{line}");
    assert!(line.contains(r#"-c model="gpt-5.5""#), "{line}");
    assert!(line.ends_with("resume 019a-thread"), "{line}");
    assert!(!args.iter().any(|a| a == "hi"), "the prompt goes on stdin");
}

#[test]
fn each_mcp_server_is_one_override_with_its_tools_approved_and_its_secrets_redacted() {
    let mcp_servers = ProviderRequest {
        options: Some(json!({"mcpServers": {"docs": {"command": "docs-server", "args": ["--ro"],
            "env": {"DOCS_TOKEN": "docs-token-canary"}}}})),
        ..ProviderRequest::default()
    }
    .take_mcp_servers()
    .unwrap();
    let run = CodexRun {
        mcp_servers,
        ..run(None, None)
    };

    let args = run.args(&ctx(Path::new("/p"), Some("019a-thread")));

    let at = args.iter().position(|a| a.starts_with("mcp_servers.docs=")).unwrap();
    assert_eq!(args[at - 1], "-c");
    assert_eq!(
        args[at],
        r#"mcp_servers.docs={"args" = ["--ro"], "command" = "docs-server", "default_tools_approval_mode" = "approve", "env" = {"DOCS_TOKEN" = "docs-token-canary"}}"#
    );
    assert!(at < args.iter().position(|a| a == "resume").unwrap(), "options go before the subcommand");
    assert!(run.secrets().contains(&"docs-token-canary"));
}

#[test]
fn options_other_than_the_model_are_refused_and_credentials_are_checked() {
    let refused = Codex.configure(ProviderRequest {
        options: Some(json!({"maxTurns": 2})),
        ..ProviderRequest::default()
    });
    assert!(matches!(refused, Err(ApiError::InvalidRequest { field, .. }) if field == "providerOptions.maxTurns"));
    assert!(Credential::parse(json!({"unrelated": "long-enough-value"})).is_err());
    assert!(matches!(Credential::parse(json!([1])), Err(ApiError::InvalidJson { .. })));
    let auth = json!({"OPENAI_API_KEY": null, "tokens": {"access_token": "eyJhbGciOi.a.b"}});
    let run = run(Some(auth), None);
    assert!(run.secrets().contains(&"eyJhbGciOi.a.b"));
}

#[tokio::test]
async fn a_request_key_replaces_the_workers_under_both_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = env(&[("OPENAI_API_KEY", "worker-key-123"), ("PATH", "/bin")]);

    run(Some(json!("sk-request-key-456")), None)
        .credentials(&mut vars, dir.path(), dir.path(), false)
        .await
        .unwrap();

    assert_eq!(get_env(&vars, "OPENAI_API_KEY"), Some("sk-request-key-456"));
    assert_eq!(get_env(&vars, "CODEX_API_KEY"), Some("sk-request-key-456"));
}

#[tokio::test]
async fn an_auth_json_object_becomes_a_private_file_and_no_key_variable_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = env(&[("CODEX_API_KEY", "worker-key-123")]);
    let auth = json!({"OPENAI_API_KEY": "sk-in-auth-json-789"});

    run(Some(auth), None)
        .credentials(&mut vars, dir.path(), dir.path(), false)
        .await
        .unwrap();

    assert!(vars.is_empty(), "{vars:?}");
    let file = dir.path().join("auth.json");
    assert!(std::fs::read_to_string(&file).unwrap().contains("sk-in-auth-json-789"));
    assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn without_a_request_credential_the_workers_own_are_used_or_auth_fails() {
    let home = tempfile::tempdir().unwrap();
    let operator = tempfile::tempdir().unwrap();

    let mut vars = env(&[("OPENAI_API_KEY", "worker-key-123")]);
    run(None, None).credentials(&mut vars, home.path(), operator.path(), false).await.unwrap();
    assert_eq!(get_env(&vars, "CODEX_API_KEY"), Some("worker-key-123"));

    let mut vars = Vec::new();
    let none = run(None, None).credentials(&mut vars, home.path(), operator.path(), false).await;
    assert!(matches!(none, Err(f) if f.code == ErrorCode::AuthFailed));
    run(None, None)
        .credentials(&mut vars, home.path(), operator.path(), true)
        .await
        .expect("a config.toml may bring its own provider's credentials");

    std::fs::write(operator.path().join("auth.json"), r#"{"OPENAI_API_KEY":"sk-operator-000"}"#).unwrap();
    run(None, None).credentials(&mut vars, home.path(), operator.path(), false).await.unwrap();
    let copied = home.path().join("auth.json");
    assert!(std::fs::read_to_string(&copied).unwrap().contains("sk-operator-000"));
    assert_eq!(copied.metadata().unwrap().permissions().mode() & 0o777, 0o600);
}
