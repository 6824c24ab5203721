//! Validation tests: every rule of SPEC §3 that needs no network or disk.

use super::*;

fn settings() -> Settings {
    Settings::from_lookup(|_| None).unwrap()
}

fn parse_json(v: Value) -> Result<JobRequest, ApiError> {
    parse(v.to_string().as_bytes(), &settings())
}

fn field_of(err: ApiError) -> String {
    match err {
        ApiError::InvalidRequest { field, .. } | ApiError::RepoUrlNotAllowed { field, .. } => field,
        ApiError::InvalidJson { field, .. } => field.unwrap_or_default(),
        other => panic!("unexpected {other:?}"),
    }
}

fn minimal() -> Value {
    serde_json::json!({"userRequest": "hi", "codingAssistantProvider": "claude-code"})
}

#[test]
fn a_minimal_request_gets_defaults() {
    let r = parse_json(minimal()).unwrap();
    assert_eq!(r.workspace, PathBuf::from(&r.job_id));
    assert!(!r.cancel_on_disconnect);
    assert_eq!(r.timeout, Duration::from_secs(3600));
}

#[test]
fn structural_problems_name_the_field() {
    let mut v = minimal();
    v["extra"] = 1.into();
    assert_eq!(field_of(parse_json(v).unwrap_err()), "extra");
    let mut v = minimal();
    v["providerOptions"] = serde_json::json!({"maxTurn": 3});
    assert_eq!(field_of(parse_json(v).unwrap_err()), "providerOptions.maxTurn");
    let v = serde_json::json!({"codingAssistantProvider": "claude-code"});
    assert_eq!(field_of(parse_json(v).unwrap_err()), "userRequest");
    let mut v = minimal();
    v["userRequest"] = "  ".into();
    assert_eq!(field_of(parse_json(v).unwrap_err()), "userRequest");
    let mut v = minimal();
    v["codingAssistantProvider"] = "gpt".into();
    assert_eq!(field_of(parse_json(v).unwrap_err()), "codingAssistantProvider");
}

#[test]
fn wrong_types_are_invalid_json_with_the_field() {
    let mut v = minimal();
    v["timeoutSeconds"] = "soon".into();
    let err = parse_json(v).unwrap_err();
    assert!(
        matches!(&err, ApiError::InvalidJson { field: Some(f), .. } if f == "timeoutSeconds"),
        "{err:?}"
    );
    assert!(matches!(
        parse(b"{not json", &settings()),
        Err(ApiError::InvalidJson { .. })
    ));
    assert!(matches!(parse(b"[1]", &settings()), Err(ApiError::InvalidJson { .. })));
}

#[test]
fn workspace_and_ids_cannot_escape() {
    for bad in ["../x", "/abs", "a/../../b", "", "a\\b", "./a"] {
        let mut v = minimal();
        v["workspace"] = bad.into();
        assert_eq!(field_of(parse_json(v).unwrap_err()), "workspace", "{bad}");
    }
    let mut v = minimal();
    v["workspace"] = "team/job-1".into();
    assert_eq!(parse_json(v).unwrap().workspace, PathBuf::from("team/job-1"));
    let mut v = minimal();
    v["resumeSessionId"] = "../../etc".into();
    assert_eq!(field_of(parse_json(v).unwrap_err()), "resumeSessionId");
    let mut v = minimal();
    v["jobId"] = "a/b".into();
    assert_eq!(field_of(parse_json(v).unwrap_err()), "jobId");
}

#[test]
fn timeouts_are_capped_and_zero_is_refused() {
    let mut v = minimal();
    v["timeoutSeconds"] = 999_999.into();
    assert_eq!(parse_json(v).unwrap().timeout, Duration::from_secs(3600));
    let mut v = minimal();
    v["timeoutSeconds"] = 0.into();
    assert_eq!(field_of(parse_json(v).unwrap_err()), "timeoutSeconds");
}

#[test]
fn credentials_are_checked_without_echoing_them() {
    let mut v = minimal();
    v["codingAssistantAccessToken"] = "zq9x".into();
    let err = parse_json(v).unwrap_err();
    assert!(!err.to_string().contains("zq9x"));
    let mut v = minimal();
    v["codingAssistantAccessToken"] = serde_json::json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefgh"}});
    let r = parse_json(v).unwrap();
    assert!(r.secrets().contains(&"sk-ant-oat01-abcdefgh"));
}

fn settings_with(vars: &[(&str, &str)]) -> Settings {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::from_lookup(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap()
}

#[test]
fn database_needs_a_configured_api_a_safe_session_id_and_a_real_token() {
    let mut v = minimal();
    v["database"] = serde_json::json!({"sessionId": "s-1", "accessToken": "db-token-canary-1"});
    assert_eq!(field_of(parse_json(v.clone()).unwrap_err()), "database");
    let configured = settings_with(&[("DB_BASE_URL", "http://db.local/api/")]);
    let r = parse(v.to_string().as_bytes(), &configured).unwrap();
    let db = r.database.as_ref().unwrap();
    assert_eq!(db.url, "http://db.local/api/sessions/s-1/chunks");
    assert!(
        r.secrets().contains(&"db-token-canary-1"),
        "the token is redacted like every request secret"
    );
    for (field, bad) in [
        (
            "database.sessionId",
            serde_json::json!({"sessionId": "../x", "accessToken": "long-enough-1"}),
        ),
        (
            "database.sessionId",
            serde_json::json!({"sessionId": "a/b", "accessToken": "long-enough-1"}),
        ),
        (
            "database.accessToken",
            serde_json::json!({"sessionId": "s", "accessToken": "zq9x"}),
        ),
        ("database.accessToken", serde_json::json!({"sessionId": "s"})),
    ] {
        let mut v = minimal();
        v["database"] = bad;
        let err = parse(v.to_string().as_bytes(), &configured).unwrap_err();
        assert!(!err.to_string().contains("zq9x"), "the error must not echo the token");
        assert_eq!(field_of(err), field);
    }
}

#[test]
fn callback_urls_follow_their_own_host_list() {
    let mut v = minimal();
    v["callback"] = serde_json::json!({"url": "https://hooks.example.com/agent"});
    assert_eq!(
        field_of(parse_json(v.clone()).unwrap_err()),
        "callback.url",
        "no host is allowed by default"
    );
    let allowed = settings_with(&[("CALLBACK_ALLOWED_HOSTS", "hooks.example.com")]);
    let r = parse(v.to_string().as_bytes(), &allowed).unwrap();
    assert_eq!(r.callback.unwrap().as_str(), "https://hooks.example.com/agent");
    for bad in [
        "http://hooks.example.com/agent",
        "https://user:pw@hooks.example.com/",
        "https://evil.example.net/",
        "https://10.0.0.1/",
        "file:///etc/passwd",
    ] {
        let mut v = minimal();
        v["callback"] = serde_json::json!({ "url": bad });
        let err = parse(v.to_string().as_bytes(), &allowed).unwrap_err();
        assert!(
            matches!(&err, ApiError::InvalidRequest { field, .. } if field == "callback.url"),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn repo_urls_follow_the_policy() {
    let mut v = minimal();
    v["github"] = serde_json::json!({"repoUrl": "http://github.com/o/r"});
    assert!(matches!(parse_json(v).unwrap_err(), ApiError::RepoUrlNotAllowed { .. }));
    let mut v = minimal();
    v["github"] = serde_json::json!({"repoUrl": "https://github.com/o/r", "branch": "main", "depth": 0});
    let github = parse_json(v).unwrap().github.unwrap();
    assert_eq!((github.branch.as_deref(), github.depth), (Some("main"), Some(0)));
}

#[test]
fn branch_names_and_push_settings_are_checked() {
    let github = |g: Value| {
        let mut v = minimal();
        v["github"] = g;
        parse_json(v)
    };
    for bad in [
        "-x",
        "a..b",
        "a b",
        "x:y",
        "refs/heads/x",
        "",
        "a~1",
        "main\0x",
        "a\u{7f}b",
        "a\nb",
    ] {
        let err = github(serde_json::json!({"repoUrl": "https://github.com/o/r", "branch": bad})).unwrap_err();
        assert_eq!(field_of(err), "github.branch", "{bad}");
    }
    let push = serde_json::json!({"repoUrl": "https://github.com/o/r", "push": {"branch": "agent/x"}});
    assert_eq!(field_of(github(push).unwrap_err()), "github.accessToken");
    let bad_push = serde_json::json!({"repoUrl": "https://github.com/o/r", "accessToken": "ghp_12345678",
        "push": {"branch": "x..y"}});
    assert_eq!(field_of(github(bad_push).unwrap_err()), "github.push.branch");
    let same = serde_json::json!({"repoUrl": "https://github.com/o/r", "accessToken": "ghp_12345678",
        "branch": "main", "push": {"branch": "main", "pullRequest": {"title": "t"}}});
    assert_eq!(field_of(github(same).unwrap_err()), "github.push.branch");
    let good = serde_json::json!({"repoUrl": "https://github.com/o/r", "accessToken": "ghp_12345678",
        "push": {"branch": "agent/x", "pullRequest": {"title": "t"}}});
    let r = github(good).unwrap();
    assert!(r.secrets().contains(&"ghp_12345678"));
}
