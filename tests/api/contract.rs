//! The published contract: `/openapi.json` of the worker and of the gateway equal the committed copies
//! (`openapi.json`, `openapi-gateway.json`), so a change of the contract shows in review. `UPDATE_OPENAPI=1`
//! rewrites the copies instead.

use std::path::Path;

use serde_json::Value;

use crate::support::{TestWorker, client, fleet::gateway};

async fn compare(served_by: &TestWorker, copy: &str) {
    let resp = client()
        .get(served_by.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(resp.status(), 200);
    let served = resp.text().await.expect("body");
    let doc: Value = serde_json::from_str(&served).expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(copy);
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &served).expect("write the copy");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == served,
        "{copy} differs from what the server publishes: review the contract change, then run \
         UPDATE_OPENAPI=1 cargo test --test api contract"
    );
}

#[tokio::test]
async fn the_worker_publishes_the_committed_contract() {
    let worker = TestWorker::spawn(&[]);
    compare(&worker, "openapi.json").await;
}

#[tokio::test]
async fn the_gateway_publishes_the_committed_contract() {
    let gw = gateway("http://127.0.0.1:9", &[]);
    compare(&gw, "openapi-gateway.json").await;
}
