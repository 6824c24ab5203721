//! Validation tests: every rule of docs/api.md that needs no network or disk.

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
    assert_eq!(r.workspace, PathBuf::from(r.job_id.as_str()));
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

mod properties {
    //! Whatever a client sends, parsing answers: a request, or a JSON error with a code (and, for 422, the field).
    //! Never a panic (a NUL in a branch name once reached libgit2 and closed the connection without an answer).

    use actix_web::ResponseError;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,30}".prop_map(Value::String),
            "[a-z]{1,8}(\u{0}|\n|\r|/|\\.\\.|:)[a-z]{0,8}".prop_map(Value::String),
            prop_oneof![
                Just("claude-code"),
                Just("copilot"),
                Just("cursor"),
                Just("https://github.com/o/r")
            ]
            .prop_map(|s| Value::String(s.into())),
        ]
    }

    fn any_json() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIELDS: [&str; 12] = [
        "userRequest",
        "codingAssistantProvider",
        "codingAssistantAccessToken",
        "resumeSessionId",
        "jobId",
        "github",
        "database",
        "callback",
        "workspace",
        "cancelOnDisconnect",
        "timeoutSeconds",
        "providerOptions",
    ];
    const GITHUB: [&str; 5] = ["repoUrl", "branch", "accessToken", "depth", "push"];

    /// Requests near the real shape (known fields, some of them nested the real way) with hostile values.
    fn request() -> impl Strategy<Value = Value> {
        let fields = prop::collection::vec((prop::sample::select(&FIELDS[..]), any_json()), 0..10);
        let github = prop::collection::vec((prop::sample::select(&GITHUB[..]), any_json()), 0..6);
        (fields, github, any::<bool>()).prop_map(|(fields, github, with_github)| {
            let mut body: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            body.entry("userRequest").or_insert_with(|| "do it".into());
            body.entry("codingAssistantProvider")
                .or_insert_with(|| "claude-code".into());
            if with_github {
                let mut g: Map<String, Value> = github.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                g.entry("repoUrl").or_insert_with(|| "https://github.com/o/r".into());
                body.insert("github".into(), Value::Object(g));
            }
            Value::Object(body)
        })
    }

    fn answer(body: &[u8]) {
        let Err(err) = parse(body, &settings()) else { return };
        let resp = err.error_response();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{status} for {err:?}");
        let field = match &err {
            ApiError::InvalidRequest { field, .. } | ApiError::RepoUrlNotAllowed { field, .. } => Some(field.clone()),
            ApiError::InvalidJson { field, .. } => field.clone(),
            _ => None,
        };
        if status == 422 {
            assert!(field.is_some_and(|f| !f.is_empty()), "a 422 names its field: {err:?}");
        }
    }

    const PATHS: [&[&str]; 14] = [
        &["userRequest"],
        &["jobId"],
        &["resumeSessionId"],
        &["workspace"],
        &["timeoutSeconds"],
        &["codingAssistantAccessToken"],
        &["providerOptions", "model"],
        &["providerOptions", "allowedTools"],
        &["github", "repoUrl"],
        &["github", "branch"],
        &["github", "depth"],
        &["github", "push", "branch"],
        &["github", "push", "pullRequest", "base"],
        &["callback", "url"],
    ];

    /// A valid request with one or two values replaced by hostile ones, so that each reaches its own check.
    fn one_bad_value() -> impl Strategy<Value = Value> {
        let hostile = prop_oneof![
            any_json(),
            "[a-z]{0,8}[\u{0}-\u{1f}\u{7f}][a-z/.:~^]{0,8}".prop_map(Value::String),
        ];
        prop::collection::vec((prop::sample::select(&PATHS[..]), hostile), 1..3).prop_map(|changes| {
            let mut body = serde_json::json!({
                "userRequest": "do it", "codingAssistantProvider": "claude-code", "jobId": "j-1",
                "workspace": "w", "timeoutSeconds": 60,
                "github": {"repoUrl": "https://github.com/o/r", "branch": "main", "accessToken": "ghp_1234567890",
                    "push": {"branch": "agent/x", "pullRequest": {"title": "t", "base": "main"}}},
            });
            for (path, value) in changes {
                let mut at = &mut body;
                for key in &path[..path.len() - 1] {
                    if !at[*key].is_object() {
                        at[*key] = Value::Object(Map::new());
                    }
                    at = &mut at[*key];
                }
                at[path[path.len() - 1]] = value;
            }
            body
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_valid_request_with_hostile_values_is_answered(body in one_bad_value()) {
            answer(body.to_string().as_bytes());
        }

        #[test]
        fn near_valid_requests_are_answered(body in request()) {
            answer(body.to_string().as_bytes());
        }

        #[test]
        fn any_json_is_answered(body in any_json()) {
            answer(body.to_string().as_bytes());
        }

        #[test]
        fn any_bytes_are_answered(body in prop::collection::vec(any::<u8>(), 0..256)) {
            answer(&body);
        }

        #[test]
        fn cut_requests_are_answered(body in request(), cut in any::<prop::sample::Index>()) {
            let text = body.to_string();
            answer(&text.as_bytes()[..cut.index(text.len() + 1)]);
        }
    }
}

#[test]
fn limits_are_checked_by_name_and_fall_back_to_the_workers() {
    for (limits, field) in [
        (serde_json::json!({"maxTokens": 0}), "limits.maxTokens"),
        (serde_json::json!({"maxTokens": -5}), "limits.maxTokens"),
        (serde_json::json!({"maxTokens": 1.5}), "limits.maxTokens"),
        (serde_json::json!({"maxModelCalls": 0}), "limits.maxModelCalls"),
        (serde_json::json!({"maxCostUsd": 0}), "limits.maxCostUsd"),
        (serde_json::json!({"maxCostUsd": -1.0}), "limits.maxCostUsd"),
        (serde_json::json!({"maxCalls": 3}), "limits.maxCalls"),
    ] {
        let mut v = minimal();
        v["limits"] = limits.clone();
        assert_eq!(field_of(parse_json(v).unwrap_err()), field, "{limits}");
    }

    let defaults = Settings::from_lookup(|name| match name {
        "LIMIT_MAX_TOKENS" => Some("1000".into()),
        "LIMIT_MAX_MODEL_CALLS" => Some("9".into()),
        _ => None,
    })
    .unwrap();
    let mut v = minimal();
    v["limits"] = serde_json::json!({"maxTokens": 50, "maxCostUsd": 0.25});
    let r = parse(v.to_string().as_bytes(), &defaults).unwrap();
    assert_eq!(
        r.budget,
        Budget {
            max_tokens: Some(50),
            max_cost_usd: Some(0.25),
            max_model_calls: Some(9)
        }
    );
    assert_eq!(
        parse(minimal().to_string().as_bytes(), &defaults)
            .unwrap()
            .budget
            .max_tokens,
        Some(1000)
    );
}

#[test]
fn limits_need_a_brokered_provider() {
    let mut v = minimal();
    v["codingAssistantProvider"] = "cursor".into();
    v["limits"] = serde_json::json!({"maxTokens": 50});
    assert_eq!(field_of(parse_json(v).unwrap_err()), "limits");

    let off = Settings::from_lookup(|name| (name == "BROKER").then(|| "off".into())).unwrap();
    let mut v = minimal();
    v["limits"] = serde_json::json!({"maxModelCalls": 2});
    assert_eq!(field_of(parse(v.to_string().as_bytes(), &off).unwrap_err()), "limits");
}

#[test]
fn a_nested_object_sent_as_an_array_is_refused_by_name() {
    for (field, value) in [
        ("limits", serde_json::json!([null, null])),
        ("conversation", serde_json::json!([])),
        ("approvals", serde_json::json!(["client"])),
    ] {
        let mut body = minimal();
        body[field] = value;
        let err = parse_json(body).unwrap_err();
        assert!(matches!(err, ApiError::InvalidJson { .. }), "{field}: {err:?}");
        assert_eq!(field_of(err), field);
    }
    let mut body = minimal();
    body["github"] =
        serde_json::json!({"repoUrl": "https://github.com/o/r", "push": {"branch": "b", "pullRequest": [null]}});
    assert_eq!(field_of(parse_json(body).unwrap_err()), "github.push.pullRequest");
}
