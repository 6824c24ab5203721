//! `GET /status?wait=<state>&timeout=<s>` (docs/api.md): a worker answers as soon as its state differs from
//! `<state>`, or at the timeout; and a gateway in front of a worker that ignores `wait` (an older version) polls it
//! at `GATEWAY_POLL_MS` instead of asking in a circle.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    PATIENCE, TestWorker, client,
    fleet::{gateway, holding_cli, named_job, wait_idle_workers},
    http::{read_request, response},
};

async fn long_poll(worker: &TestWorker, query: &str) -> reqwest::Response {
    client()
        .get(worker.url(&format!("/status?{query}")))
        .send()
        .await
        .expect("GET /status")
}

#[tokio::test]
async fn a_long_poll_answers_when_the_job_ends() {
    let cli = holding_cli();
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("EXIT_AFTER_JOB", "false")]);
    let mut stream = worker.execute(&named_job("held")).await;
    cli.wait_for_file("started-held").await;

    let waiting = tokio::spawn({
        let url = worker.url("/status?wait=busy&timeout=30");
        async move {
            let resp = client().get(url).send().await.expect("GET /status");
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.expect("status JSON")
        }
    });
    // The job is still held: had the long poll answered already, it would say `busy`.
    cli.release("release-held");
    let answer = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the long poll answered")
        .expect("long poll task");
    assert_ne!(answer["status"], "busy", "{answer}");
    assert_eq!(answer["jobId"], "held", "{answer}");
    stream.collect().await;
    // Back to idle for the next job; a long poll that waits out `idle` on a busy-free worker runs to its timeout.
    worker.wait_for_status("idle").await;
}

#[tokio::test]
async fn a_long_poll_answers_at_once_when_the_state_already_differs_and_at_its_timeout_otherwise() {
    let worker = TestWorker::spawn(&[]);
    let resp = long_poll(&worker, "wait=busy&timeout=30").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["status"], "idle");
    assert_eq!(body["jobId"], Value::Null);

    let asked = Instant::now();
    let resp = long_poll(&worker, "wait=idle&timeout=0.3").await;
    assert_eq!(resp.status(), 200);
    assert!(asked.elapsed() >= Duration::from_millis(300), "{:?}", asked.elapsed());
    assert_eq!(resp.json::<Value>().await.expect("JSON")["status"], "idle");
}

#[tokio::test]
async fn a_bad_wait_or_timeout_is_422_naming_it() {
    let worker = TestWorker::spawn(&[]);
    for (query, field) in [
        ("wait=sleeping", "wait"),
        ("wait=", "wait"),
        ("wait=idle&timeout=31", "timeout"),
        ("wait=idle&timeout=-1", "timeout"),
        ("wait=idle&timeout=soon", "timeout"),
        ("timeout=NaN", "timeout"),
    ] {
        let resp = long_poll(&worker, query).await;
        assert_eq!(resp.status(), 422, "{query}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "invalid_request", "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
}

/// A worker of a version without long polls: `/status` answers at once whatever the query. Records when it was
/// asked.
fn old_worker() -> (String, Arc<Mutex<Vec<Instant>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let seen = seen.clone();
            std::thread::spawn(move || {
                while let Ok(req) = read_request(&stream) {
                    if req.method.is_empty() {
                        return;
                    }
                    let body: &[u8] = match req.path.as_str() {
                        "/status" => {
                            seen.lock().expect("lock").push(Instant::now());
                            br#"{"status":"idle","jobId":null}"#
                        }
                        _ => br#"{"status":"ok"}"#,
                    };
                    if stream
                        .write_all(&response("200 OK", &[("Content-Type", "application/json")], body))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (base, asked)
}

#[tokio::test]
async fn a_worker_without_long_polls_is_asked_at_the_poll_interval() {
    let (base, asked) = old_worker();
    let gw = gateway(&base, &[("GATEWAY_POLL_MS", "100")]);
    wait_idle_workers(&gw, 1).await;
    let deadline = Instant::now() + PATIENCE;
    while asked.lock().expect("lock").len() < 6 {
        assert!(Instant::now() < deadline, "the gateway stopped asking");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times = asked.lock().expect("lock").clone();
    // After the first answer, one request per GATEWAY_POLL_MS, not a loop of answers at once.
    let gaps = times.len() - 2;
    let span = times[times.len() - 1] - times[1];
    assert!(
        span >= Duration::from_millis(90) * gaps as u32,
        "{gaps} gaps in {span:?}: asked in a circle"
    );
}
