//! Fleet state that outlives its processes (docs/fleet.md): job streams and records in a store, in the gateway's
//! memory or in a real `redis-server` shared by two gateways, so that a client reconnecting through any gateway
//! after its worker exited gets exactly what it missed.

use std::time::{Duration, Instant};

use redis as redis_client;
use serde_json::{Value, json};

use crate::support::{
    PATIENCE, SseStream, TestWorker, client,
    fleet::{LocalFleet, gateway, named_job, wait_idle_workers},
    redis::RedisServer,
    sse::SseEvent,
};

/// A real `redis-server`, `workers` held-job workers, and two gateways with that store, both seeing every worker idle.
struct TwoGateways {
    redis: RedisServer,
    fleet: LocalFleet,
    a: TestWorker,
    b: TestWorker,
}

impl TwoGateways {
    async fn start(workers: usize) -> Option<TwoGateways> {
        Self::start_with(workers, &[]).await
    }

    /// With `env` for both gateways besides the store.
    async fn start_with(workers: usize, env: &[(&str, &str)]) -> Option<TwoGateways> {
        let redis = RedisServer::start()?;
        let fleet = LocalFleet::start(workers, &[]);
        let url = redis.url();
        let mut store = vec![("GATEWAY_STORE", url.as_str())];
        store.extend_from_slice(env);
        let a = fleet.gateway(&store);
        let b = fleet.gateway(&store);
        wait_idle_workers(&a, workers).await;
        wait_idle_workers(&b, workers).await;
        Some(TwoGateways { redis, fleet, a, b })
    }
}

/// A started `TwoGateways`, or the end of the test when there is no `redis-server` (and `CI` does not require one).
macro_rules! two_gateways {
    ($workers:expr) => {
        match TwoGateways::start($workers).await {
            Some(started) => started,
            None => return,
        }
    };
}

async fn start_job(gw: &TestWorker, prompt: &str) -> SseStream {
    let resp = client()
        .post(gw.url("/execute"))
        .json(&named_job(prompt))
        .send()
        .await
        .expect("POST /execute");
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    SseStream::new(resp)
}

/// The one worker busy with `running` (sent through `via_running`) and `waiting` in line behind it (sent through
/// `via_waiting`), its first `queued` event read.
async fn one_busy_one_waiting(
    fleet: &LocalFleet,
    (via_running, running): (&TestWorker, &str),
    (via_waiting, waiting): (&TestWorker, &str),
) -> (SseStream, SseStream) {
    let busy = start_job(via_running, running).await;
    fleet.wait_started(running).await;
    let mut queued = start_job(via_waiting, waiting).await;
    assert_eq!(queued.next_event().await.unwrap().kind(), "queued");
    (busy, queued)
}

/// A job held on its worker, its first event (`connected`) read.
async fn running_job(fleet: &LocalFleet, gw: &TestWorker, prompt: &str) -> SseStream {
    let mut stream = start_job(gw, prompt).await;
    fleet.wait_started(prompt).await;
    assert_eq!(stream.next_event().await.unwrap().kind(), "connected");
    stream
}

/// The job's events as its first client got them, `queued` ones left out (they carry no id).
async fn whole_job(fleet: &LocalFleet, gw: &TestWorker, prompt: &str) -> Vec<SseEvent> {
    let mut stream = start_job(gw, prompt).await;
    fleet.wait_started(prompt).await;
    fleet.release(prompt);
    let events: Vec<SseEvent> = stream.collect().await.into_iter().filter(|e| e.id.is_some()).collect();
    assert_eq!(events.last().map(SseEvent::kind), Some("completed"));
    events
}

async fn reconnect(gw: &TestWorker, job_id: &str, last: Option<u64>) -> reqwest::Response {
    let mut req = client().get(gw.url(&format!("/jobs/{job_id}/events")));
    if let Some(last) = last {
        req = req.header("Last-Event-ID", last.to_string());
    }
    req.send().await.expect("GET /jobs/{id}/events")
}

fn ids(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone().unwrap_or_default()).collect()
}

/// Waits until `GET /jobs/{id}` on `gw` says the job finished: its record, written after its last event, is in
/// the store.
async fn wait_finished(gw: &TestWorker, job_id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let resp = client().get(gw.url(&format!("/jobs/{job_id}"))).send().await.unwrap();
        if resp.status() == 200 {
            let body: Value = resp.json().await.unwrap();
            if body["state"] == "finished" {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {job_id} never finished as {} sees it",
            gw.base
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every possible drop point: reconnecting after event k gets exactly events k+1.. (same ids, same data, the
/// terminal one last), and after the terminal event 204.
async fn every_reconnect_gets_exactly_the_rest(gw: &TestWorker, job_id: &str, whole: &[SseEvent]) {
    for (k, seen) in whole.iter().enumerate() {
        let last: u64 = seen.id.as_deref().unwrap().parse().unwrap();
        let resp = reconnect(gw, job_id, Some(last)).await;
        if k + 1 == whole.len() {
            assert_eq!(resp.status(), 204, "after the terminal event there is nothing left");
            continue;
        }
        assert_eq!(resp.status(), 200);
        let rest = SseStream::new(resp).collect().await;
        assert_eq!(ids(&rest), ids(&whole[k + 1..]), "reconnect after {last}");
        for (got, want) in rest.iter().zip(&whole[k + 1..]) {
            assert_eq!(got.data, want.data, "event {:?} replayed byte for byte", got.id);
        }
    }
    // From the start, with no Last-Event-ID.
    let from_start = SseStream::new(reconnect(gw, job_id, None).await).collect().await;
    assert_eq!(ids(&from_start), ids(whole));
}

#[tokio::test]
async fn the_memory_store_replays_every_event_after_the_worker_exited() {
    let mut fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let whole = whole_job(&fleet, &gw, "m1").await;
    assert!(whole.len() >= 4, "a job of several events: {:?}", ids(&whole));
    // The worker is gone: only the gateway's memory holds the job now.
    fleet.workers.clear();
    every_reconnect_gets_exactly_the_rest(&gw, "m1", &whole).await;
}

#[tokio::test]
async fn the_memory_store_answers_410_for_what_it_no_longer_holds() {
    let fleet = LocalFleet::start(1, &[]);
    // Room for one event: the newest (the terminal one) is always kept, the rest is evicted.
    let gw = fleet.gateway(&[("GATEWAY_LOG_MAX_BYTES", "100")]);
    wait_idle_workers(&gw, 1).await;
    let whole = whole_job(&fleet, &gw, "m2").await;

    let resp = reconnect(&gw, "m2", Some(0)).await;
    assert_eq!(resp.status(), 410);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "events_evicted");
    let first = body["error"]["firstAvailable"].as_u64().expect("firstAvailable");
    assert!(first > 1, "the start was evicted: {body}");
    // From the first one held, the rest is there.
    let rest = SseStream::new(reconnect(&gw, "m2", Some(first - 1)).await)
        .collect()
        .await;
    let held: Vec<SseEvent> = whole
        .into_iter()
        .filter(|e| e.id.as_deref().unwrap().parse::<u64>().unwrap() >= first)
        .collect();
    assert_eq!(ids(&rest), ids(&held));
}

#[tokio::test]
async fn two_gateways_sharing_redis_replay_a_job_after_its_worker_exited() {
    let TwoGateways {
        redis: _redis,
        mut fleet,
        a,
        b,
    } = two_gateways!(1);
    let health: Value = client()
        .get(a.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["store"]["kind"], "redis");
    assert_eq!(health["store"]["up"], true);
    assert_eq!(health["store"]["sealed"], false, "no key given: {health}");

    let whole = whole_job(&fleet, &a, "r1").await;
    wait_finished(&b, "r1").await;
    fleet.workers.clear();
    // Through the gateway that did not relay it, whose own memory never saw it.
    every_reconnect_gets_exactly_the_rest(&b, "r1", &whole).await;

    // The fleet's job list is the same from both.
    for gw in [&a, &b] {
        let list: Value = client()
            .get(gw.url("/jobs?state=finished"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jobs = list["jobs"].as_array().expect("jobs");
        assert_eq!(jobs.len(), 1, "{list}");
        assert_eq!(jobs[0]["jobId"], "r1");
        assert_eq!(jobs[0]["terminalCode"], "completed");
        assert_eq!(jobs[0]["provider"], "claude-code");
        assert!(
            jobs[0]["worker"].is_string() && jobs[0]["endedAt"].is_string(),
            "{list}"
        );
    }
    let none: Value = client()
        .get(b.url("/jobs?state=running"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["jobs"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_live_job_is_followed_through_the_other_gateway_and_its_id_is_taken_fleet_wide() {
    let TwoGateways {
        redis: _redis,
        fleet,
        a,
        b,
    } = two_gateways!(2);

    let mut first = running_job(&fleet, &a, "live").await;

    // The same id through the other gateway: 409, with where the job stands.
    let again = client()
        .post(b.url("/execute"))
        .json(&named_job("live"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "job_exists");
    assert_eq!(body["error"]["jobId"], "live");
    assert_eq!(body["error"]["state"], "running");

    // A second client follows it through B from its first event, live, to the end.
    let mut follower = SseStream::new(reconnect(&b, "live", Some(0)).await);
    fleet.release("live");
    let rest_a: Vec<SseEvent> = first.collect().await;
    let rest_b: Vec<SseEvent> = follower.collect().await;
    assert_eq!(
        ids(&rest_b),
        ids(&rest_a),
        "the follower got what the first client got after event 0"
    );
    assert_eq!(rest_b.last().map(SseEvent::kind), Some("completed"));

    wait_finished(&b, "live").await;
    let after: Value = client()
        .post(a.url("/execute"))
        .json(&named_job("live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["error"]["state"], "finished",
        "a remembered job keeps its id: {after}"
    );
}

#[tokio::test]
async fn a_store_outage_mid_job_refuses_new_jobs_and_loses_no_event() {
    let TwoGateways {
        mut redis,
        mut fleet,
        a,
        b,
    } = two_gateways!(2);

    let mut stream = start_job(&a, "outage").await;
    fleet.wait_started("outage").await;
    redis.stop();

    // Nothing new is taken while the store is down, through either gateway.
    for gw in [&a, &b] {
        let refused = client()
            .post(gw.url("/execute"))
            .json(&named_job("new"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        assert!(refused.headers().contains_key("Retry-After"));
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable");
    }
    let health: Value = client()
        .get(a.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["store"]["up"], false, "{health}");

    // The client of the relaying gateway streams on to the end meanwhile.
    fleet.release("outage");
    let whole: Vec<SseEvent> = stream.collect().await.into_iter().filter(|e| e.id.is_some()).collect();
    assert_eq!(whole.last().map(SseEvent::kind), Some("completed"));

    // Back (with what its AOF kept): the relay writes what it held, and the replay through B is complete.
    redis.restart();
    wait_finished(&b, "outage").await;
    fleet.workers.clear();
    every_reconnect_gets_exactly_the_rest(&b, "outage", &whole).await;
    let errors = counter(&a, "unified_worker_gateway_store_errors_total").await;
    assert!(errors >= 1.0, "the outage was counted: {errors}");
}

#[tokio::test]
async fn a_gateway_with_a_password_file_reaches_a_redis_that_requires_one() {
    let Some(redis) = RedisServer::start_with(Some("store-password-123")) else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let secret = dir.path().join("store-password");
    std::fs::write(&secret, "store-password-123\n").unwrap();
    let fleet = LocalFleet::start(1, &[]);
    let url = redis.url();
    let secret = secret.display().to_string();
    let gw = gateway(
        &fleet.addresses(),
        &[
            ("GATEWAY_STORE", url.as_str()),
            ("GATEWAY_STORE_PASSWORD_FILE", secret.as_str()),
        ],
    );
    wait_idle_workers(&gw, 1).await;
    let health: Value = client()
        .get(gw.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&health["store"]["kind"], &health["store"]["up"]),
        (&"redis".into(), &true.into()),
        "{health}"
    );
    let whole = whole_job(&fleet, &gw, "pw").await;
    wait_finished(&gw, "pw").await;
    let replay = SseStream::new(reconnect(&gw, "pw", None).await).collect().await;
    assert_eq!(ids(&replay), ids(&whole));
}

/// The ids of a stream that must go on from `after`: each one more than the one before, no gap, no repeat.
fn assert_consecutive_from(events: &[SseEvent], after: u64) {
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e.id.as_deref().expect("an id").parse().expect("a number"))
        .collect();
    let expected: Vec<u64> = (after + 1..after + 1 + ids.len() as u64).collect();
    assert_eq!(ids, expected, "no gap, no duplicate");
    let terminals = events
        .iter()
        .filter(|e| matches!(e.kind(), "completed" | "error"))
        .count();
    assert_eq!(terminals, 1, "exactly one terminal event, last: {:?}", events.last());
}

async fn counter(gw: &TestWorker, name: &str) -> f64 {
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[tokio::test]
async fn a_relay_is_taken_over_after_its_gateway_is_killed_with_no_gap_and_no_duplicate() {
    let TwoGateways {
        redis: _redis,
        fleet,
        a,
        b,
    } = two_gateways!(1);

    let first = running_job(&fleet, &a, "orphan").await;
    // The relaying gateway dies (SIGKILL) with its client's connection; the job goes on on the worker.
    drop(first);
    drop(a);

    let mut follower = SseStream::new(reconnect(&b, "orphan", Some(0)).await);
    fleet.release("orphan");
    let rest: Vec<SseEvent> = follower.collect().await;
    assert_consecutive_from(&rest, 0);
    assert_eq!(rest.last().map(SseEvent::kind), Some("completed"));
    assert!(counter(&b, "unified_worker_gateway_relay_takeovers_total").await >= 1.0);
    let record = wait_finished(&b, "orphan").await;
    assert_eq!(record["state"], "finished");
}

#[tokio::test]
async fn a_job_whose_gateway_and_worker_both_died_ends_with_exactly_one_worker_lost() {
    let TwoGateways {
        redis: _redis,
        mut fleet,
        a,
        b,
    } = two_gateways!(1);

    let first = running_job(&fleet, &a, "gone").await;
    // Its first event is in the store (the relay writes in batches, so one only the client saw could go with
    // the gateway; a worker that lives still has it, but this one dies too).
    let mut stored = SseStream::new(reconnect(&b, "gone", None).await);
    assert_eq!(stored.next_event().await.and_then(|e| e.id).as_deref(), Some("0"));
    drop((first, stored));
    drop(a);
    fleet.workers.clear();

    let rest: Vec<SseEvent> = SseStream::new(reconnect(&b, "gone", Some(0)).await).collect().await;
    assert_consecutive_from(&rest, 0);
    let last = rest.last().unwrap();
    assert_eq!(
        (last.kind(), last.data["code"].as_str()),
        ("error", Some("worker_lost"))
    );
    // Read again from the start: the same single end.
    let again: Vec<SseEvent> = SseStream::new(reconnect(&b, "gone", None).await).collect().await;
    assert_eq!(again.iter().filter(|e| e.kind() == "error").count(), 1);
}

#[tokio::test]
async fn a_job_waiting_in_a_gateway_that_is_killed_keeps_its_place_and_runs_its_client_following_elsewhere() {
    let TwoGateways {
        redis: _redis,
        fleet,
        a,
        b,
    } = two_gateways!(1);

    let (running, waiting) = one_busy_one_waiting(&fleet, (&a, "running"), (&a, "waiting")).await;
    // Killed with SIGKILL: its client's connection breaks with the job still in the fleet's line.
    drop((running, waiting));
    drop(a);

    // Its client follows it by id through the other gateway: still waiting, at the head of the fleet's line.
    let mut follower = SseStream::new(reconnect(&b, "waiting", None).await);
    let first = follower.next_event().await.unwrap();
    assert_eq!(
        (first.kind(), first.data["position"].as_u64()),
        ("queued", Some(1)),
        "{first:?}"
    );
    // The running one is relayed on by the other gateway; when it ends, the adopted one gets the worker.
    let mut running_follower = SseStream::new(reconnect(&b, "running", Some(0)).await);
    fleet.release("running");
    let rest = running_follower.collect().await;
    assert_consecutive_from(&rest, 0);
    assert_eq!(rest.last().map(SseEvent::kind), Some("completed"));
    fleet.wait_started("waiting").await;
    fleet.release("waiting");
    let events: Vec<SseEvent> = follower
        .collect()
        .await
        .into_iter()
        .filter(|e| e.id.is_some())
        .collect();
    let expected: Vec<String> = (0..events.len()).map(|i| i.to_string()).collect();
    assert_eq!(ids(&events), expected, "every event once, in order");
    assert_eq!(events.first().map(SseEvent::kind), Some("connected"));
    assert_eq!(
        events.last().map(SseEvent::kind),
        Some("completed"),
        "{:?}",
        ids(&events)
    );
    let record = wait_finished(&b, "waiting").await;
    assert_eq!(record["terminal"]["type"], "completed", "{record}");
}

#[tokio::test]
async fn two_gateways_serve_one_line_first_come_first_served() {
    let TwoGateways {
        redis: _redis,
        fleet,
        a,
        b,
    } = two_gateways!(1);

    let mut first = start_job(&a, "first").await;
    fleet.wait_started("first").await;
    // Four more, alternating between the gateways: each sees its place in the one line of the fleet.
    let order = ["j1", "j2", "j3", "j4"];
    let mut streams = Vec::new();
    for (i, id) in order.iter().enumerate() {
        let gw = if i % 2 == 0 { &a } else { &b };
        let mut stream = start_job(gw, id).await;
        let queued = stream.next_event().await.unwrap();
        assert_eq!(queued.kind(), "queued");
        assert_eq!(queued.data["position"].as_u64(), Some(i as u64 + 1), "{id}: {queued:?}");
        streams.push(stream);
    }
    // Each gateway lists the whole line, in order.
    for gw in [&a, &b] {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let view = crate::support::fleet::fleet_view(gw).await;
            let line: Vec<&str> = view["queue"]["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|j| j["jobId"].as_str())
                .collect();
            if line == order {
                break;
            }
            assert!(Instant::now() < deadline, "{} shows the line as {line:?}", gw.base);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The one worker takes them in the order they came, whichever gateway each came through.
    fleet.release("first");
    assert_eq!(first.collect().await.last().map(SseEvent::kind), Some("completed"));
    for (i, id) in order.iter().enumerate() {
        fleet.wait_started(id).await;
        for later in &order[i + 1..] {
            let view: Value = client()
                .get(b.url(&format!("/jobs/{later}")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                view["state"], "queued",
                "{later} must still wait while {id} runs: {view}"
            );
        }
        fleet.release(id);
    }
    for mut stream in streams {
        assert_eq!(stream.collect().await.last().map(SseEvent::kind), Some("completed"));
    }
}

#[tokio::test]
async fn a_job_waiting_in_one_gateway_is_cancelled_through_the_other() {
    let TwoGateways {
        redis: _redis,
        fleet,
        a,
        b,
    } = two_gateways!(1);

    let (mut running, mut waiting) = one_busy_one_waiting(&fleet, (&a, "first"), (&a, "second")).await;

    let resp = client().post(b.url("/jobs/second/cancel")).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let end: Vec<SseEvent> = waiting.collect().await.into_iter().filter(|e| e.id.is_some()).collect();
    assert_eq!(end.len(), 1, "{:?}", ids(&end));
    assert_eq!(end[0].data["code"], "cancelled");
    // The job it waited behind is untouched, and the cancelled one stays cancelled for the fleet.
    fleet.release("first");
    assert_eq!(running.collect().await.last().map(SseEvent::kind), Some("completed"));
    let record = wait_finished(&b, "second").await;
    assert_eq!(record["terminal"]["code"], "cancelled", "{record}");
}

#[tokio::test]
async fn a_gateway_stopped_with_sigterm_leaves_its_waiting_jobs_in_the_line_for_the_other() {
    let TwoGateways {
        redis: _redis,
        fleet,
        a,
        b,
    } = two_gateways!(1);

    let (mut running, mut waiting) = one_busy_one_waiting(&fleet, (&b, "first"), (&a, "second")).await;
    a.signal(libc::SIGTERM);
    // Its stream closes without a terminal event: the job is not over, it changes hands.
    let rest = waiting.collect().await;
    assert!(
        rest.iter().all(|e| e.kind() == "queued"),
        "{:?}",
        rest.iter().map(SseEvent::kind).collect::<Vec<_>>()
    );
    let mut follower = SseStream::new(reconnect(&b, "second", None).await);
    fleet.release("first");
    assert_eq!(running.collect().await.last().map(SseEvent::kind), Some("completed"));
    fleet.wait_started("second").await;
    fleet.release("second");
    let events: Vec<SseEvent> = follower
        .collect()
        .await
        .into_iter()
        .filter(|e| e.id.is_some())
        .collect();
    assert_eq!(events.first().map(SseEvent::kind), Some("connected"));
    assert_eq!(
        events.last().map(SseEvent::kind),
        Some("completed"),
        "{:?}",
        ids(&events)
    );
}

/// The raw bytes Redis holds under `key`.
async fn raw(redis: &RedisServer, key: &str) -> Option<Vec<u8>> {
    let client = redis_client::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    redis_client::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("GET")
}

#[tokio::test]
async fn a_waiting_request_is_sealed_in_redis_and_the_other_gateway_opens_it() {
    let key = "a-fleet-store-key-of-more-than-32-characters";
    let TwoGateways { redis, fleet, a, b } = match TwoGateways::start_with(1, &[("GATEWAY_STORE_KEY", key)]).await {
        Some(started) => started,
        None => return,
    };
    let health = a.get_json("/health").await;
    assert_eq!(health["store"]["sealed"], true, "{health}");
    let busy = start_job(&a, "running").await;
    fleet.wait_started("running").await;
    let mut body = named_job("waiting");
    body["codingAssistantAccessToken"] = json!("sk-ant-api03-CANARY-waiting-3f9a");
    let resp = client().post(a.url("/execute")).json(&body).send().await.unwrap();
    let mut waiting = SseStream::new(resp);
    assert_eq!(waiting.next_event().await.unwrap().kind(), "queued");

    let stored = raw(&redis, "uw:job:waiting:request")
        .await
        .expect("the request is in the store");
    assert!(
        stored.starts_with(b"uw-sealed-1:"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    assert!(
        !stored.windows(6).any(|w| w == b"CANARY") && !stored.windows(10).any(|w| w == b"userReques"),
        "the request is readable in the store"
    );

    // Its gateway dies; the other one, with the same key, opens the request and runs the job.
    drop((busy, waiting));
    drop(a);
    let mut follower = SseStream::new(reconnect(&b, "waiting", None).await);
    fleet.release("running");
    fleet.wait_started("waiting").await;
    fleet.release("waiting");
    let events = follower.collect().await;
    assert_eq!(
        events.last().map(SseEvent::kind),
        Some("completed"),
        "{:?}",
        ids(&events)
    );
    assert!(
        raw(&redis, "uw:job:waiting:request").await.is_none(),
        "gone once the job started"
    );
}
