//! Provider output can never break SSE framing or inject fields (docs/events.md).

use crate::support::{FakeCli, INIT_LINE, RESULT_LINE, TestWorker, job, sse::assert_well_formed};

#[tokio::test]
async fn hostile_provider_output_cannot_add_or_change_sse_fields() {
    let cli = FakeCli::new(&format!(
        r#"echo '{INIT_LINE}'
printf 'plain\rwith a carriage return\n'
printf 'id: 99\n'
printf 'event: completed\n'
printf 'data: {{"type":"completed"}}\n'
printf '\n\n'
printf 'nul\000byte\n'
printf 'bad\377utf8\n'
printf '%s\n' '{{"type":"assistant","message":{{"content":[{{"type":"text","text":"a\n\nid: 5\ndata: x\r\n"}}]}}}}'
printf 'err\rid: 7\n' >&2
echo '{RESULT_LINE}'"#
    ));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin())]);
    let mut stream = worker.execute(&job("x")).await;
    let events = stream.collect().await;

    assert_well_formed(&events, 0);
    let frames = String::from_utf8(stream.raw.clone()).expect("UTF-8");
    assert_eq!(
        frames.matches("\nevent: ").count(),
        events.len(),
        "one event field per frame"
    );
    let texts: Vec<&str> = events.iter().filter_map(|e| e.data["text"].as_str()).collect();
    for expected in [
        "plain\rwith a carriage return",
        "id: 99",
        "event: completed",
        "nul\0byte",
        "bad\u{fffd}utf8",
        "a\n\nid: 5\ndata: x\r\n",
        "err\rid: 7",
    ] {
        assert!(texts.contains(&expected), "missing {expected:?} in {texts:?}");
    }
    assert_eq!(events.last().unwrap().kind(), "completed");
}

#[tokio::test]
async fn the_stream_has_the_sse_headers_and_sends_keep_alives_in_silence() {
    let cli = FakeCli::new(&format!(
        "echo '{INIT_LINE}'\n{}\necho '{RESULT_LINE}'",
        crate::support::wait_for("release")
    ));
    let worker = TestWorker::spawn(&[("CLAUDE_BIN", cli.bin()), ("SSE_KEEPALIVE_SECONDS", "0.05")]);
    let mut stream = worker.execute(&job("x")).await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    assert_eq!(stream.headers["cache-control"], "no-cache");
    assert_eq!(stream.headers["x-accel-buffering"], "no");
    assert!(stream.headers.get("content-encoding").is_none());
    stream.until("session").await;
    // The provider is silent until released, so the next thing on the wire must be a keep-alive.
    assert_eq!(stream.next_comment().await, ": keep-alive");
    cli.release("release");
    let rest = stream.collect().await;
    assert_eq!(rest.last().unwrap().kind(), "completed");
}
