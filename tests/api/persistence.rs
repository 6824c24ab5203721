//! Stream persistence (docs/persistence.md) against a real recording server: every event stored exactly once under faults,
//! after a client disconnect, and a bounded drain when the server is gone for good.

use std::{collections::BTreeSet, time::Instant};

use serde_json::{Value, json};

use crate::support::{
    FakeCli, INIT_LINE, RESULT_LINE, TestWorker, job,
    recorder::{Fault, Recorder},
    sse::{SseEvent, assert_well_formed},
    wait_for,
};

pub const DB_TOKEN: &str = "db-token-CANARY-5e1f0a";
const ASSISTANT_LINES: usize = 1_000;

/// A CLI that prints `ASSISTANT_LINES` assistant messages (after `gate`, if given) and a result.
fn chatty_cli(gate: Option<&str>) -> FakeCli {
    FakeCli::new(&format!(
        "echo '{INIT_LINE}'\n{}\ni=0\nwhile [ $i -lt {ASSISTANT_LINES} ]; do\n  \
         echo '{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"text\",\"text\":\"line '$i'\"}}]}}}}'\n  \
         i=$((i+1))\ndone\necho '{RESULT_LINE}'",
        gate.map(wait_for).unwrap_or_default()
    ))
}

fn persisting_worker(cli: &FakeCli, recorder: &Recorder, extra: &[(&str, &str)]) -> TestWorker {
    let base = recorder.base();
    let mut env = vec![
        ("CLAUDE_BIN", cli.bin()),
        ("DB_BASE_URL", base.as_str()),
        ("FLUSH_TIMEOUT_SECONDS", "60"),
        ("OUTBOUND_REQUEST_TIMEOUT_SECONDS", "0.5"),
    ];
    env.extend_from_slice(extra);
    TestWorker::spawn(&env)
}

fn persisted_job(job_id: &str) -> Value {
    let mut body = job("persist me");
    body["jobId"] = json!(job_id);
    body["database"] = json!({"sessionId": "session-1", "accessToken": DB_TOKEN});
    body
}

/// The stored chunks are exactly the streamed events: same seqs, same content, nothing stored twice or changed.
pub fn assert_persisted_exactly(recorder: &Recorder, job_id: &str, events: &[SseEvent]) {
    let emitted: BTreeSet<u64> = events.iter().map(SseEvent::seq).collect();
    let stored: BTreeSet<u64> = recorder.stored_seqs(job_id).into_iter().collect();
    assert_eq!(stored, emitted, "persisted seqs differ from the streamed ones");
    for event in events {
        let chunk = recorder.chunk(job_id, event.seq()).expect("chunk");
        assert_eq!(
            chunk["data"],
            event.data,
            "chunk {} differs from the stream",
            event.seq()
        );
        assert_eq!(chunk["type"], event.data["type"]);
        assert_eq!(chunk["ts"], event.data["ts"]);
    }
    let state = recorder.lock();
    assert!(
        state.conflicts.is_empty(),
        "re-sent with other content: {:?}",
        state.conflicts
    );
    for request in state.requests.iter().filter(|r| r.is_chunks()) {
        assert!(request.path.starts_with("/sessions/") && request.path.ends_with("/chunks"));
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {DB_TOKEN}").as_str())
        );
        let n = request.json()["chunks"].as_array().map_or(0, Vec::len);
        assert!((1..=100).contains(&n), "a batch of {n} events");
    }
}

/// Runs a 1,000-event job against a server that first answers with `faults`, and checks the exact result.
async fn survives(faults: Vec<Fault>) -> Recorder {
    let recorder = Recorder::start();
    recorder.push_faults(faults);
    let cli = chatty_cli(None);
    let mut worker = persisting_worker(&cli, &recorder, &[]);
    let events = worker.execute(&persisted_job("job-faults")).await.collect().await;
    assert_well_formed(&events, 0);
    assert!(events.len() > ASSISTANT_LINES, "{} events", events.len());
    assert!(worker.exit_status().await.success());
    assert!(recorder.lock().faults.is_empty(), "every fault was served");
    assert_persisted_exactly(&recorder, "job-faults", &events);
    assert!(worker.logs().contains("\"undelivered\":0"), "{}", worker.logs());
    recorder
}

#[tokio::test]
async fn every_event_is_persisted_exactly_once_through_server_errors() {
    survives(vec![Fault::Status(500), Fault::Status(503), Fault::Status(502)]).await;
}

#[tokio::test]
async fn every_event_is_persisted_exactly_once_through_429_and_retry_after_is_honoured() {
    let recorder = survives(vec![Fault::RetryAfter(1)]).await;
    let requests = recorder.requests();
    let gap = requests[1].at.duration_since(requests[0].at);
    assert_eq!(requests[0].status, Some(429));
    assert!(gap.as_secs_f64() >= 1.0, "retried after {gap:?} despite Retry-After: 1");
}

#[tokio::test]
async fn every_event_is_persisted_exactly_once_through_a_hanging_server() {
    survives(vec![Fault::Hang, Fault::Hang]).await;
}

#[tokio::test]
async fn every_event_is_persisted_exactly_once_through_dropped_connections() {
    survives(vec![Fault::Drop, Fault::Drop]).await;
}

#[tokio::test]
async fn a_batch_stored_before_the_connection_broke_is_resent_unchanged_and_stored_once() {
    let recorder = survives(vec![Fault::StoreThenDrop, Fault::StoreThenDrop]).await;
    assert!(recorder.lock().resends > 0, "the unanswered batches were sent again");
}

#[tokio::test]
async fn a_client_that_disconnects_still_gets_every_event_persisted() {
    let recorder = Recorder::start();
    let cli = chatty_cli(Some("release"));
    let mut worker = persisting_worker(&cli, &recorder, &[("LINGER_SECONDS", "0.2")]);
    let mut stream = worker.execute(&persisted_job("job-gone")).await;
    stream.until("session").await;
    drop(stream);
    cli.release("release");

    assert!(worker.exit_status().await.success());
    let seqs = recorder.stored_seqs("job-gone");
    let last = *seqs.last().expect("chunks");
    assert_eq!(seqs, (0..=last).collect::<Vec<_>>(), "no gap");
    let chunks: Vec<Value> = seqs.iter().map(|s| recorder.chunk("job-gone", *s).unwrap()).collect();
    assert_eq!(
        chunks.last().unwrap()["type"],
        "completed",
        "the terminal event is persisted, last"
    );
    let assistant = chunks.iter().filter(|c| c["type"] == "assistant_message").count();
    assert_eq!(assistant, ASSISTANT_LINES);
}

/// With the persistence API unreachable, the stream still ends and the worker exits within the flush bound,
/// logging how many chunks it could not deliver.
async fn assert_drain_is_bounded(db_base_url: &str) {
    let cli = chatty_cli(None);
    let mut worker = TestWorker::spawn(&[
        ("CLAUDE_BIN", cli.bin()),
        ("DB_BASE_URL", db_base_url),
        ("FLUSH_TIMEOUT_SECONDS", "2"),
        // Longer than the flush: the deadline must cut a request in flight, not wait for it.
        ("OUTBOUND_REQUEST_TIMEOUT_SECONDS", "10"),
    ]);
    let events = worker.execute(&persisted_job("job-down")).await.collect().await;
    assert_well_formed(&events, 0);
    let ended = Instant::now();

    assert!(worker.exit_status().await.success());
    let drain = ended.elapsed().as_secs_f64();
    assert!(
        drain < 2.0 + 2.0,
        "exited {drain:.2}s after the stream ended (FLUSH_TIMEOUT_SECONDS=2)"
    );
    let logs = worker.logs();
    let report: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["undelivered"].is_u64())
        .unwrap_or_else(|| panic!("no undelivered count logged:\n{logs}"));
    assert_eq!(report["undelivered"], events.len() as u64, "nothing was ever accepted");
    assert_eq!(report["level"], "WARN");
}

#[tokio::test]
async fn a_server_that_hangs_for_good_does_not_hold_the_stream_and_the_drain_is_bounded() {
    let recorder = Recorder::start();
    recorder.lock().always = Some(Fault::Hang);
    assert_drain_is_bounded(&recorder.base()).await;
}

#[tokio::test]
async fn a_server_that_is_gone_does_not_hold_the_stream_and_the_drain_is_bounded() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped here: connections to that port are refused.
    assert_drain_is_bounded(&format!("http://127.0.0.1:{port}")).await;
}

#[tokio::test]
async fn a_refusing_server_stops_persistence_with_one_warning_and_the_job_goes_on() {
    let recorder = Recorder::start();
    recorder.push_faults([Fault::Status(401)]);
    let cli = chatty_cli(Some("release"));
    let mut worker = persisting_worker(&cli, &recorder, &[]);
    let mut stream = worker.execute(&persisted_job("job-refused")).await;
    // The refusal arrives while the job runs, so its warning can still be part of the stream.
    recorder.wait_until(|s| !s.requests.is_empty()).await;
    cli.release("release");
    let events = stream.collect().await;
    assert_well_formed(&events, 0);
    assert_eq!(events.last().unwrap().kind(), "completed");
    let warnings: Vec<&SseEvent> = events
        .iter()
        .filter(|e| e.kind() == "message" && e.data["text"].as_str().unwrap_or("").contains("persistence stopped"))
        .collect();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].data["level"], "warn");
    assert!(worker.exit_status().await.success());
    assert_eq!(recorder.requests().len(), 1, "a refusal is not retried");
    assert!(!worker.logs().contains(DB_TOKEN) && !worker.logs().contains("CANARY"));
}

#[tokio::test]
async fn database_without_a_configured_api_is_refused_naming_the_field() {
    let worker = TestWorker::spawn(&[]);
    let resp = worker.post_execute(&persisted_job("job-x")).await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "database");
    assert_eq!(worker.status().await["status"], "idle");
}
