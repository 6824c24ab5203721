//! `bench/run.sh broker`: what the per-job model-API broker adds between a CLI and its model API. One upstream on
//! loopback streams a paced answer (server-sent events, one `content_block_delta` per chunk, each stamped with the
//! moment it was written); a client reads it once straight from the upstream and once through a broker, in
//! alternating rounds, and the difference of the two is the broker's cost: to the first byte, to each chunk
//! (p50/p99), and in throughput of a large answer sent as fast as the upstream can.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use unified_worker::{
    broker::{Broker, BrokerConfig, Budget, ModelEndpoint},
    metrics::ModelMetrics,
};

use crate::{Row, median, runs};

/// Chunks of a paced answer and the pause between them: slow enough that each chunk is read on its own.
const PACED_CHUNKS: usize = 500;
const PACE: Duration = Duration::from_micros(500);
/// The large answer: 256 MiB in chunks of 16 KiB.
const LARGE_CHUNK: usize = 16 * 1024;
const LARGE_CHUNKS: usize = 16 * 1024;

const ENDPOINT: ModelEndpoint = ModelEndpoint {
    base_url_var: "ANTHROPIC_BASE_URL",
    key_vars: &["ANTHROPIC_API_KEY"],
    upstream_var: None,
    default_upstream: None,
};

/// The clock every stamp is read from: the upstream and the client share the process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// A minimal HTTP/1.1 upstream: reads one request, answers with a chunked event stream. `paced` stamps and
/// spaces the chunks; otherwise it sends `LARGE_CHUNKS` chunks back to back.
async fn upstream() -> String {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind upstream");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(stream));
        }
    });
    url
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    loop {
        let Some(paced) = read_request(&mut stream).await else {
            return;
        };
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n";
        let _ = write_chunk(&mut stream, start.as_bytes()).await;
        if paced {
            for seq in 0..PACED_CHUNKS {
                tokio::time::sleep(PACE).await;
                let event = format!(
                    "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"stamp {seq} {}\"}}}}\n\n",
                    now_us()
                );
                if write_chunk(&mut stream, event.as_bytes()).await.is_err() {
                    return;
                }
            }
        } else {
            let text = "x".repeat(LARGE_CHUNK - 100);
            let event = format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
            );
            for _ in 0..LARGE_CHUNKS {
                if write_chunk(&mut stream, event.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
        let end = "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":500}}\n\n";
        let _ = write_chunk(&mut stream, end.as_bytes()).await;
        if stream.write_all(b"0\r\n\r\n").await.is_err() {
            return;
        }
    }
}

async fn write_chunk(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).await
}

/// Reads one request (head and `content-length` body); its path says which answer it wants.
async fn read_request(stream: &mut TcpStream) -> Option<bool> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Some(head.starts_with("post /paced"))
}

struct Reading {
    first_byte_us: f64,
    /// Receive time minus the upstream's stamp, per paced chunk.
    chunk_delays_us: Vec<f64>,
    bytes: u64,
    seconds: f64,
}

async fn read(client: &reqwest::Client, url: &str, key: &str) -> Reading {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(r#"{"model":"claude-sonnet-4-5","stream":true}"#)
        .send()
        .await
        .expect("send");
    assert!(response.status().is_success(), "{}", response.status());
    let mut stream = response.bytes_stream();
    let mut first_byte_us = None;
    let mut chunk_delays_us = Vec::new();
    let mut bytes = 0u64;
    let mut pending = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        let at = now_us();
        first_byte_us.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e6);
        bytes += chunk.len() as u64;
        pending.extend_from_slice(&chunk);
        // Stamps are read only from short events (the paced answer), so the large one costs no parsing here.
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.len() < 300
                && let Some(at_stamp) = stamp(&line)
            {
                chunk_delays_us.push(at.saturating_sub(at_stamp) as f64);
            }
        }
        if pending.len() > 1 << 20 {
            pending.clear();
        }
    }
    Reading {
        first_byte_us: first_byte_us.unwrap_or(f64::NAN),
        chunk_delays_us,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn stamp(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let (_, rest) = text.split_once("\"stamp ")?;
    let mut words = rest.split([' ', '"']);
    let _seq = words.next()?;
    words.next()?.parse().ok()
}

fn percentile(mut v: Vec<f64>, p: usize) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[(v.len() * p / 100).min(v.len() - 1)]
    }
}

pub async fn broker(rows: &mut Vec<Row>) {
    epoch();
    let upstream = upstream().await;
    let env = vec![
        ("ANTHROPIC_API_KEY".to_string(), "sk-bench-real-key-0000".to_string()),
        ("ANTHROPIC_BASE_URL".to_string(), upstream.clone()),
    ];
    let broker = Broker::start(
        "bench",
        &ENDPOINT,
        &env,
        &BrokerConfig::default(),
        Budget::default(),
        ModelMetrics::default(),
    )
    .await
    .expect("broker")
    .expect("a broker");
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let routes = Arc::new([
        ("direct", upstream.clone(), "sk-bench-real-key-0000".to_string()),
        (
            "broker",
            broker.base_url().to_string(),
            broker.placeholder().to_string(),
        ),
    ]);
    // Warm both paths' connections.
    for (_, base, key) in routes.iter() {
        read(&client, &format!("{base}/paced/v1/messages"), key).await;
    }

    let (mut first, mut chunks) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let rounds = runs() * 4;
    for round in 0..rounds {
        // Alternate which path goes first, so that neither always meets a warmer machine.
        for i in [round % 2, 1 - round % 2] {
            let (_, base, key) = &routes[i];
            let reading = read(&client, &format!("{base}/paced/v1/messages"), key).await;
            assert_eq!(
                reading.chunk_delays_us.len(),
                PACED_CHUNKS,
                "every stamped chunk arrived"
            );
            first[i].push(reading.first_byte_us);
            chunks[i].extend(reading.chunk_delays_us);
        }
    }
    let (mut rates, mut bytes) = ([Vec::new(), Vec::new()], 0);
    for round in 0..runs() {
        for i in [round % 2, 1 - round % 2] {
            let (_, base, key) = &routes[i];
            let reading = read(&client, &format!("{base}/large/v1/messages"), key).await;
            bytes = reading.bytes;
            rates[i].push(reading.bytes as f64 / reading.seconds / 1e6);
        }
    }
    let usage = broker.usage();
    eprintln!(
        "broker: {} model calls metered, {} output tokens",
        usage.model_calls.unwrap_or(0),
        usage.output_tokens
    );

    let ms = |us: f64| format!("{:.3}", us / 1000.0);
    let [first_direct, first_broker] = first;
    let [chunks_direct, chunks_broker] = chunks;
    for p in [50, 99] {
        rows.push(Row {
            name: if p == 50 {
                "broker: first byte p50 (ms, direct → through the broker)"
            } else {
                "broker: first byte p99 (ms, direct → through the broker)"
            },
            value: format!(
                "{} → {}",
                ms(percentile(first_direct.clone(), p)),
                ms(percentile(first_broker.clone(), p))
            ),
            target: "",
        });
        let direct = percentile(chunks_direct.clone(), p);
        let brokered = percentile(chunks_broker.clone(), p);
        rows.push(Row {
            name: if p == 50 {
                "broker: per-chunk delay p50 (ms, direct → through the broker, added)"
            } else {
                "broker: per-chunk delay p99 (ms, direct → through the broker, added)"
            },
            value: format!(
                "{} → {} ({:+.3})",
                ms(direct),
                ms(brokered),
                (brokered - direct) / 1000.0
            ),
            target: if p == 99 { "≤ 1 added" } else { "" },
        });
    }
    let [rate_direct, rate_broker] = rates;
    rows.push(Row {
        name: "broker: large streamed answer (MB/s, direct → through the broker)",
        value: format!(
            "{:.0} → {:.0} ({} MiB)",
            median(rate_direct),
            median(rate_broker),
            bytes / (1 << 20)
        ),
        target: "",
    });
}
