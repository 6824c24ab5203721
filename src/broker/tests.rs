//! The broker against a real upstream on loopback that records what reached it.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::*;

const REAL_KEY: &str = "sk-real-CANARY-5f2a9c";

/// What the upstream saw of one call.
#[derive(Clone, Debug)]
struct Seen {
    path_and_query: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Answers every call with `body` as `content_type`.
async fn upstream(content_type: &'static str, body: String) -> Upstream {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    record.lock().unwrap().push(Seen {
                        path_and_query: request.uri().path_and_query().unwrap().to_string(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                            .collect(),
                    });
                    let body = body.clone();
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        response
                            .headers_mut()
                            .insert("content-type", content_type.parse().unwrap());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { url, seen }
}

fn config() -> BrokerConfig {
    BrokerConfig::default()
}

const ANTHROPIC: ModelEndpoint = ModelEndpoint {
    base_url_var: "ANTHROPIC_BASE_URL",
    key_vars: &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"],
    upstream_var: None,
    default_upstream: None,
};

async fn broker_for(upstream: &Upstream, budget: Budget) -> (Broker, Vec<(String, String)>) {
    let mut env = vec![
        ("ANTHROPIC_API_KEY".to_string(), REAL_KEY.to_string()),
        ("ANTHROPIC_BASE_URL".to_string(), upstream.url.clone()),
        ("HOME".to_string(), "/home/agent".to_string()),
    ];
    let broker = Broker::start(
        "claude-code",
        &ANTHROPIC,
        &env,
        &config(),
        budget,
        ModelMetrics::default(),
    )
    .await
    .unwrap()
    .expect("a broker");
    broker.route(&ANTHROPIC, &mut env);
    (broker, env)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn call(broker: &Broker, path: &str, key: &str) -> reqwest::Response {
    client()
        .post(format!("{}{path}", broker.base_url()))
        .header("x-api-key", key)
        .header("accept-encoding", "gzip")
        .json(&json!({"model": "claude-sonnet-4-5", "stream": true}))
        .send()
        .await
        .unwrap()
}

fn anthropic_stream(input: u64, output: u64) -> String {
    [
        json!({"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage":
            {"input_tokens": input, "output_tokens": 1, "cache_read_input_tokens": 2}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output}}),
    ]
    .iter()
    .map(|e| format!("event: e\ndata: {e}\n\n"))
    .collect()
}

#[tokio::test]
async fn the_cli_gets_the_placeholder_and_the_upstream_gets_the_real_key_and_the_answer_is_unchanged() {
    let answer = anthropic_stream(10, 5);
    let upstream = upstream("text/event-stream", answer.clone()).await;
    let (broker, env) = broker_for(&upstream, Budget::default()).await;

    let response = call(&broker, "/v1/messages?beta=true", broker.placeholder()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), answer);
    let env_text = format!("{env:?}");
    assert!(!env_text.contains(REAL_KEY), "{env_text}");
    assert!(env_text.contains(broker.placeholder()) && env_text.contains(broker.base_url()));
    let seen = upstream.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path_and_query, "/v1/messages?beta=true");
    assert_eq!(seen.header("x-api-key"), Some(REAL_KEY));
    assert_eq!(seen.header("accept-encoding"), None, "the meter must read the answer");
    assert_eq!(
        broker.usage(),
        Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_read_tokens: 2,
            cache_creation_tokens: 0,
            metered: true,
            model_calls: Some(1),
        }
    );
}

#[tokio::test]
async fn another_key_is_refused_without_reaching_the_upstream_and_a_stopped_broker_answers_nothing() {
    let upstream = upstream("text/event-stream", anthropic_stream(1, 1)).await;
    let (broker, _) = broker_for(&upstream, Budget::default()).await;
    let (other, _) = broker_for(&upstream, Budget::default()).await;

    let refused = call(&broker, "/v1/messages", other.placeholder()).await;
    let real_key = call(&broker, "/v1/messages", REAL_KEY).await;

    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(real_key.status(), 401, "only the placeholder opens the broker");
    assert!(upstream.seen.lock().unwrap().is_empty());
    assert_eq!(broker.usage().model_calls, Some(0));

    let base_url = broker.base_url().to_string();
    let placeholder = broker.placeholder().to_string();
    broker.stop();
    drop(broker);
    // Stopping cancels the accept loop and every connection, so a call finds the port closed or is dropped
    // unanswered; it never gets an answer.
    let after = client()
        .post(format!("{base_url}/v1/messages"))
        .header("x-api-key", placeholder)
        .send()
        .await;
    assert!(after.is_err(), "a stopped broker answered: {after:?}");
}

#[tokio::test]
async fn the_call_after_the_limit_is_refused_in_the_apis_shape_and_never_reaches_the_upstream() {
    let upstream = upstream("text/event-stream", anthropic_stream(10, 5)).await;
    let budget = Budget {
        max_tokens: Some(15),
        ..Budget::default()
    };
    let (broker, _) = broker_for(&upstream, budget).await;

    let first = call(&broker, "/v1/messages", broker.placeholder()).await;
    first.text().await.unwrap();
    let second = call(&broker, "/v1/messages", broker.placeholder()).await;

    assert_eq!(second.status(), 400);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("maxTokens"),
        "{body}"
    );
    assert_eq!(upstream.seen.lock().unwrap().len(), 1);
    let exceeded = broker.budget_reached().await;
    assert_eq!(exceeded.limit, "maxTokens");
    assert_eq!(
        exceeded.used,
        BudgetUsed {
            tokens: 17,
            cost_usd: (10.0 * 3.0 + 5.0 * 15.0 + 2.0 * 0.3) / 1_000_000.0,
            model_calls: 1
        }
    );
    let failure = exceeded.failure();
    assert_eq!(failure.code, ErrorCode::BudgetExceeded);
    assert_eq!(failure.limit, Some("maxTokens"));
}

#[tokio::test]
async fn calls_that_are_not_model_calls_pass_uncounted_and_unrefused() {
    let upstream = upstream("application/json", json!({"input_tokens": 100}).to_string()).await;
    let budget = Budget {
        max_model_calls: Some(1),
        ..Budget::default()
    };
    let (broker, _) = broker_for(&upstream, budget).await;

    for _ in 0..3 {
        let counted = call(&broker, "/v1/messages/count_tokens", broker.placeholder()).await;
        assert_eq!(counted.status(), 200);
    }

    assert_eq!(broker.usage().model_calls, Some(0));
    assert_eq!(broker.exceeded(), None);
}

/// Each API style, answered in one JSON document, with the key where its CLI puts it.
#[tokio::test]
async fn unstreamed_answers_of_each_api_style_are_metered_and_each_key_place_is_swapped() {
    let cases = [
        (
            "/v1/responses",
            "authorization",
            json!({"object": "response", "model": "gpt-5.5",
                "usage": {"input_tokens": 100, "output_tokens": 10, "input_tokens_details": {"cached_tokens": 20}}}),
            (80, 10, 20),
        ),
        (
            "/v1/chat/completions",
            "authorization",
            json!({"object": "chat.completion", "model": "mock-model",
                "usage": {"prompt_tokens": 50, "completion_tokens": 6}}),
            (50, 6, 0),
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "x-goog-api-key",
            json!({"candidates": [], "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 9}}),
            (40, 9, 0),
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent?key=PLACEHOLDER",
            "query",
            json!({"candidates": [], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}}),
            (4, 2, 0),
        ),
    ];
    for (path, place, answer, (input, output, cached)) in cases {
        let upstream = upstream("application/json", answer.to_string()).await;
        let (broker, _) = broker_for(&upstream, Budget::default()).await;
        let mut request = client().post(format!(
            "{}{}",
            broker.base_url(),
            path.replace("PLACEHOLDER", broker.placeholder())
        ));
        request = match place {
            "authorization" => request.bearer_auth(broker.placeholder()),
            "x-goog-api-key" => request.header("x-goog-api-key", broker.placeholder()),
            _ => request,
        };

        let response = request.body("{}").send().await.unwrap();

        assert_eq!(response.json::<Value>().await.unwrap(), answer, "{path}");
        let seen = upstream.seen.lock().unwrap()[0].clone();
        match place {
            "authorization" => assert_eq!(
                seen.header("authorization"),
                Some(format!("Bearer {REAL_KEY}").as_str())
            ),
            "x-goog-api-key" => assert_eq!(seen.header("x-goog-api-key"), Some(REAL_KEY)),
            _ => assert!(seen.path_and_query.ends_with(&format!("key={REAL_KEY}")), "{seen:?}"),
        }
        let usage = broker.usage();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens),
            (input, output, cached),
            "{path}"
        );
    }
}

#[tokio::test]
async fn without_a_key_or_an_upstream_the_run_keeps_its_path() {
    let env = vec![("ANTHROPIC_BASE_URL".to_string(), "http://127.0.0.1:9".to_string())];
    let none = Broker::start(
        "claude-code",
        &ANTHROPIC,
        &env,
        &config(),
        Budget::default(),
        ModelMetrics::default(),
    )
    .await
    .unwrap();
    assert!(
        none.is_none(),
        "no key: the CLI keeps its own way in (a credentials file)"
    );

    let env = vec![("ANTHROPIC_API_KEY".to_string(), REAL_KEY.to_string())];
    let none = Broker::start(
        "claude-code",
        &ANTHROPIC,
        &env,
        &config(),
        Budget::default(),
        ModelMetrics::default(),
    )
    .await
    .unwrap();
    assert!(none.is_none(), "no upstream: nowhere to send the key");
}

#[test]
fn the_worker_process_is_sealed_from_its_own_user() {
    seal_worker_process().unwrap();

    // SAFETY: a read of this process's flag.
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
}

#[test]
fn the_real_key_travels_in_plain_http_only_to_this_machine() {
    assert!(check_upstream("https://api.anthropic.com", false).is_ok());
    assert!(check_upstream("http://127.0.0.1:8080", false).is_ok());
    assert!(check_upstream("http://localhost:8080/v1", false).is_ok());
    assert!(check_upstream("http://[::1]:8080", false).is_ok());
    assert!(check_upstream("http://gateway.internal", false).is_err());
    assert!(check_upstream("http://gateway.internal", true).is_ok());
    assert!(check_upstream("ftp://127.0.0.1", true).is_err());
}
