//! Resume across replicas: worker A runs a job and exits; worker B, with its own fresh HOME and the same
//! SESSION_STORE_DIR, continues the conversation. The mock API must see job 1's conversation in job 2's request.

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{
    claude_code::claude_worker,
    copilot::{copilot_job, copilot_worker},
    support::{
        TestWorker, conversation_text, job,
        mock_anthropic::{MockAnthropic, Reply},
        sse::assert_well_formed,
    },
};

const CODE_WORD: &str = "PELICAN-7431";

/// Runs one job to its end and returns its terminal event's data.
async fn run_to_end(worker: &TestWorker, body: &Value) -> (Vec<String>, Value) {
    let events = worker.execute(body).await.collect().await;
    assert_well_formed(&events, 0);
    let messages = events
        .iter()
        .filter(|e| e.kind() == "message")
        .map(|e| e.data["text"].as_str().unwrap_or_default().to_string())
        .collect();
    (messages, events.last().unwrap().data.clone())
}

fn main_requests_since(mock: &MockAnthropic, start: usize) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .skip(start)
        .filter(|r| r["tools"].as_array().is_some_and(|t| !t.is_empty()))
        .collect()
}

async fn resume_on_another_replica(
    spawn: impl Fn(&MockAnthropic, &[(&str, &str)]) -> TestWorker,
    first: Value,
    second: Value,
) {
    let store = TempDir::new().unwrap();
    let store_dir = store.path().to_str().unwrap();
    let mock = MockAnthropic::start(Reply::Text("Noted.".into()));

    let mut a = spawn(&mock, &[("SESSION_STORE_DIR", store_dir)]);
    let (_, done) = run_to_end(&a, &first).await;
    assert_eq!(done["type"], "completed", "{done}");
    let session = done["sessionId"].as_str().expect("a session id").to_string();
    assert!(a.exit_status().await.success());

    let b = spawn(&mock, &[("SESSION_STORE_DIR", store_dir)]);
    assert_ne!(a.home, b.home);
    let before = mock.requests().len();
    let mut second = second;
    second["resumeSessionId"] = json!(session);
    let (messages, done) = run_to_end(&b, &second).await;

    assert_eq!(done["type"], "completed", "{done}");
    assert!(messages.iter().any(|m| m.contains("restored session")), "{messages:?}");
    let requests = main_requests_since(&mock, before);
    let last = requests.last().expect("job 2 called the model");
    crate::support::assert_the_conversation_goes_on(&conversation_text(last), CODE_WORD);
}

#[tokio::test]
async fn a_claude_code_session_resumes_on_another_replica_through_the_store() {
    resume_on_another_replica(
        claude_worker,
        job(&format!("Remember the code word {CODE_WORD}.")),
        job("Which code word did I give you?"),
    )
    .await;
}

#[tokio::test]
async fn a_copilot_session_resumes_on_another_replica_through_the_store() {
    resume_on_another_replica(
        copilot_worker,
        copilot_job(&format!("Remember the code word {CODE_WORD}.")),
        copilot_job("Which code word did I give you?"),
    )
    .await;
}

#[tokio::test]
async fn resuming_an_unknown_claude_session_without_a_store_ends_with_a_clear_error() {
    let mock = MockAnthropic::start(Reply::Text("Hi.".into()));
    let worker = claude_worker(&mock, &[]);
    let mut body = job("continue");
    body["resumeSessionId"] = json!("0b5f6c1e-0000-4000-8000-000000000000");

    let (_, end) = run_to_end(&worker, &body).await;

    assert_eq!(end["type"], "error", "{end}");
    let message = end["message"].as_str().unwrap();
    assert!(message.contains("No conversation found"), "{message}");
}
