//! Stock SSE clients against the real worker (docs/events.md): the WHATWG `eventsource` package and
//! `@microsoft/fetch-event-source`, run by Node from `tests/sse-clients/` (pinned by its package-lock.json and
//! installed by `scripts/test.sh`). Each starts a job with `POST /execute`, loses the connection midway — a proxy cuts
//! it right after the `session` event while the fake CLI is held — resumes with `Last-Event-ID` on
//! `GET /jobs/{jobId}/events`, and must see every event exactly once, in order, ending with the terminal one.
//!
//! The scripts report what happened as JSON lines on stdout (`{"request":…}`, `{"event":…}`, …), read here as they
//! come, so that the test can release the CLI once the client has reconnected.

use std::{path::Path, process::Stdio};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
    task::JoinHandle,
};

use crate::support::{
    FakeCli, INIT_LINE, PATIENCE, RESULT_LINE, TestWorker, cutting_proxy::CuttingProxy, job, wait_for,
};

const CLIENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sse-clients");
const PACKAGES: [&str; 2] = ["eventsource", "@microsoft/fetch-event-source"];

/// Whether Node and the pinned packages are here. In CI their absence fails the test; elsewhere it says it skipped.
fn node_clients_available() -> bool {
    let Some(missing) = missing_prerequisite() else {
        return true;
    };
    if crate::support::required() {
        panic!("{missing}: CI must run the SSE client tests (scripts/test.sh runs `npm ci` in tests/sse-clients)");
    }
    eprintln!("skipped: {missing}; run `npm ci` in tests/sse-clients (scripts/test.sh does)");
    false
}

fn missing_prerequisite() -> Option<String> {
    match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("node is not installed".into()),
    }
    let modules = Path::new(CLIENTS_DIR).join("node_modules");
    PACKAGES
        .iter()
        .find(|package| !modules.join(package).join("package.json").is_file())
        .map(|package| format!("the npm package {package} is not installed in tests/sse-clients"))
}

/// A client script under Node, read one report line at a time.
struct NodeClient {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
    reports: Vec<Value>,
}

impl NodeClient {
    fn start(script: &str, base: &str, body: &Value) -> NodeClient {
        let mut child = Command::new("node")
            .arg(script)
            .arg(base)
            .arg(body.to_string())
            .current_dir(CLIENTS_DIR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text).await;
            text
        });
        NodeClient {
            child,
            stdout,
            stderr,
            reports: Vec::new(),
        }
    }

    /// The next report line, or None when the script has closed its output.
    async fn next_report(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(PATIENCE, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("the client went quiet; it reported:\n{}", self.transcript()))
            .expect("read the client's output")?;
        let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a report line ({e}): {line}"));
        self.reports.push(report.clone());
        Some(report)
    }

    /// Reads reports until one of `kind` satisfies `wanted`, and returns it.
    async fn wait_for(&mut self, kind: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        while let Some(report) = self.next_report().await {
            if let Some(value) = report.get(kind)
                && wanted(value)
            {
                return value.clone();
            }
        }
        panic!(
            "the client ended before the {kind} report awaited; it reported:\n{}",
            self.transcript()
        )
    }

    /// Reads to the end, then waits for Node to exit by itself — which it only does when no request or timer is
    /// pending, so a client still meaning to reconnect shows here as a hang.
    async fn finish(mut self) -> Reports {
        while self.next_report().await.is_some() {}
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the client did not exit; it reported:\n{}", self.transcript()))
            .expect("wait for node");
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        assert!(
            status.success(),
            "the client failed ({status}):\n{stderr}\nit reported:\n{}",
            self.transcript()
        );
        Reports(self.reports)
    }

    fn transcript(&self) -> String {
        self.reports.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    }
}

/// Everything a client script reported, in order.
struct Reports(Vec<Value>);

impl Reports {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter_map(|report| report.get(kind)).collect()
    }

    fn statuses(&self) -> Vec<u64> {
        self.all("response")
            .iter()
            .filter_map(|r| r["status"].as_u64())
            .collect()
    }
}

impl std::fmt::Display for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|report| writeln!(f, "{report}"))
    }
}

fn assistant_line(text: &str) -> String {
    json!({"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}}).to_string()
}

/// A CLI that tells two things, is held until the test releases it, then tells one more and succeeds. The proxy cuts
/// the client's first connection after the `session` event, so the event after it is replayed and the rest is live.
fn held_cli() -> FakeCli {
    FakeCli::new(&format!(
        "echo '{INIT_LINE}'\necho '{}'\n{}\necho '{}'\necho '{RESULT_LINE}'",
        assistant_line("before the cut"),
        wait_for("release"),
        assistant_line("after the cut"),
    ))
}

/// Every event exactly once and in order: ids consecutive from 0, each id its `seq`, each SSE name its `type`, and
/// one terminal event (`completed`), the last. Returns the job id the stream carried.
fn assert_every_event_once(events: &[&Value], reports: &Reports) -> String {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event["id"],
            i.to_string(),
            "ids must run from 0 without gap or repeat:\n{reports}"
        );
        assert_eq!(event["data"]["seq"], i, "the id is the seq:\n{reports}");
        assert_eq!(
            event["type"], event["data"]["type"],
            "the SSE name is the type:\n{reports}"
        );
    }
    let terminals: Vec<_> = events
        .iter()
        .filter(|e| matches!(e["type"].as_str(), Some("completed" | "error")))
        .collect();
    assert_eq!(terminals.len(), 1, "exactly one terminal event:\n{reports}");
    assert_eq!(
        events.last().map(|e| &e["type"]),
        Some(&json!("completed")),
        "{reports}"
    );
    let texts: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "assistant_message")
        .map(|e| e["data"]["text"].clone())
        .collect();
    assert_eq!(texts, ["before the cut", "after the cut"], "{reports}");
    events[0]["data"]["jobId"].as_str().expect("a job id").to_string()
}

/// The id of the last event the first connection delivered; the cut comes right after `session`.
fn last_id_before_the_cut(events: &[&Value], reports: &Reports) -> String {
    let first = events.iter().take_while(|e| e["connection"] == 1).last();
    let first = first.unwrap_or_else(|| panic!("no event before the cut:\n{reports}"));
    assert_eq!(
        first["type"], "session",
        "the first connection ends at the cut:\n{reports}"
    );
    first["id"].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn eventsource_resumes_after_a_drop_and_a_204_after_the_terminal_event_stops_it() {
    if !node_clients_available() {
        return;
    }
    let cli = held_cli();
    // The process outlives the job so that the reconnect after the terminal event reaches it and gets its 204.
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("EXIT_AFTER_JOB", "false")]);
    let proxy = CuttingProxy::start(worker.port, "event: session").await;
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let mut client = NodeClient::start("eventsource-resume.mjs", &base, &job("tell a story"));

    proxy.wait_cut().await;
    let reconnect = client.wait_for("request", |request| request["n"] == 2).await;
    cli.release("release");
    let reports = client.finish().await;

    let events = reports.all("event");
    let job_id = assert_every_event_once(&events, &reports);
    let resume = format!("/jobs/{job_id}/events");
    let last_before_cut = last_id_before_the_cut(&events, &reports);
    let terminal = (events.len() - 1).to_string();
    assert_eq!(
        reports.statuses(),
        [200, 200, 204],
        "the reconnect after the terminal event must get 204, which stops EventSource:\n{reports}"
    );
    assert_eq!(
        reconnect,
        json!({"n": 2, "method": "GET", "path": resume, "lastEventId": last_before_cut}),
        "EventSource reconnects by itself with the last id it saw:\n{reports}"
    );
    assert_eq!(
        reports.all("request"),
        [
            &json!({"n": 1, "method": "POST", "path": "/execute", "lastEventId": null}),
            &reconnect,
            &json!({"n": 3, "method": "GET", "path": resume, "lastEventId": terminal}),
        ],
        "{reports}"
    );
    let stop = reports.all("connectionError").last().copied().cloned();
    assert_eq!(
        stop.map(|e| (e["code"].clone(), e["readyState"].clone())),
        Some((json!(204), json!(2))),
        "the 204 closes EventSource (readyState CLOSED):\n{reports}"
    );
    // Node exited by itself, so no reconnect was pending; and no request came after the 204.
    assert_eq!(
        reports.all("exit"),
        [&json!({"requests": 3, "readyState": 2})],
        "{reports}"
    );
}

#[tokio::test]
async fn fetch_event_source_resumes_a_dropped_post_on_the_jobs_events_with_last_event_id() {
    if !node_clients_available() {
        return;
    }
    let cli = held_cli();
    let mut worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin())]);
    let proxy = CuttingProxy::start(worker.port, "event: session").await;
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let mut client = NodeClient::start("fetch-event-source-resume.mjs", &base, &job("tell a story"));

    proxy.wait_cut().await;
    let resume_request = client.wait_for("request", |request| request["n"] == 2).await;
    cli.release("release");
    let reports = client.finish().await;

    let events = reports.all("event");
    let job_id = assert_every_event_once(&events, &reports);
    let last_before_cut = last_id_before_the_cut(&events, &reports);
    assert_eq!(
        reports.all("request"),
        [
            &json!({"n": 1, "method": "POST", "path": "/execute", "lastEventId": null}),
            &json!({"n": 2, "method": "GET", "path": format!("/jobs/{job_id}/events"), "lastEventId": last_before_cut}),
        ],
        "the library's retry carries the last id it saw:\n{reports}"
    );
    assert_eq!(resume_request, *reports.all("request")[1]);
    assert_eq!(reports.statuses(), [200, 200], "{reports}");
    assert_eq!(reports.all("retry").len(), 1, "one retry, after the cut:\n{reports}");
    assert_eq!(
        reports.all("done"),
        [&json!({"requests": 2, "terminal": (events.len() - 1).to_string(), "stoppedBy204": false})],
        "{reports}"
    );
    assert!(
        worker.exit_status().await.success(),
        "the worker exits once the resumed client has read the terminal event"
    );
}
