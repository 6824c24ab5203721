//! The `POST /execute` body: parsing with field-precise errors, then validation into a `JobRequest` (SPEC §3).
//! Nothing here touches the disk, the network or the job slot.

use std::{
    path::{Component, Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;

use crate::{
    error::ApiError,
    provider::ProviderKind,
    secret::{MIN_SECRET_LEN, Secret, oauth_tokens},
    settings::Settings,
    url_policy::UrlPolicy,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRequest {
    user_request: String,
    coding_assistant_provider: String,
    coding_assistant_access_token: Option<Value>,
    resume_session_id: Option<String>,
    job_id: Option<String>,
    github: Option<GithubSpec>,
    database: Option<DatabaseSpec>,
    callback: Option<CallbackSpec>,
    workspace: Option<String>,
    cancel_on_disconnect: Option<bool>,
    timeout_seconds: Option<u64>,
    provider_options: Option<ProviderOptions>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GithubSpec {
    pub repo_url: String,
    pub branch: Option<String>,
    pub access_token: Option<String>,
    pub depth: Option<u32>,
    pub push: Option<PushSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PushSpec {
    pub branch: String,
    pub commit_message: Option<String>,
    pub pull_request: Option<PullRequestSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullRequestSpec {
    pub title: Option<String>,
    pub body: Option<String>,
    pub base: Option<String>,
    pub draft: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseSpec {
    pub session_id: String,
    pub access_token: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSpec {
    pub url: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderOptions {
    pub model: Option<String>,
    pub max_turns: Option<u32>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Option<Vec<String>>,
    pub disallowed_tools: Option<Vec<String>>,
    pub append_system_prompt: Option<String>,
}

/// The credential a request brings for its provider.
#[derive(Clone, Debug)]
pub enum Credential {
    Token(Secret),
    /// Claude Code's credentials file content (`{"claudeAiOauth":…}`), with the token strings inside it so that
    /// they can be redacted on their own.
    ClaudeCredentialsJson {
        json: Secret,
        inner: Vec<Secret>,
    },
}

impl Credential {
    fn secrets(&self) -> Vec<&str> {
        match self {
            Credential::Token(t) => vec![t.expose()],
            Credential::ClaudeCredentialsJson { json, inner } => std::iter::once(json.expose())
                .chain(inner.iter().map(Secret::expose))
                .collect(),
        }
    }
}

/// A request that passed validation: everything the job needs, typed.
#[derive(Debug)]
pub struct JobRequest {
    pub job_id: String,
    pub prompt: String,
    pub provider: ProviderKind,
    pub credential: Option<Credential>,
    pub resume_session_id: Option<String>,
    pub github: Option<GithubSpec>,
    /// Relative to `WORKSPACE_DIR`; defaults to the job id.
    pub workspace: PathBuf,
    pub cancel_on_disconnect: bool,
    pub timeout: Duration,
    pub options: ProviderOptions,
    /// Stream persistence (SPEC §9): where the chunks go, with the request's token.
    pub database: Option<crate::persistence::Destination>,
    /// The completion webhook (SPEC §10), already checked against `CALLBACK_ALLOWED_HOSTS`.
    pub callback: Option<reqwest::Url>,
}

impl JobRequest {
    /// Every request secret, for the job's redactor.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = self.credential.as_ref().map(Credential::secrets).unwrap_or_default();
        if let Some(token) = self.github.as_ref().and_then(|g| g.access_token.as_deref()) {
            out.push(token);
        }
        if let Some(db) = &self.database {
            out.push(db.token.expose());
        }
        out
    }
}

pub fn parse(body: &[u8], settings: &Settings) -> Result<JobRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson {
        message: format!("body is not valid JSON: {e}"),
        field: None,
    })?;
    if !value.is_object() {
        return Err(ApiError::InvalidJson {
            message: "body must be a JSON object".into(),
            field: None,
        });
    }
    let raw: RawRequest = serde_path_to_error::deserialize(value).map_err(classify)?;
    validate(raw, settings)
}

/// serde reports structure problems (missing/unknown fields, values out of range) and type mismatches alike;
/// the contract answers the first with 422 and the second with 400.
fn classify(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let message = err.inner().to_string();
    let join = |name: &str| {
        if path == "." {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = backticked(&message, "missing field `") {
        return ApiError::invalid(join(name), format!("{} is required", join(name)));
    }
    if let Some(name) = backticked(&message, "unknown field `") {
        let field = if path.ends_with(name) { path.clone() } else { join(name) };
        return ApiError::invalid(field.clone(), format!("unknown field {field}"));
    }
    let field = if path == "." { None } else { Some(path) };
    if message.starts_with("invalid value") {
        return ApiError::InvalidRequest {
            field: field.unwrap_or_default(),
            message: strip_position(&message).to_string(),
        };
    }
    let shown = field.clone().unwrap_or_else(|| "body".into());
    ApiError::InvalidJson {
        message: format!("{shown}: {}", strip_position(&message)),
        field,
    }
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

fn required(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, format!("{field} must not be empty")));
    }
    Ok(())
}

/// Ids that end up in file names: no separators, no leading dot, bounded length.
fn safe_id(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('.')
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1-128 characters of letters, digits, '-', '_' or '.', not starting with '.'"),
        ));
    }
    Ok(())
}

fn validate(raw: RawRequest, settings: &Settings) -> Result<JobRequest, ApiError> {
    required("userRequest", &raw.user_request)?;
    let provider: ProviderKind = raw.coding_assistant_provider.parse().map_err(|known: String| {
        ApiError::invalid(
            "codingAssistantProvider",
            format!(
                "unknown provider {:?}; expected one of {known}",
                raw.coding_assistant_provider
            ),
        )
    })?;
    if !provider.is_built() {
        return Err(ApiError::invalid(
            "codingAssistantProvider",
            format!(
                "provider {} is not available in this version of the worker",
                provider.as_str()
            ),
        ));
    }
    let credential = raw
        .coding_assistant_access_token
        .map(|v| credential(provider, v))
        .transpose()?;
    if let Some(credential) = &credential {
        crate::provider::validate_credential(provider, credential)?;
    }
    if let Some(id) = &raw.resume_session_id {
        safe_id("resumeSessionId", id)?;
    }
    let job_id = match raw.job_id {
        Some(id) => {
            safe_id("jobId", &id)?;
            id
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let github = raw.github.map(|g| validate_github(g, settings)).transpose()?;
    let database = raw.database.map(|d| validate_database(d, settings)).transpose()?;
    let callback = raw.callback.map(|c| validate_callback(c, settings)).transpose()?;
    let workspace = match raw.workspace {
        Some(w) => workspace(&w)?,
        None => PathBuf::from(&job_id),
    };
    let timeout = match raw.timeout_seconds {
        Some(0) => {
            return Err(ApiError::invalid("timeoutSeconds", "timeoutSeconds must be at least 1"));
        }
        Some(secs) => Duration::from_secs(secs).min(settings.job_timeout),
        None => settings.job_timeout,
    };
    let options = raw.provider_options.unwrap_or_default();
    crate::provider::validate_options(provider, &options)?;
    Ok(JobRequest {
        job_id,
        prompt: raw.user_request,
        provider,
        credential,
        resume_session_id: raw.resume_session_id,
        github,
        workspace,
        cancel_on_disconnect: raw.cancel_on_disconnect.unwrap_or(false),
        timeout,
        options,
        database,
        callback,
    })
}

fn validate_database(db: DatabaseSpec, settings: &Settings) -> Result<crate::persistence::Destination, ApiError> {
    // Without a persistence API the request would silently persist nothing.
    let Some(base) = &settings.db_base_url else {
        return Err(ApiError::invalid(
            "database",
            "stream persistence is not configured on this worker (DB_BASE_URL is not set)",
        ));
    };
    safe_id("database.sessionId", &db.session_id)?;
    let token = db.access_token.trim();
    if token.len() < MIN_SECRET_LEN {
        return Err(ApiError::invalid(
            "database.accessToken",
            "database.accessToken is too short to be a credential",
        ));
    }
    Ok(crate::persistence::Destination::new(
        base,
        &db.session_id,
        Secret::new(token),
    ))
}

fn validate_callback(callback: CallbackSpec, settings: &Settings) -> Result<reqwest::Url, ApiError> {
    required("callback.url", &callback.url)?;
    UrlPolicy {
        allowed_hosts: &settings.callback_allowed_hosts,
        allow_insecure: settings.callback_allow_insecure,
    }
    .check(&callback.url)
    .map_err(|e| ApiError::invalid("callback.url", format!("callback.url: {e} (CALLBACK_ALLOWED_HOSTS)")))
}

fn credential(provider: ProviderKind, value: Value) -> Result<Credential, ApiError> {
    const FIELD: &str = "codingAssistantAccessToken";
    match value {
        Value::String(token) => {
            let token = token.trim().to_string();
            if token.len() < MIN_SECRET_LEN {
                return Err(ApiError::invalid(
                    FIELD,
                    format!("{FIELD} is too short to be a credential"),
                ));
            }
            Ok(Credential::Token(Secret::new(token)))
        }
        value @ Value::Object(_) if provider == ProviderKind::ClaudeCode => {
            let inner: Vec<Secret> = oauth_tokens(&value).into_iter().map(Secret::new).collect();
            if inner.is_empty() {
                return Err(ApiError::invalid(
                    FIELD,
                    "a credentials object must hold claudeAiOauth.accessToken",
                ));
            }
            let json = value.to_string();
            Ok(Credential::ClaudeCredentialsJson {
                json: Secret::new(json),
                inner,
            })
        }
        _ => Err(ApiError::InvalidJson {
            message: format!(
                "{FIELD} must be a string{}",
                if provider == ProviderKind::ClaudeCode {
                    " or a credentials object"
                } else {
                    ""
                }
            ),
            field: Some(FIELD.into()),
        }),
    }
}

fn validate_github(github: GithubSpec, settings: &Settings) -> Result<GithubSpec, ApiError> {
    required("github.repoUrl", &github.repo_url)?;
    let policy = UrlPolicy {
        allowed_hosts: &settings.git_allowed_hosts,
        allow_insecure: settings.git_allow_insecure,
    };
    policy
        .check(&github.repo_url)
        .map_err(|e| ApiError::RepoUrlNotAllowed {
            message: format!("github.repoUrl: {e}"),
            field: "github.repoUrl".into(),
        })?;
    if let Some(branch) = &github.branch {
        branch_name("github.branch", branch)?;
    }
    if let Some(token) = &github.access_token
        && token.trim().len() < MIN_SECRET_LEN
    {
        return Err(ApiError::invalid(
            "github.accessToken",
            "github.accessToken is too short to be a credential",
        ));
    }
    if github.depth.is_some_and(|d| d > i32::MAX as u32) {
        return Err(ApiError::invalid("github.depth", "github.depth is too large"));
    }
    if let Some(push) = &github.push {
        branch_name("github.push.branch", &push.branch)?;
        if github.access_token.is_none() {
            return Err(ApiError::invalid(
                "github.accessToken",
                "github.push needs github.accessToken to push with",
            ));
        }
        if let Some(message) = &push.commit_message {
            required("github.push.commitMessage", message)?;
        }
        if let Some(pr) = &push.pull_request {
            if crate::git::owner_and_repo(&github.repo_url).is_none() {
                return Err(ApiError::invalid(
                    "github.repoUrl",
                    "a pull request needs a repository URL of the form https://host/owner/repo",
                ));
            }
            if let Some(base) = &pr.base {
                branch_name("github.push.pullRequest.base", base)?;
            }
            if pr.base.as_ref().or(github.branch.as_ref()) == Some(&push.branch) {
                return Err(ApiError::invalid(
                    "github.push.branch",
                    "github.push.branch must differ from the pull request's base branch",
                ));
            }
        }
    }
    Ok(github)
}

/// A branch name git accepts, that cannot be mistaken for an option or a refspec.
fn branch_name(field: &str, name: &str) -> Result<(), ApiError> {
    let valid = !name.starts_with('-')
        && !name.contains(':')
        && !name.starts_with("refs/")
        && git2::Reference::is_valid_name(&format!("refs/heads/{name}"));
    if !valid {
        return Err(ApiError::invalid(field, format!("{field} is not a valid branch name")));
    }
    Ok(())
}

fn workspace(raw: &str) -> Result<PathBuf, ApiError> {
    let path = Path::new(raw);
    let escapes = raw.trim().is_empty()
        || path.is_absolute()
        || path.components().any(|c| !matches!(c, Component::Normal(_)))
        || raw.contains('\\')
        || raw.contains('\0');
    if escapes {
        return Err(ApiError::invalid(
            "workspace",
            "workspace must be a relative path inside WORKSPACE_DIR (no '..', no leading '/')",
        ));
    }
    Ok(path.components().collect())
}

#[cfg(test)]
mod tests {
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
        v["codingAssistantAccessToken"] =
            serde_json::json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefgh"}});
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
        for bad in ["-x", "a..b", "a b", "x:y", "refs/heads/x", "", "a~1"] {
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
}
