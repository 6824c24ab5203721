//! The `POST /execute` body: parsing with field-precise errors, then validation into a `JobRequest` (docs/api.md).
//! Nothing here touches the disk, the network or the job slot.

use std::{
    path::{Component, Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;

mod github;

use crate::{
    approvals::{ApprovalsSpec, Policy},
    broker::Budget,
    error::ApiError,
    ids::{BranchName, JobId, SessionId},
    provider::{AcpSupport, McpPolicy, ProviderKind, ProviderRequest, ProviderRun},
    secret::{MIN_SECRET_LEN, Secret},
    settings::Settings,
    url_policy::UrlPolicy,
};

/// The `POST /execute` body (docs/api.md). Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = ExecuteRequest)]
pub(crate) struct RawRequest {
    /// The prompt; must not be empty.
    #[schema(min_length = 1)]
    user_request: String,
    /// One of the providers this build knows (the worker's `/health` says which are installed).
    #[schema(schema_with = provider_names)]
    coding_assistant_provider: String,
    /// The provider credential: a token string, or for some providers a credentials JSON object.
    #[schema(schema_with = string_or_object)]
    coding_assistant_access_token: Option<Value>,
    /// A session id of the provider's, to continue.
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    resume_session_id: Option<SessionId>,
    /// The client's id for the job (default: a new UUID).
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    job_id: Option<JobId>,
    github: Option<GithubSpec>,
    database: Option<DatabaseSpec>,
    callback: Option<CallbackSpec>,
    /// A sub-folder of WORKSPACE_DIR (relative, no `..`); default: the job id.
    #[schema(min_length = 1, pattern = r"^[^/\\]")]
    workspace: Option<String>,
    cancel_on_disconnect: Option<bool>,
    /// Capped by the worker's JOB_TIMEOUT_SECONDS.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 2147483647, value_type = Option<i32>)]
    timeout_seconds: Option<u32>,
    /// Read by the provider, into its own options type (`model`, `maxTurns`, `permissionMode`, `allowedTools`, …).
    #[schema(value_type = Option<Object>)]
    provider_options: Option<Value>,
    /// A client answers the agent's permission requests (docs/approvals.md); the provider then runs over ACP.
    approvals: Option<ApprovalsSpec>,
    /// Keeps the job open after its turn for follow-up messages until it is closed (docs/conversations.md).
    conversation: Option<ConversationSpec>,
    /// The job's budget: at a limit the worker's model-API broker refuses the next model call and the job ends
    /// with `budget_exceeded`. A limit left out is the worker's (`LIMIT_*`), if it has one.
    limits: Option<LimitsSpec>,
}

#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Tokens of every model call together: input, output, cache reads and cache writes.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 2147483647, value_type = Option<i32>)]
    pub max_tokens: Option<u32>,
    /// Dollars, at the worker's price table.
    #[schema(exclusive_minimum = 0)]
    pub max_cost_usd: Option<f64>,
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 2147483647, value_type = Option<i32>)]
    pub max_model_calls: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConversationSpec {
    /// Seconds without a message after a turn ended before the conversation closes itself (default 600).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 2147483647, value_type = Option<i32>)]
    pub idle_seconds: Option<u32>,
}

/// How long a conversation waits for a message after a turn when the request does not say.
pub const DEFAULT_CONVERSATION_IDLE: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GithubSpec {
    pub repo_url: String,
    #[schema(value_type = Option<String>)]
    pub branch: Option<BranchName>,
    pub access_token: Option<String>,
    /// Commits to fetch; 0 = the full history.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 2147483647, value_type = Option<i32>)]
    pub depth: Option<u32>,
    pub push: Option<PushSpec>,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PushSpec {
    #[schema(value_type = String)]
    pub branch: BranchName,
    pub commit_message: Option<String>,
    pub pull_request: Option<PullRequestSpec>,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullRequestSpec {
    pub title: Option<String>,
    pub body: Option<String>,
    #[schema(value_type = Option<String>)]
    pub base: Option<BranchName>,
    pub draft: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseSpec {
    #[schema(value_type = String, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
    pub session_id: SessionId,
    pub access_token: String,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackSpec {
    pub url: String,
}

/// JSON Schema counts `5.0` as an integer, so a client that writes whole numbers as floats is right; anything
/// with a fraction, or outside 0..=i32::MAX (the published bound), is refused.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n
        .as_u64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
    match whole {
        Some(v) if v <= i32::MAX as u64 => Ok(Some(v as u32)),
        _ => Err(D::Error::invalid_value(
            serde::de::Unexpected::Other(&n.to_string()),
            &"a whole number from 0 to 2147483647",
        )),
    }
}

fn provider_names() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ProviderKind::all().map(ProviderKind::as_str)))
        .build()
}

fn string_or_object() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Object))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// A request that passed validation: everything the job needs, typed.
#[derive(Debug)]
pub struct JobRequest {
    pub job_id: JobId,
    pub prompt: String,
    pub provider: ProviderKind,
    /// The provider's own typed input: the request's credential and `providerOptions`, already checked.
    pub provider_run: Box<dyn ProviderRun>,
    pub resume_session_id: Option<SessionId>,
    pub github: Option<GithubSpec>,
    /// Relative to `WORKSPACE_DIR`; defaults to the job id.
    pub workspace: PathBuf,
    pub cancel_on_disconnect: bool,
    pub timeout: Duration,
    /// Stream persistence (docs/persistence.md): where the chunks go, with the request's token.
    pub database: Option<crate::persistence::Destination>,
    /// The completion webhook (docs/persistence.md), already checked against `CALLBACK_ALLOWED_HOSTS`.
    pub callback: Option<reqwest::Url>,
    /// Set when the provider runs over ACP: who answers its permission requests.
    pub acp: Option<Policy>,
    /// Set for a conversation job: how long it waits for the next message after a turn.
    pub conversation: Option<Duration>,
    /// The request's `limits` over the worker's defaults; enforced by the job's model-API broker.
    pub budget: Budget,
}

impl JobRequest {
    /// Every request secret, for the job's redactor.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = self.provider_run.secrets();
        if let Some(token) = self.github.as_ref().and_then(|g| g.access_token.as_deref()) {
            out.push(token);
        }
        if let Some(db) = &self.database {
            out.push(db.token.expose());
        }
        out
    }
}

/// The `github` part of a resume that left it out, from the session's work tree: checked like a request's, so a
/// repository the worker no longer allows is refused the same way.
pub fn github_from_snapshot(url: &str, branch: Option<&str>, settings: &Settings) -> Result<GithubSpec, ApiError> {
    let branch = branch
        .map(|b| BranchName::try_from(b.to_string()))
        .transpose()
        .map_err(|_| ApiError::invalid("github.branch", "the session's work tree names an invalid branch"))?;
    github::validate_github(
        GithubSpec {
            repo_url: url.to_string(),
            branch,
            access_token: None,
            depth: None,
            push: None,
        },
        settings,
    )
}

pub fn parse(body: &[u8], settings: &Settings) -> Result<JobRequest, ApiError> {
    let value = crate::error::json_body(body)?;
    let raw = crate::error::object_of(&value)?;
    objects_only(&value)?;
    validate(raw, settings)
}

/// The request's nested objects, which serde would also read from a JSON array (by position): `"limits": [null]`
/// must be refused, not taken as "no limits".
const OBJECTS: [&str; 9] = [
    "/github",
    "/github/push",
    "/github/push/pullRequest",
    "/database",
    "/callback",
    "/providerOptions",
    "/approvals",
    "/conversation",
    "/limits",
];

fn objects_only(value: &Value) -> Result<(), ApiError> {
    for pointer in OBJECTS {
        match value.pointer(pointer) {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => {
                let field = pointer.trim_start_matches('/').replace('/', ".");
                return Err(ApiError::InvalidJson {
                    message: format!("{field}: must be a JSON object"),
                    field: Some(field),
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn required(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, format!("{field} must not be empty")));
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
    let acp = match (&raw.approvals, provider.provider().acp()) {
        (Some(_), AcpSupport::No) => {
            return Err(ApiError::invalid(
                "approvals",
                format!(
                    "approvals: {provider} has no Agent Client Protocol path, so its permission requests cannot be \
                     put to a client; leave approvals out or pick a provider that has one"
                ),
            ));
        }
        (Some(spec), _) => Some(spec.policy()?),
        (None, AcpSupport::Only) => Some(Policy::AllowAll),
        (None, _) => None,
    };
    let provider_run = provider.provider().configure(ProviderRequest {
        credential: raw.coding_assistant_access_token,
        options: raw.provider_options,
        mcp_policy: McpPolicy {
            allowed_commands: settings.mcp_allowed_commands.clone(),
            // An http MCP server is reached on the client's behalf, like the completion webhook.
            allowed_hosts: settings.callback_allowed_hosts.clone(),
            allow_insecure: settings.callback_allow_insecure,
        },
        acp: acp.is_some(),
    })?;
    let job_id = raw.job_id.unwrap_or_else(JobId::new_random);
    let github = raw.github.map(|g| github::validate_github(g, settings)).transpose()?;
    let database = raw.database.map(|d| validate_database(d, settings)).transpose()?;
    let callback = raw.callback.map(|c| validate_callback(c, settings)).transpose()?;
    let workspace = match raw.workspace {
        Some(w) => workspace(&w)?,
        None => PathBuf::from(job_id.as_str()),
    };
    let budget = raw
        .limits
        .map(|l| validate_limits(l, provider, settings))
        .transpose()?
        .unwrap_or_default()
        .or(settings.limits);
    let timeout = match raw.timeout_seconds {
        Some(0) => {
            return Err(ApiError::invalid("timeoutSeconds", "timeoutSeconds must be at least 1"));
        }
        Some(secs) => Duration::from_secs(secs.into()).min(settings.job_timeout),
        None => settings.job_timeout,
    };
    let conversation = match raw.conversation {
        Some(ConversationSpec { idle_seconds: Some(0) }) => {
            return Err(ApiError::invalid(
                "conversation.idleSeconds",
                "conversation.idleSeconds must be at least 1",
            ));
        }
        Some(spec) => Some(
            spec.idle_seconds
                .map_or(DEFAULT_CONVERSATION_IDLE, |s| Duration::from_secs(s.into())),
        ),
        None => None,
    };
    Ok(JobRequest {
        job_id,
        conversation,
        prompt: raw.user_request,
        provider,
        provider_run,
        resume_session_id: raw.resume_session_id,
        github,
        workspace,
        cancel_on_disconnect: raw.cancel_on_disconnect.unwrap_or(false),
        timeout,
        database,
        callback,
        acp,
        budget,
    })
}

fn validate_limits(limits: LimitsSpec, provider: ProviderKind, settings: &Settings) -> Result<Budget, ApiError> {
    for (field, value) in [
        ("maxTokens", limits.max_tokens),
        ("maxModelCalls", limits.max_model_calls),
    ] {
        if value == Some(0) {
            return Err(ApiError::invalid(
                format!("limits.{field}"),
                format!("limits.{field} must be at least 1"),
            ));
        }
    }
    if limits.max_cost_usd.is_some_and(|c| !c.is_finite() || c <= 0.0) {
        return Err(ApiError::invalid(
            "limits.maxCostUsd",
            "limits.maxCostUsd must be a number of dollars greater than 0",
        ));
    }
    // Only the broker sees the model calls; without it a limit would silently limit nothing.
    if settings.broker.is_none() || !provider.provider().brokerable() {
        return Err(ApiError::invalid(
            "limits",
            format!(
                "limits: {provider} does not run through the worker's model-API broker here (BROKER=off, or a \
                 provider without a model API endpoint), so no limit could be kept"
            ),
        ));
    }
    Ok(Budget {
        max_tokens: limits.max_tokens.map(u64::from),
        max_cost_usd: limits.max_cost_usd,
        max_model_calls: limits.max_model_calls.map(u64::from),
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
mod tests;
