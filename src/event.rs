//! The one normalized event schema every provider is translated into (docs/events.md).

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

/// What happened, without the envelope (`seq`, `jobId`, `ts`) that the event log adds on append.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventKind {
    #[serde(rename_all = "camelCase")]
    Connected {
        worker_id: String,
        provider: String,
        version: String,
    },
    Message {
        text: String,
        level: Level,
    },
    GithubPullProgress(PullProgress),
    #[serde(rename_all = "camelCase")]
    Session {
        session_id: String,
    },
    AssistantMessage {
        text: String,
    },
    Thinking {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    #[serde(rename_all = "camelCase")]
    ToolResult {
        tool_use_id: String,
        output: String,
        is_error: bool,
    },
    /// The agent asks before it acts (docs/approvals.md); the job waits for `POST /jobs/{jobId}/permissions/{requestId}`.
    PermissionRequest(Box<PermissionRequest>),
    #[serde(rename_all = "camelCase")]
    PermissionResolved {
        request_id: String,
        /// None when the question was withdrawn (a cancel) rather than answered.
        option_id: Option<String>,
        by: ResolvedBy,
    },
    /// The agent's plan, whole each time it changes.
    Plan {
        entries: Vec<PlanEntry>,
    },
    Log {
        stream: StreamName,
        text: String,
    },
    GitChanges(Changes),
    GitPush {
        branch: String,
        commit: String,
        remote: String,
    },
    PullRequest(PullRequestRef),
    /// A conversation's turn begins (docs/conversations.md); `text` is the message that starts it.
    TurnStarted {
        turn: u64,
        text: String,
    },
    /// A conversation's turn ended well; the job goes on, waiting for the next message or the close.
    TurnCompleted(Box<TurnCompleted>),
    /// A conversation's turn ended badly (or was interrupted); the job goes on.
    TurnFailed {
        turn: u64,
        code: ErrorCode,
        message: String,
    },
    Completed(Box<Completed>),
    Error(Box<Failure>),
}

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::Connected { .. } => "connected",
            EventKind::Message { .. } => "message",
            EventKind::GithubPullProgress(_) => "github_pull_progress",
            EventKind::Session { .. } => "session",
            EventKind::AssistantMessage { .. } => "assistant_message",
            EventKind::Thinking { .. } => "thinking",
            EventKind::ToolUse { .. } => "tool_use",
            EventKind::ToolResult { .. } => "tool_result",
            EventKind::PermissionRequest(_) => "permission_request",
            EventKind::PermissionResolved { .. } => "permission_resolved",
            EventKind::Plan { .. } => "plan",
            EventKind::Log { .. } => "log",
            EventKind::GitChanges(_) => "git_changes",
            EventKind::GitPush { .. } => "git_push",
            EventKind::PullRequest(_) => "pull_request",
            EventKind::TurnStarted { .. } => "turn_started",
            EventKind::TurnCompleted(_) => "turn_completed",
            EventKind::TurnFailed { .. } => "turn_failed",
            EventKind::Completed(_) => "completed",
            EventKind::Error(_) => "error",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Completed(_) | EventKind::Error(_))
    }

    pub fn info(text: impl Into<String>) -> Self {
        EventKind::Message {
            text: text.into(),
            level: Level::Info,
        }
    }

    /// A stdout line that is not in the provider's format (a banner, a crash trace): kept as a `log` event, never
    /// dropped.
    pub fn unparsed_stdout(line: &str) -> Self {
        EventKind::Log {
            stream: StreamName::Stdout,
            text: line.to_string(),
        }
    }

    pub fn warn(text: impl Into<String>) -> Self {
        EventKind::Message {
            text: text.into(),
            level: Level::Warn,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRequest {
    /// The worker's id for this question, unique within the job: the path segment of the answer.
    pub request_id: String,
    /// The `tool_use` it is about, when the agent named one.
    pub tool_call_id: Option<String>,
    pub title: String,
    /// ACP's tool kind: `read`, `edit`, `delete`, `move`, `search`, `execute`, `think`, `fetch`, `other`.
    pub kind: Option<String>,
    /// The tool's input as the agent sent it.
    pub input: Option<Value>,
    /// For a file edit: the change.
    pub diff: Option<Diff>,
    pub options: Vec<PermissionOption>,
    pub timeout_seconds: u64,
    pub on_timeout: crate::approvals::OnTimeout,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub path: String,
    /// None for a new file.
    pub old_text: Option<String>,
    pub new_text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionOption {
    pub option_id: String,
    pub name: String,
    /// `allow_once`, `allow_always`, `reject_once` or `reject_always`.
    pub kind: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResolvedBy {
    /// `POST /jobs/{jobId}/permissions/{requestId}`.
    Client,
    /// No answer within `approvals.timeoutSeconds`: `approvals.onTimeout` applied.
    Timeout,
    /// The job was stopped while the question was open.
    Cancel,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlanEntry {
    pub content: String,
    /// `pending`, `in_progress` or `completed`.
    pub status: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullProgress {
    pub phase: PullPhase,
    pub received_objects: u64,
    pub total_objects: u64,
    pub indexed_deltas: u64,
    pub total_deltas: u64,
    pub received_bytes: u64,
    pub percent: u8,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PullPhase {
    #[default]
    Connecting,
    Receiving,
    Resolving,
    Checkout,
    Done,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    pub files: Vec<FileChange>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FileChange {
    pub path: String,
    pub status: String,
    pub insertions: u64,
    pub deletions: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PullRequestRef {
    pub url: String,
    pub number: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    /// The worker counted these itself, from the model API's answers as they passed its broker (docs/events.md),
    /// instead of taking the CLI's word for them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub metered: bool,
    /// Model calls the broker forwarded; only with `metered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_calls: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    pub session_id: Option<String>,
    pub result: Option<String>,
    pub duration_ms: u64,
    pub num_turns: u64,
    pub cost_usd: Option<f64>,
    pub usage: Usage,
    pub changes: Option<Changes>,
    pub pull_request: Option<PullRequestRef>,
}

/// One turn of a conversation, as `turn_completed` reports it: the figures are the turn's own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnCompleted {
    pub turn: u64,
    pub session_id: Option<String>,
    pub result: Option<String>,
    pub duration_ms: u64,
    pub num_turns: u64,
    pub cost_usd: Option<f64>,
    pub usage: Usage,
    /// What the turn changed in the work tree, from its start; None without a repository.
    pub changes: Option<Changes>,
}

/// Terminal error codes of docs/events.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    CloneFailed,
    CheckoutFailed,
    AuthFailed,
    RateLimited,
    ProviderNotInstalled,
    ProviderFailed,
    Timeout,
    IdleTimeout,
    Cancelled,
    Shutdown,
    PushFailed,
    PullRequestFailed,
    Internal,
    /// Gateway only: the worker's stream broke before its terminal event.
    WorkerLost,
    /// Gateway only: the gateway that held the job in its line died before a worker took it; send it again.
    GatewayLost,
    /// Gateway only: no worker freed up within `GATEWAY_QUEUE_TIMEOUT_SECONDS`.
    QueueTimeout,
    /// `turn_failed` only: the turn was stopped by a message sent with `interrupt`.
    Interrupted,
    /// A limit of the request's `limits` (or the worker's `LIMIT_*`) was reached; the broker refused the next
    /// model call.
    BudgetExceeded,
}

impl ErrorCode {
    /// Every code, in declaration order: what the reference (docs/events.md) is checked against. The match in
    /// `as_str` makes a new variant a compile error there; a test holds this list to the same length.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::CloneFailed,
        ErrorCode::CheckoutFailed,
        ErrorCode::AuthFailed,
        ErrorCode::RateLimited,
        ErrorCode::ProviderNotInstalled,
        ErrorCode::ProviderFailed,
        ErrorCode::Timeout,
        ErrorCode::IdleTimeout,
        ErrorCode::Cancelled,
        ErrorCode::Shutdown,
        ErrorCode::PushFailed,
        ErrorCode::PullRequestFailed,
        ErrorCode::Internal,
        ErrorCode::WorkerLost,
        ErrorCode::GatewayLost,
        ErrorCode::QueueTimeout,
        ErrorCode::Interrupted,
        ErrorCode::BudgetExceeded,
    ];

    /// Whether the same request may succeed if sent again (possibly to another replica).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Shutdown
                | ErrorCode::WorkerLost
                | ErrorCode::GatewayLost
                | ErrorCode::QueueTimeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::CloneFailed => "clone_failed",
            ErrorCode::CheckoutFailed => "checkout_failed",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ProviderNotInstalled => "provider_not_installed",
            ErrorCode::ProviderFailed => "provider_failed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Shutdown => "shutdown",
            ErrorCode::PushFailed => "push_failed",
            ErrorCode::PullRequestFailed => "pull_request_failed",
            ErrorCode::Internal => "internal",
            ErrorCode::WorkerLost => "worker_lost",
            ErrorCode::GatewayLost => "gateway_lost",
            ErrorCode::QueueTimeout => "queue_timeout",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::BudgetExceeded => "budget_exceeded",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `budget_exceeded` only: the limit that was reached (`maxTokens`, `maxCostUsd`, `maxModelCalls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub limit: Option<&'static str>,
    /// `budget_exceeded` only: what the job had used when the limit stopped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<Box<BudgetUsed>>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            retryable: code.retryable(),
            exit_code: None,
            stderr_tail: None,
            session_id: None,
            limit: None,
            used: None,
        }
    }
}

/// A job's consumption as its budget counts it: every token of every model call (input, output, cache reads and
/// writes), the cost of those at the price table's rates, and the calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetUsed {
    pub tokens: u64,
    pub cost_usd: f64,
    pub model_calls: u64,
}

impl From<Failure> for EventKind {
    fn from(f: Failure) -> Self {
        EventKind::Error(Box::new(f))
    }
}

/// An event with its envelope, as it goes on the wire.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    pub kind_name: &'static str,
    pub seq: u64,
    #[serde(rename = "jobId")]
    pub job_id: &'a str,
    pub ts: &'a str,
    #[serde(flatten)]
    pub kind: &'a EventKind,
}

pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The gateway's `queued` event, sent before the job starts and without an `id:` line.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued<'a> {
    /// `queued`
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub job_id: &'a str,
    pub ts: String,
    /// 1 = next.
    pub position: usize,
    pub queue_length: usize,
    /// Workers that answer.
    pub workers: usize,
    /// Of those, the ones not free.
    pub busy: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_puts_type_first_and_uses_camel_case() {
        let kind = EventKind::ToolResult {
            tool_use_id: "t1".into(),
            output: "ok".into(),
            is_error: false,
        };
        let env = Envelope {
            kind_name: kind.type_name(),
            seq: 7,
            job_id: "j",
            ts: "T",
            kind: &kind,
        };
        assert_eq!(
            serde_json::to_string(&env).unwrap(),
            r#"{"type":"tool_result","seq":7,"jobId":"j","ts":"T","toolUseId":"t1","output":"ok","isError":false}"#
        );
    }

    #[test]
    fn error_omits_unknown_details() {
        let kind: EventKind = Failure::new(ErrorCode::Cancelled, "cancelled by client").into();
        let v = serde_json::to_value(&kind).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code":"cancelled","message":"cancelled by client","retryable":false})
        );
    }
}
