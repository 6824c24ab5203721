//! The front door under abuse: many connections on loopback that send a request head and then trickle their body a
//! byte at a time, or stop sending, against a gateway and against a worker. Each gets `408` (or is closed) at
//! `BODY_TIMEOUT_SECONDS`, and `/health` and a real job keep working meanwhile. The bigger run (10,000 connections,
//! the gateway's RSS) is `bench/run.sh abuse` (BENCHMARKS.md).

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{
    TestWorker, client,
    fleet::{LocalFleet, named_job, wait_idle_workers},
    sse::kinds,
};

/// Per server: enough to show that nothing is held per connection for long, cheap enough for every CI run.
const CONNECTIONS: usize = 300;

/// The deadline the servers under test get (`BODY_TIMEOUT_SECONDS`).
const DEADLINE: Duration = Duration::from_secs(1);

/// The most any abusive connection may stay open: the deadline, the second actix reads a closing connection's
/// leftovers, and a generous margin for a loaded machine.
const UPPER_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Abuse {
    /// `POST /execute` with a `Content-Length`, then one byte now and then.
    Trickle,
    /// The same, then nothing more.
    Stall,
    /// A chunked body trickled to a path that never reads it (`GET /health`): answered at once, and then the
    /// connection must close rather than drain the body for ever.
    ChunkedUnread,
    /// Half a request head, then nothing.
    HalfHead,
}

impl Abuse {
    fn of(i: usize) -> Abuse {
        match i % 10 {
            0 => Abuse::ChunkedUnread,
            1 => Abuse::HalfHead,
            2..=5 => Abuse::Stall,
            _ => Abuse::Trickle,
        }
    }

    fn head(self, port: u16) -> String {
        match self {
            Abuse::Trickle | Abuse::Stall => format!(
                "POST /execute HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{"
            ),
            Abuse::ChunkedUnread => {
                format!(
                    "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n"
                )
            }
            Abuse::HalfHead => format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"),
        }
    }

    /// The next byte of the body, if this one keeps sending.
    fn drip(self) -> Option<&'static [u8]> {
        match self {
            Abuse::Trickle => Some(b" "),
            Abuse::ChunkedUnread => Some(b"1\r\nx\r\n"),
            Abuse::Stall | Abuse::HalfHead => None,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    abuse: Abuse,
    /// What the server sent before it closed the connection.
    answer: String,
    /// From the head sent to the connection closed.
    open_for: Duration,
}

/// Opens the connection and sends its head; the returned task drips and reads until the server closes it.
async fn open(port: u16, abuse: Abuse) -> tokio::task::JoinHandle<Outcome> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream
        .write_all(abuse.head(port).as_bytes())
        .await
        .expect("send the head");
    let sent = Instant::now();
    tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let mut drip = tokio::time::interval(Duration::from_millis(200));
        let until = tokio::time::sleep(UPPER_BOUND);
        tokio::pin!(until);
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                _ = drip.tick(), if abuse.drip().is_some() => {
                    // The server may have closed already; the read above tells.
                    let _ = stream.write_all(abuse.drip().unwrap_or_default()).await;
                }
                _ = &mut until => panic!("{abuse:?}: still open after {UPPER_BOUND:?}"),
            }
        }
        Outcome {
            abuse,
            answer: String::from_utf8_lossy(&answer).into_owned(),
            open_for: sent.elapsed(),
        }
    })
}

async fn abuse(port: u16) -> Vec<tokio::task::JoinHandle<Outcome>> {
    let mut held = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        held.push(open(port, Abuse::of(i)).await);
    }
    held
}

/// Every connection was answered as its abuse deserves and closed, none before the deadline.
async fn check(held: Vec<tokio::task::JoinHandle<Outcome>>) {
    let mut timed_out = 0;
    for task in held {
        let outcome = task.await.expect("connection task");
        let status = outcome.answer.split_whitespace().nth(1).unwrap_or("closed");
        match outcome.abuse {
            Abuse::Trickle | Abuse::Stall => {
                assert!(
                    status == "closed" || (status == "408" && outcome.answer.contains("\"body_timeout\"")),
                    "{outcome:?}"
                );
                assert!(outcome.open_for >= DEADLINE - Duration::from_millis(50), "{outcome:?}");
                timed_out += usize::from(status == "408");
            }
            Abuse::ChunkedUnread => assert_eq!(status, "200", "{outcome:?}"),
            Abuse::HalfHead => assert!(status == "408" || status == "closed", "{outcome:?}"),
        }
    }
    assert!(timed_out > 0, "no connection was answered 408");
}

async fn health(server: &TestWorker) {
    let resp = client().get(server.url("/health")).send().await.expect("/health");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_gateway_answers_408_to_trickled_and_stalled_bodies_and_keeps_serving() {
    let deadline = format!("{}", DEADLINE.as_secs_f64());
    let fleet = LocalFleet::start(1, &[("BODY_TIMEOUT_SECONDS", &deadline)]);
    let gw = fleet.gateway(&[("BODY_TIMEOUT_SECONDS", &deadline)]);
    wait_idle_workers(&gw, 1).await;

    let held = abuse(gw.port).await;
    // While the abusive connections are open: the door still answers, and a real job goes through it.
    health(&gw).await;
    let resp = client()
        .post(gw.url("/execute"))
        .json(&named_job("real"))
        .send()
        .await
        .expect("POST /execute");
    assert_eq!(resp.status(), 200);
    let mut stream = crate::support::SseStream::new(resp);
    fleet.wait_started("real").await;
    health(&gw).await;
    fleet.release("real");
    let events = stream.collect().await;
    assert_eq!(
        events.last().map(|e| e.kind()),
        Some("completed"),
        "{:?}",
        kinds(&events)
    );

    check(held).await;
    health(&gw).await;
}

#[tokio::test]
async fn a_worker_answers_408_to_trickled_and_stalled_bodies_and_keeps_serving() {
    let deadline = format!("{}", DEADLINE.as_secs_f64());
    let worker = TestWorker::spawn(&[("BODY_TIMEOUT_SECONDS", &deadline)]);

    let held = abuse(worker.port).await;
    health(&worker).await;
    assert_eq!(worker.status().await["status"], "idle");
    check(held).await;
    health(&worker).await;
    assert_eq!(
        worker.status().await["status"],
        "idle",
        "an abusive request took the slot"
    );
}

#[tokio::test]
async fn a_body_that_arrives_in_time_is_taken_whatever_its_pace() {
    // A slow but honest client: its body in three pieces, well within the deadline.
    let worker = TestWorker::spawn(&[("BODY_TIMEOUT_SECONDS", "30")]);
    let body = br#"{"userRequest":"hi","codingAssistantProvider":"nope"}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", worker.port)).await.expect("connect");
    let head = format!(
        "POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    for piece in body.chunks(body.len() / 3 + 1) {
        stream.write_all(piece).await.expect("piece");
        tokio::task::yield_now().await;
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(UPPER_BOUND, stream.read(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    // Read in full and validated: the unknown provider is what it is refused for.
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(answer.contains("codingAssistantProvider"), "{answer}");
}
