//! The fleet gateway (docs/fleet.md) with real processes on loopback: three workers running a fake CLI that holds each
//! job until the test releases it, and `unified-worker gateway` in front of them with a static worker list.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    SseStream, client,
    fleet::{LocalFleet, fleet_view, fleet_view_as, gateway, named_job, wait_idle_workers, wait_idle_workers_as},
    sse::{SseEvent, assert_well_formed, kinds},
};

async fn post(gateway: &crate::support::TestWorker, body: &Value) -> reqwest::Response {
    client()
        .post(gateway.url("/execute"))
        .json(body)
        .send()
        .await
        .expect("POST /execute")
}

async fn stream(gateway: &crate::support::TestWorker, body: &Value) -> SseStream {
    let resp = post(gateway, body).await;
    assert_eq!(
        resp.status(),
        200,
        "the gateway refused: {}",
        resp.text().await.unwrap_or_default()
    );
    SseStream::new(resp)
}

/// Reads `queued` events until the job's own first event; returns the positions seen and that event.
async fn wait_for_start(stream: &mut SseStream) -> (Vec<u64>, SseEvent) {
    let mut positions = Vec::new();
    loop {
        let ev = stream.next_event().await.expect("the stream ended while waiting");
        if ev.kind() != "queued" {
            return (positions, ev);
        }
        assert_eq!(ev.id, None, "queued events carry no id: {:?}", ev.fields);
        positions.push(ev.data["position"].as_u64().expect("position"));
    }
}

#[tokio::test]
async fn nine_jobs_on_three_workers_all_complete_in_order_with_no_429() {
    let fleet = LocalFleet::start(3, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 3).await;

    // Admitted one after another, so their order in line is known.
    let mut streams = Vec::new();
    for i in 1..=9 {
        let mut s = stream(&gw, &named_job(&format!("job{i}"))).await;
        let first = s.next_event().await.expect("first event");
        if i <= 3 {
            assert_eq!(first.kind(), "connected", "job{i} should start at once");
        } else {
            assert_eq!(first.kind(), "queued");
            assert_eq!(first.data["position"], i - 3);
            assert_eq!(first.data["workers"], 3);
            assert_eq!(first.data["busy"], 3);
        }
        streams.push((s, first));
    }
    for i in 1..=3 {
        fleet.wait_started(&format!("job{i}")).await;
    }

    // Each release frees one worker, and the head of the line (never anyone behind it) gets it.
    let mut waiting: Vec<usize> = (4..=9).collect();
    let mut seen_positions: Vec<Vec<u64>> = vec![Vec::new(); 10];
    for done in 1..=6 {
        fleet.release(&format!("job{done}"));
        let head = waiting.remove(0);
        let (positions, first) = wait_for_start(&mut streams[head - 1].0).await;
        assert_eq!(first.kind(), "connected", "job{head} should start next");
        seen_positions[head].extend(positions);
        streams[head - 1].1 = first;
        fleet.wait_started(&format!("job{head}")).await;
        for &behind in &waiting {
            assert!(
                !fleet.cli.file(&format!("started-job{behind}")).exists(),
                "job{behind} started before job{head}"
            );
        }
    }
    for i in 7..=9 {
        fleet.release(&format!("job{i}"));
    }
    for (i, (s, first)) in streams.iter_mut().enumerate() {
        let mut events: Vec<SseEvent> = vec![first.clone()];
        events.extend(s.collect().await);
        let job: Vec<SseEvent> = events.into_iter().filter(|e| e.kind() != "queued").collect();
        assert_well_formed(&job, 0);
        assert_eq!(
            job.last().unwrap().kind(),
            "completed",
            "job{}: {:?}",
            i + 1,
            kinds(&job)
        );
        let positions = &seen_positions[i + 1];
        assert!(
            positions.windows(2).all(|w| w[1] <= w[0]),
            "positions went up: {positions:?}"
        );
    }
    let view = fleet_view(&gw).await;
    assert_eq!(view["counters"]["dispatched"], 9);
    assert_eq!(view["queue"]["length"], 0);
}

#[tokio::test]
async fn a_full_line_answers_429_with_retry_after_and_no_line_never_queues() {
    let fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[("GATEWAY_QUEUE_MAX", "1"), ("RETRY_AFTER_SECONDS", "7")]);
    wait_idle_workers(&gw, 1).await;
    let mut running = stream(&gw, &named_job("a")).await;
    assert_eq!(running.next_event().await.unwrap().kind(), "connected");
    let mut waiting = stream(&gw, &named_job("b")).await;
    assert_eq!(waiting.next_event().await.unwrap().kind(), "queued");

    let refused = post(&gw, &named_job("c")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "7");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");

    let no_line = gateway(&fleet.addresses(), &[("GATEWAY_QUEUE_MAX", "0")]);
    let refused = post(&no_line, &named_job("d")).await;
    assert_eq!(refused.status(), 429);
    fleet.release("a");
    fleet.release("b");
    assert_eq!(waiting.collect().await.last().unwrap().kind(), "completed");
}

#[tokio::test]
async fn a_request_that_waits_too_long_ends_with_queue_timeout() {
    let fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[("GATEWAY_QUEUE_TIMEOUT_SECONDS", "0.5")]);
    wait_idle_workers(&gw, 1).await;
    let mut running = stream(&gw, &named_job("a")).await;
    assert_eq!(running.next_event().await.unwrap().kind(), "connected");

    let mut waiting = stream(&gw, &named_job("b")).await;
    let events = waiting.collect().await;
    let end = events.last().expect("terminal");
    assert_eq!(kinds(&events), ["queued", "error"]);
    assert_eq!(end.data["code"], "queue_timeout");
    assert_eq!(end.data["retryable"], true);
    assert_eq!(end.id.as_deref(), Some("0"));
    fleet.release("a");
}

#[tokio::test]
async fn a_waiting_client_that_leaves_with_cancel_on_disconnect_frees_its_place() {
    let fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let mut running = stream(&gw, &named_job("a")).await;
    assert_eq!(running.next_event().await.unwrap().kind(), "connected");
    let mut leaving = named_job("b");
    leaving["cancelOnDisconnect"] = serde_json::json!(true);
    let mut first = stream(&gw, &leaving).await;
    assert_eq!(first.next_event().await.unwrap().data["position"], 1);
    let mut second = stream(&gw, &named_job("c")).await;
    assert_eq!(second.next_event().await.unwrap().data["position"], 2);

    drop(first);
    let moved_up = second.next_event().await.unwrap();
    assert_eq!(
        (moved_up.kind(), moved_up.data["position"].as_u64()),
        ("queued", Some(1))
    );
    fleet.release("a");
    let (_, started) = wait_for_start(&mut second).await;
    assert_eq!(started.kind(), "connected");
    assert!(
        !fleet.cli.file("started-b").exists(),
        "the job of a client that left was run"
    );
    fleet.release("c");
    assert_eq!(second.collect().await.last().unwrap().kind(), "completed");
}

#[tokio::test]
async fn a_waiting_client_that_leaves_keeps_its_place_and_follows_its_job_again() {
    let fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let mut running = stream(&gw, &named_job("a")).await;
    assert_eq!(running.next_event().await.unwrap().kind(), "connected");
    let mut first = stream(&gw, &named_job("b")).await;
    assert_eq!(first.next_event().await.unwrap().data["position"], 1);
    drop(first);
    let mut second = stream(&gw, &named_job("c")).await;
    assert_eq!(
        second.next_event().await.unwrap().data["position"],
        2,
        "b keeps its place"
    );

    // Its client comes back by id: still first in line, then the whole job.
    let again = client().get(gw.url("/jobs/b/events")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let mut again = SseStream::new(again);
    let queued = again.next_event().await.unwrap();
    assert_eq!((queued.kind(), queued.data["position"].as_u64()), ("queued", Some(1)));
    fleet.release("a");
    fleet.wait_started("b").await;
    fleet.release("b");
    let events: Vec<SseEvent> = again.collect().await.into_iter().filter(|e| e.id.is_some()).collect();
    assert_eq!(events.first().map(SseEvent::kind), Some("connected"));
    assert_eq!(events.last().map(SseEvent::kind), Some("completed"));
    fleet.wait_started("c").await;
    fleet.release("c");
    assert_eq!(second.collect().await.last().unwrap().kind(), "completed");
}

#[tokio::test]
async fn a_worker_that_answers_429_although_idle_costs_the_client_nothing() {
    let liar = crate::support::http::LyingWorker::start().await;
    let fleet = LocalFleet::start(1, &[]);
    let gw = gateway(&format!("{},{}", liar.base, fleet.workers[0].base), &[]);
    wait_idle_workers(&gw, 2).await;

    let mut a = stream(&gw, &named_job("a")).await;
    let mut b = stream(&gw, &named_job("b")).await;
    fleet.release("a");
    fleet.release("b");
    for s in [&mut a, &mut b] {
        let events: Vec<SseEvent> = s.collect().await.into_iter().filter(|e| e.kind() != "queued").collect();
        assert_eq!(events.last().unwrap().kind(), "completed", "{:?}", kinds(&events));
    }
    assert!(liar.refused() >= 1, "the lying worker was never tried");
    assert!(fleet_view(&gw).await["counters"]["busyRetries"].as_u64() >= Some(1));
}

#[tokio::test]
async fn a_worker_killed_mid_job_ends_the_stream_with_one_worker_lost_which_stays_readable() {
    let mut fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let mut s = stream(&gw, &named_job("a")).await;
    let before = s.until("assistant_message").await;
    fleet.wait_started("a").await;

    fleet.workers[0].signal(libc::SIGKILL);
    let rest = s.collect().await;
    let mut all = before.clone();
    all.extend(rest.clone());
    assert_well_formed(&all, 0);
    let end = all.last().unwrap();
    assert_eq!(end.data["code"], "worker_lost");
    assert_eq!(end.data["retryable"], true);
    assert_eq!(all.iter().filter(|e| e.is_terminal()).count(), 1);

    // The worker is gone; the gateway still answers with the terminal event it passed on.
    let last_seen = before.last().unwrap().seq();
    let again = gw.job_events_after("a", last_seen).await;
    assert_eq!(again.status(), 200);
    let replay = SseStream::new(again).collect().await;
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].data, end.data);
    let past = gw.job_events_after("a", end.seq()).await;
    assert_eq!(
        past.status(),
        204,
        "at the terminal event a reconnecting client is told to stop"
    );
    let status: Value = gw.get_json("/jobs/a").await;
    assert_eq!(status["state"], "finished");
    assert_eq!(status["terminal"]["code"], "worker_lost");
    fleet.workers.clear();
}

#[tokio::test]
async fn a_client_reconnecting_through_the_gateway_gets_the_rest_of_its_job() {
    let fleet = LocalFleet::start(2, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 2).await;
    let mut s = stream(&gw, &named_job("a")).await;
    let seen = s.until("session").await;
    drop(s);

    let last = seen.last().unwrap().seq();
    let resumed = gw.job_events_after("a", last).await;
    assert_eq!(resumed.status(), 200);
    let mut resumed = SseStream::new(resumed);
    fleet.release("a");
    let rest = resumed.collect().await;
    let mut all = seen;
    all.extend(rest);
    assert_well_formed(&all, 0);
    assert_eq!(all.last().unwrap().kind(), "completed");
}

#[tokio::test]
async fn cancel_through_the_gateway_works_for_waiting_and_running_jobs() {
    let fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let mut running = stream(&gw, &named_job("a")).await;
    running.until("session").await;
    let mut waiting = stream(&gw, &named_job("b")).await;
    assert_eq!(waiting.next_event().await.unwrap().kind(), "queued");

    let queued: Value = gw.get_json("/jobs/b").await;
    assert_eq!(
        (queued["state"].as_str(), queued["position"].as_u64()),
        (Some("queued"), Some(1))
    );
    let resp = client().post(gw.url("/jobs/b/cancel")).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let end = waiting.collect().await;
    assert_eq!(end.last().unwrap().data["code"], "cancelled");

    let resp = client().post(gw.url("/jobs/a/cancel")).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let end = running.collect().await;
    assert_eq!(end.last().unwrap().data["code"], "cancelled");
    assert_eq!(fleet_view(&gw).await["queue"]["length"], 0);
    assert!(!fleet.cli.file("started-b").exists());
}

#[tokio::test]
async fn a_second_gateway_finds_a_job_it_did_not_dispatch() {
    let fleet = LocalFleet::start(2, &[]);
    let first = fleet.gateway(&[]);
    let second = fleet.gateway(&[]);
    wait_idle_workers(&first, 2).await;
    wait_idle_workers(&second, 2).await;
    let mut s = stream(&first, &named_job("a")).await;
    let seen = s.until("session").await;

    let status: Value = second.get_json("/jobs/a").await;
    assert_eq!(status["state"], "running", "{status}");
    let worker = status["address"].as_str().unwrap().to_string();
    assert!(fleet.workers.iter().any(|w| w.base == worker));

    let follow = second.job_events_after("a", seen.last().unwrap().seq()).await;
    assert_eq!(follow.status(), 200);
    let mut follow = SseStream::new(follow);
    let resp = client().post(second.url("/jobs/a/cancel")).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let end = follow.collect().await;
    assert_eq!(end.last().unwrap().data["code"], "cancelled");
    assert_eq!(s.collect().await.last().unwrap().data["code"], "cancelled");
    let unknown = client().get(second.url("/jobs/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "job_not_found");
}

#[tokio::test]
async fn bad_input_is_answered_at_once_and_never_waits_in_line() {
    let token = "gateway-test-token-1234";
    let fleet = LocalFleet::start(1, &[("WORKER_API_TOKEN", token)]);
    let gw = fleet.gateway(&[("WORKER_API_TOKEN", token)]);
    wait_idle_workers_as(&gw, 1, Some(token)).await;
    let authed = |path: &str| client().post(gw.url(path)).bearer_auth(token);
    // The fleet view names the workers' addresses and the jobs: the token guards it like the job endpoints;
    // /health stays open and says nothing of jobs.
    for path in ["/fleet", "/fleet/events", "/jobs"] {
        let open = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(open.status(), 401, "{path} without the token");
    }
    let health: Value = client()
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert!(
        !health.to_string().contains("127.0.0.1"),
        "health names no address: {health}"
    );

    let no_token = client()
        .post(gw.url("/execute"))
        .json(&named_job("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let wrong = authed("/execute")
        .json(&json!({"userRequest": "", "codingAssistantProvider": "claude-code"}))
        .send();
    let wrong = tokio::time::timeout(Duration::from_secs(10), wrong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wrong.status(), 422);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["field"], "userRequest");
    let not_json = authed("/execute")
        .body("{")
        .header("Content-Type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    let bad_json = authed("/execute")
        .body("{")
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    assert_eq!(fleet_view_as(&gw, Some(token)).await["queue"]["length"], 0);
    assert_eq!(fleet_view_as(&gw, Some(token)).await["counters"]["dispatched"], 0);

    // The gateway forwards its token to the workers, which require the same one.
    let resp = authed("/execute").json(&named_job("a")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    fleet.release("a");
    assert_eq!(SseStream::new(resp).collect().await.last().unwrap().kind(), "completed");
}

#[tokio::test]
async fn the_gateway_and_the_worker_serve_prometheus_metrics() {
    let fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let mut s = stream(&gw, &named_job("a")).await;
    fleet.release("a");
    s.collect().await;

    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "unified_worker_gateway_queue_length",
        "unified_worker_gateway_queue_wait_seconds_bucket",
        "unified_worker_gateway_dispatches_total 1",
        "unified_worker_gateway_busy_retries_total 0",
        "unified_worker_gateway_worker_lost_total 0",
        "unified_worker_gateway_workers{state=\"idle\"}",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let text = client()
        .get(fleet.workers[0].url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "unified_worker_jobs_total{outcome=\"completed\"} 1",
        "unified_worker_job_duration_seconds_count 1",
        "unified_worker_events_total",
        "unified_worker_busy_refusals_total 0",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_a_cancel_on_disconnect_job_cancels_it_through_the_gateway() {
    // A vanished peer shows when a write to it fails (for the worker's own connections too): the worker's next
    // keep-alive, passed on by the gateway, is that write.
    let fleet = LocalFleet::start(1, &[("SSE_KEEPALIVE_SECONDS", "1")]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let mut body = named_job("a");
    body["cancelOnDisconnect"] = json!(true);
    let mut s = stream(&gw, &body).await;
    let seen = s.until("session").await;
    fleet.wait_started("a").await;
    drop(s);

    let rest = fleet.workers[0].job_events_after("a", seen.last().unwrap().seq()).await;
    let end = SseStream::new(rest).collect().await;
    assert_eq!(end.last().expect("terminal").data["code"], "cancelled");
}
