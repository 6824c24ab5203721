//! What the dashboard stands on, over plain HTTP: the page (open, no secret in it, a policy that allows only its own
//! code) on the gateway and the worker, and the gateway's fleet feed. The page itself is driven in a real browser by
//! the `browser` test binary.

use serde_json::Value;

use crate::support::{
    SseStream, client,
    fleet::{LocalFleet, named_job, wait_idle_workers},
};

const TOKEN: &str = "a-token-the-page-must-never-show";

#[tokio::test]
async fn the_page_loads_without_a_token_and_holds_no_secret() {
    let fleet = LocalFleet::start(1, &[("WORKER_API_TOKEN", TOKEN)]);
    let gw = fleet.gateway(&[("WORKER_API_TOKEN", TOKEN)]);
    for (server, role) in [(&gw, "fleet"), (&fleet.workers[0], "worker")] {
        let resp = client().get(server.url("/")).send().await.expect("GET /");
        assert_eq!(resp.status(), 200);
        let headers = resp.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
            "{csp}"
        );
        assert!(
            csp.contains("connect-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let page = resp.text().await.unwrap();
        assert!(!page.contains(TOKEN), "the page shows the token");
        assert!(page.contains(&format!(r#"data-role="{role}" data-auth="token""#)));
    }
}

async fn next_fleet(feed: &mut SseStream) -> Value {
    let ev = feed.next_event().await.expect("the feed ended");
    assert_eq!(ev.event.as_deref(), Some("fleet"));
    assert_eq!(ev.id, None, "snapshots are not a log: no id");
    ev.data
}

fn finished_completed(snapshot: &Value) -> u64 {
    snapshot["history"]["finished"]["completed"]
        .as_array()
        .map_or(0, |c| c.iter().filter_map(Value::as_u64).sum())
}

#[tokio::test]
async fn the_fleet_feed_sends_the_fleet_at_once_and_again_as_a_job_starts_and_ends() {
    let fleet = LocalFleet::start(1, &[]);
    let gw = fleet.gateway(&[]);
    wait_idle_workers(&gw, 1).await;
    let feed = client().get(gw.url("/fleet/events")).send().await.expect("feed");
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let mut feed = SseStream::new(feed);

    let first = next_fleet(&mut feed).await;
    assert_eq!(first["workers"][0]["state"], "idle");
    assert_eq!(first["history"]["minutes"], 60);
    assert_eq!(
        first["history"]["finished"]["completed"].as_array().map(Vec::len),
        Some(60)
    );
    assert!(first["now"].is_string());

    let job = client()
        .post(gw.url("/execute"))
        .json(&named_job("a"))
        .send()
        .await
        .unwrap();
    let mut job = SseStream::new(job);
    loop {
        let s = next_fleet(&mut feed).await;
        if s["workers"][0]["state"] == "busy" && s["workers"][0]["provider"] == "claude-code" {
            assert_eq!(s["workers"][0]["jobId"], "a");
            assert_eq!(s["counters"]["dispatched"], 1);
            break;
        }
    }
    fleet.release("a");
    assert_eq!(
        job.collect().await.last().map(|e| e.kind().to_string()),
        Some("completed".into())
    );
    loop {
        let s = next_fleet(&mut feed).await;
        if finished_completed(&s) == 1 {
            let started: u64 = s["history"]["started"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_u64)
                .sum();
            assert_eq!(started, 1, "the job's wait for a worker is counted once");
            break;
        }
    }
}
