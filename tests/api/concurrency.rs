//! One job per worker: of many concurrent valid requests exactly one gets the stream.

use crate::support::{FakeCli, INIT_LINE, TestWorker, job};

#[tokio::test]
async fn fifty_concurrent_requests_get_one_stream_and_forty_nine_429s() {
    let cli = FakeCli::new(&format!("echo '{INIT_LINE}'\nexec sleep 600"));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("RETRY_AFTER_SECONDS", "7")]);

    let requests = (0..50).map(|i| {
        let client = crate::support::client();
        let url = worker.url("/execute");
        async move {
            client
                .post(url)
                .json(&job(&format!("job {i}")))
                .send()
                .await
                .expect("request")
        }
    });
    let responses = futures_util::future::join_all(requests).await;

    let mut streams = Vec::new();
    let mut busy = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => streams.push(resp),
            429 => {
                assert_eq!(resp.headers()["retry-after"], "7");
                assert_eq!(resp.headers()["connection"], "close");
                let body: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "busy");
                assert_eq!(body["status"], "busy");
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((streams.len(), busy), (1, 49));
    assert_eq!(worker.status().await["status"], "busy");

    let mut stream = crate::support::SseStream::new(streams.remove(0));
    stream.until("session").await;
    assert_eq!(worker.cancel().await.status(), 202);
    let end = stream.until("error").await;
    assert_eq!(end.last().unwrap().data["code"], "cancelled");
}
