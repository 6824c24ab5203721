//! The scenarios every provider with a real CLI in the suite goes through, from one table: the model API refuses
//! with a 401 and with a 429, a session resumes on another replica through the session store, and an unknown
//! session is refused. `every_provider!` at the end stamps one test per scenario and provider
//! (`providers::<provider>::<scenario>`); a new provider is one `ProviderCase` and one line there. What only one
//! provider does stays in its own file.

use std::{any::Any, time::Duration};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    TestWorker, mock_anthropic::MockAnthropic, mock_chat::MockChat, mock_gemini::MockGemini, mock_openai::MockOpenAi,
    reply::Reply, sse::SseEvent, sse::assert_well_formed,
};

/// A mock model API as the shared scenarios see it.
pub trait ModelApi: Any {
    /// How many requests of any kind it received.
    fn requests(&self) -> usize;
    /// The requests that carried the conversation (not a title or a classifier's), in order.
    fn conversation(&self) -> Vec<Value>;
    /// Every text of one of those requests, flattened.
    fn conversation_text(&self, request: &Value) -> String;
    /// The time from the first conversation request to the last, where the mock notes when each arrived.
    fn conversation_span(&self) -> Option<Duration> {
        None
    }
    /// What it answers from the next request on.
    fn set_reply(&self, reply: Reply);
}

impl dyn ModelApi {
    /// The concrete mock, for the provider's own worker function.
    fn concrete<T: ModelApi>(&self) -> &T {
        (self as &dyn Any)
            .downcast_ref()
            .expect("the case's worker is given the case's own mock")
    }
}

/// Anthropic's conversation requests offer tools; the auxiliary ones (titles, quota checks) do not.
fn offers_tools(request: &Value) -> bool {
    request["tools"].as_array().is_some_and(|tools| !tools.is_empty())
}

impl ModelApi for MockAnthropic {
    fn set_reply(&self, reply: Reply) {
        MockAnthropic::set_reply(self, reply);
    }

    fn requests(&self) -> usize {
        MockAnthropic::requests(self).len()
    }
    fn conversation(&self) -> Vec<Value> {
        MockAnthropic::requests(self).into_iter().filter(offers_tools).collect()
    }
    fn conversation_text(&self, request: &Value) -> String {
        crate::support::conversation_text(request)
    }
}

impl ModelApi for MockOpenAi {
    fn set_reply(&self, reply: Reply) {
        MockOpenAi::set_reply(self, reply);
    }

    fn requests(&self) -> usize {
        MockOpenAi::requests(self).len()
    }
    fn conversation(&self) -> Vec<Value> {
        MockOpenAi::requests(self)
    }
    fn conversation_text(&self, request: &Value) -> String {
        crate::support::mock_openai::conversation_text(request)
    }
}

impl ModelApi for MockChat {
    fn set_reply(&self, reply: Reply) {
        MockChat::set_reply(self, reply);
    }

    fn requests(&self) -> usize {
        MockChat::requests(self).len()
    }
    fn conversation(&self) -> Vec<Value> {
        MockChat::requests(self)
            .into_iter()
            .filter(crate::support::mock_chat::is_conversation)
            .collect()
    }
    fn conversation_text(&self, request: &Value) -> String {
        crate::support::conversation_text(request)
    }
    fn conversation_span(&self) -> Option<Duration> {
        let arrivals: Vec<_> = MockChat::requests(self)
            .iter()
            .zip(self.arrivals())
            .filter(|(request, _)| crate::support::mock_chat::is_conversation(request))
            .map(|(_, at)| at)
            .collect();
        Some(arrivals.last()?.duration_since(*arrivals.first()?))
    }
}

impl ModelApi for MockGemini {
    fn set_reply(&self, reply: Reply) {
        MockGemini::set_reply(self, reply);
    }

    fn requests(&self) -> usize {
        self.calls().len()
    }
    fn conversation(&self) -> Vec<Value> {
        self.turns()
    }
    fn conversation_text(&self, request: &Value) -> String {
        crate::support::mock_gemini::conversation_text(request)
    }
}

/// A provider whose real CLI the suite runs against a mock of its model API.
pub struct ProviderCase {
    /// `codingAssistantProvider`.
    pub name: &'static str,
    /// Its model API's mock, answering every request with `reply`.
    pub mock: fn(Reply) -> Box<dyn ModelApi>,
    /// A worker that runs the real CLI against `mock`, with `extra` variables.
    pub worker: fn(&dyn ModelApi, &[(&str, &str)]) -> TestWorker,
    /// A request for `prompt` (with whatever the provider needs besides, a model or a token).
    pub job: fn(&str) -> Value,
    /// How its session ids begin.
    pub session_prefix: &'static str,
    pub on_401: Refusal,
    pub on_429: Refusal,
    /// What it says when asked to resume a session nobody has.
    pub unknown_session: UnknownSession,
}

/// What else holds when the model API refuses every call with one status, besides the error code.
pub struct Refusal {
    /// The CLI's exit code.
    pub exit_code: Option<i64>,
    /// Whether the message names the HTTP status.
    pub names_status: bool,
    /// How many conversation requests the CLI makes, retries included.
    pub calls: Option<usize>,
    /// How long those requests may take from the first to the last: the mocks ask for a quick retry.
    pub retries_within: Option<Duration>,
    /// How long the whole job may take: where the CLI's retries are off, a refusal ends the run at once.
    pub ends_within: Option<Duration>,
}

impl Refusal {
    pub const UNCHECKED: Refusal = Refusal {
        exit_code: None,
        names_status: false,
        calls: None,
        retries_within: None,
        ends_within: None,
    };
}

pub struct UnknownSession {
    pub id: &'static str,
    /// In the failure's message.
    pub says: &'static str,
    pub exit_code: Option<i64>,
}

/// "Within seconds", generous for a loaded machine: what a run without retries takes to fail.
const PROMPT_FAILURE: Duration = Duration::from_secs(30);

pub const CLAUDE_CODE: ProviderCase = ProviderCase {
    name: "claude-code",
    mock: |reply| Box::new(MockAnthropic::start(reply)),
    worker: |mock, extra| crate::claude_code::claude_worker(mock.concrete(), extra),
    job: crate::support::job,
    session_prefix: "",
    on_401: Refusal::UNCHECKED,
    on_429: Refusal::UNCHECKED,
    unknown_session: UnknownSession {
        id: "0b5f6c1e-0000-4000-8000-000000000000",
        says: "No conversation found",
        exit_code: None,
    },
};

pub const COPILOT: ProviderCase = ProviderCase {
    name: "copilot",
    mock: |reply| Box::new(MockAnthropic::start(reply)),
    worker: |mock, extra| crate::copilot::copilot_worker(mock.concrete(), extra),
    job: crate::copilot::copilot_job,
    session_prefix: "",
    on_401: Refusal::UNCHECKED,
    on_429: Refusal::UNCHECKED,
    unknown_session: UnknownSession {
        id: "99999999-2222-4333-8444-555555555555",
        says: "No session",
        exit_code: None,
    },
};

pub const CODEX: ProviderCase = ProviderCase {
    name: "codex",
    mock: |reply| Box::new(MockOpenAi::start(reply)),
    worker: |mock, extra| crate::codex::codex_worker(mock.concrete(), extra),
    job: crate::codex::codex_job,
    session_prefix: "",
    // Its retries are off in the mock's config.toml.
    on_401: Refusal {
        exit_code: Some(1),
        calls: Some(1),
        ends_within: Some(PROMPT_FAILURE),
        ..Refusal::UNCHECKED
    },
    on_429: Refusal {
        calls: Some(1),
        ends_within: Some(PROMPT_FAILURE),
        ..Refusal::UNCHECKED
    },
    unknown_session: UnknownSession {
        id: "0b5f6c1e-0000-4000-8000-000000000000",
        says: "no rollout found for thread id",
        exit_code: Some(1),
    },
};

pub const GEMINI: ProviderCase = ProviderCase {
    name: "gemini",
    mock: |reply| Box::new(MockGemini::start(reply)),
    worker: |mock, extra| crate::gemini::gemini_worker(mock.concrete(), extra),
    job: crate::gemini::gemini_job,
    session_prefix: "",
    // The CLI exits with the HTTP status.
    on_401: Refusal {
        exit_code: Some(401 % 256),
        names_status: true,
        ..Refusal::UNCHECKED
    },
    // One try: the worker hands GEMINI_MAX_ATTEMPTS to the CLI's settings.
    on_429: Refusal {
        exit_code: Some(429 % 256),
        calls: Some(1),
        ..Refusal::UNCHECKED
    },
    unknown_session: UnknownSession {
        id: "0b5f6c1e-0000-4000-8000-000000000000",
        says: "No previous sessions found",
        exit_code: None,
    },
};

pub const OPENCODE: ProviderCase = ProviderCase {
    name: "opencode",
    mock: |reply| Box::new(MockChat::start(reply)),
    worker: |mock, extra| crate::opencode::opencode_worker(mock.concrete(), extra),
    job: crate::opencode::opencode_job,
    session_prefix: "ses_",
    on_401: Refusal {
        exit_code: Some(1),
        names_status: true,
        calls: Some(1),
        ..Refusal::UNCHECKED
    },
    // Five retries, each after the 10 ms the mock asks for (`retry-after-ms`) rather than opencode's own backoff,
    // which would take a minute.
    on_429: Refusal {
        calls: Some(6),
        retries_within: Some(Duration::from_secs(15)),
        ..Refusal::UNCHECKED
    },
    unknown_session: UnknownSession {
        id: "ses_0000000000000000000000000a",
        says: "Session not found",
        exit_code: Some(1),
    },
};

/// Runs one job against an API that refuses every call with `status`; returns the terminal event after checking
/// what holds for every refusal and what the case says about this one.
async fn refused_with(case: &ProviderCase, status: u16, expected: &Refusal) -> Value {
    let name = case.name;
    let mock = (case.mock)(Reply::Status(status));
    let worker = (case.worker)(mock.as_ref(), &[]);
    let started = std::time::Instant::now();

    let events = worker.execute(&(case.job)("hello")).await.collect().await;

    assert_well_formed(&events, 0);
    let end = events.last().unwrap().data.clone();
    let session = session_of(name, &events);
    assert_eq!(end["sessionId"], session.as_str(), "{name}: {end}");
    assert!(session.starts_with(case.session_prefix), "{name}: {session}");
    if let Some(code) = expected.exit_code {
        assert_eq!(end["exitCode"], code, "{name}: {end}");
    }
    if expected.names_status {
        let message = end["message"].as_str().unwrap();
        assert!(message.contains(&status.to_string()), "{name}: {end}");
    }
    if let Some(calls) = expected.calls {
        assert_eq!(mock.conversation().len(), calls, "{name}: model calls after a {status}");
    }
    if let Some(within) = expected.retries_within {
        let span = mock.conversation_span().expect("the mock notes when requests arrive");
        assert!(span < within, "{name}: the retries after a {status} took {span:?}");
    }
    if let Some(within) = expected.ends_within {
        let took = started.elapsed();
        assert!(took < within, "{name}: a {status} took {took:?} to end the job");
    }
    end
}

/// The session the stream announced.
fn session_of(name: &str, events: &[SseEvent]) -> String {
    let session = events
        .iter()
        .find(|e| e.kind() == "session")
        .unwrap_or_else(|| panic!("{name}: no session event"));
    session.data["sessionId"].as_str().expect("a session id").to_string()
}

async fn a_401_from_the_api_ends_with_exactly_one_auth_failed(case: &ProviderCase) {
    let end = refused_with(case, 401, &case.on_401).await;
    assert_eq!(end["code"], "auth_failed", "{}: {end}", case.name);
    assert_eq!(end["retryable"], false, "{}: {end}", case.name);
}

async fn a_429_from_the_api_ends_with_rate_limited(case: &ProviderCase) {
    let end = refused_with(case, 429, &case.on_429).await;
    assert_eq!(end["code"], "rate_limited", "{}: {end}", case.name);
    assert_eq!(end["retryable"], true, "{}: {end}", case.name);
}

/// Worker A runs a job and exits; worker B, with its own fresh HOME and workspace and the same SESSION_STORE_DIR,
/// continues the conversation: the mock API sees job 1's conversation in job 2's request.
async fn a_session_resumes_on_another_replica_through_the_store(case: &ProviderCase) {
    const CODE_WORD: &str = "PELICAN-7431";
    let name = case.name;
    let store = TempDir::new().unwrap();
    let store_dir = store.path().to_str().unwrap();
    let mock = (case.mock)(Reply::Text("Noted.".into()));

    let mut a = (case.worker)(mock.as_ref(), &[("SESSION_STORE_DIR", store_dir)]);
    let first = (case.job)(&format!("Remember the code word {CODE_WORD}."));
    let events = a.execute(&first).await.collect().await;
    assert_well_formed(&events, 0);
    let done = &events.last().unwrap().data;
    assert_eq!(done["type"], "completed", "{name}: {done}");
    let session = done["sessionId"].as_str().expect("a session id").to_string();
    assert!(a.exit_status().await.success(), "{name}: worker A did not exit cleanly");

    let b = (case.worker)(mock.as_ref(), &[("SESSION_STORE_DIR", store_dir)]);
    assert_ne!(a.home, b.home);
    assert_ne!(
        a.workspace_dir, b.workspace_dir,
        "the session does not depend on the workspace's path"
    );
    let before = mock.conversation().len();
    let mut second = (case.job)("Which code word did I give you?");
    second["resumeSessionId"] = json!(session);
    let events = b.execute(&second).await.collect().await;

    assert_well_formed(&events, 0);
    let done = &events.last().unwrap().data;
    assert_eq!(done["type"], "completed", "{name}: {done}");
    assert_eq!(done["sessionId"], session.as_str(), "{name}: {done}");
    assert!(
        events
            .iter()
            .any(|e| e.kind() == "message" && e.data["text"].as_str().unwrap_or("").contains("restored session")),
        "{name}: {events:?}"
    );
    let requests = mock.conversation();
    let last = requests[before..]
        .last()
        .unwrap_or_else(|| panic!("{name}: job 2 called no model"));
    crate::support::assert_the_conversation_goes_on(&mock.conversation_text(last), CODE_WORD);
}

async fn resuming_an_unknown_session_without_a_store_ends_with_the_clis_reason(case: &ProviderCase) {
    let name = case.name;
    let unknown = &case.unknown_session;
    let mock = (case.mock)(Reply::Text("Hi.".into()));
    let worker = (case.worker)(mock.as_ref(), &[]);

    let end = crate::support::resume_unknown_session(&worker, (case.job)("continue"), unknown.id, unknown.says).await;

    if let Some(code) = unknown.exit_code {
        assert_eq!(end["exitCode"], code, "{name}: {end}");
    }
    let stderr = end["stderrTail"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no stderr tail: {end}"));
    assert!(!stderr.contains('\u{1b}'), "{name}: terminal escapes in {end}");
    assert_eq!(mock.requests(), 0, "{name}: no model call for an unknown session");
}

/// One module per provider, with one test per scenario.
macro_rules! every_provider {
    ($($module:ident => $case:ident,)*) => {$(
        mod $module {
            #[tokio::test]
            async fn a_401_from_the_api_ends_with_exactly_one_auth_failed() {
                super::a_401_from_the_api_ends_with_exactly_one_auth_failed(&super::$case).await;
            }

            #[tokio::test]
            async fn a_429_from_the_api_ends_with_rate_limited() {
                super::a_429_from_the_api_ends_with_rate_limited(&super::$case).await;
            }

            #[tokio::test]
            async fn a_session_resumes_on_another_replica_through_the_store() {
                super::a_session_resumes_on_another_replica_through_the_store(&super::$case).await;
            }

            #[tokio::test]
            async fn resuming_an_unknown_session_without_a_store_ends_with_the_clis_reason() {
                super::resuming_an_unknown_session_without_a_store_ends_with_the_clis_reason(&super::$case).await;
            }
        }
    )*};
}

every_provider! {
    claude_code => CLAUDE_CODE,
    copilot => COPILOT,
    codex => CODEX,
    gemini => GEMINI,
    opencode => OPENCODE,
}
