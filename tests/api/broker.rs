//! The model-API broker with the real CLIs against the test suite's mocks as upstreams: the CLI works as before
//! while holding only a placeholder, the mock sees the real key, the worker's own meter adds up what the mock
//! sent, and a job's limits stop it at the next model call.

use serde_json::{Value, json};

use crate::{
    claude_code::claude_worker,
    codex::{codex_job, codex_worker},
    copilot::{copilot_job, copilot_worker},
    gemini::{gemini_job, gemini_worker},
    opencode::{opencode_job, opencode_worker},
    support::{
        TestWorker, client, job,
        mock_anthropic::{MockAnthropic, Reply},
        mock_chat::{self, MockChat},
        mock_gemini::{self, MockGemini},
        mock_openai::{self, MockOpenAi},
        sse::{SseEvent, assert_well_formed},
    },
};

const WORKER_KEY: &str = "sk-ant-api03-CANARY-worker-9d41c7";
const REQUEST_KEY: &str = "sk-ant-api03-CANARY-request-2b8e05";

/// What the agent's shell can read: its environment and the credential files of every CLI it might find.
const SNOOP: &str = "env; cat ~/.claude/.credentials.json ~/.codex/auth.json ~/.config/gemini/oauth_creds.json \
                     \"$CLAUDE_CONFIG_DIR/.credentials.json\" 2>&1; echo snooped";

fn find<'a>(events: &'a [SseEvent], kind: &str) -> &'a SseEvent {
    events.iter().find(|e| e.kind() == kind).unwrap_or_else(|| {
        panic!(
            "no {kind} event in {:?}",
            events.iter().map(SseEvent::kind).collect::<Vec<_>>()
        )
    })
}

/// `NAME=value` of the agent's `env` output.
fn var<'a>(env_output: &'a str, name: &str) -> Option<&'a str> {
    env_output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
}

/// The agent ran `SNOOP` and told what it saw; returns the tool's output.
async fn snoop(worker: &crate::support::TestWorker, body: &Value) -> (Vec<SseEvent>, String) {
    let mut stream = worker.execute(body).await;
    let events = stream.collect().await;
    assert_well_formed(&events, 0);
    let raw = String::from_utf8(stream.raw.clone()).unwrap();
    assert!(!raw.contains("CANARY"), "a real key reached the stream:\n{raw}");
    assert!(
        !raw.contains("[REDACTED]"),
        "the agent saw something the redactor had to hide:\n{raw}"
    );
    let output = find(&events, "tool_result").data["output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(output.contains("snooped"), "{output}");
    (events, output)
}

#[tokio::test]
async fn claude_code_holds_only_a_placeholder_that_no_other_broker_takes_and_that_dies_with_the_job() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    let worker = claude_worker(&mock, &[("ANTHROPIC_API_KEY", WORKER_KEY), ("EXIT_AFTER_JOB", "false")]);

    let (events, seen) = snoop(&worker, &job("What can you see?")).await;

    assert_eq!(events.last().unwrap().kind(), "completed");
    let placeholder = var(&seen, "ANTHROPIC_API_KEY").expect("the CLI has a key").to_string();
    assert!(placeholder.starts_with("uwb-"), "{placeholder}");
    let base_url = var(&seen, "ANTHROPIC_BASE_URL").unwrap().to_string();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");
    assert_ne!(base_url, mock.base_url(), "the CLI does not know the upstream");
    assert!(
        mock.credentials().iter().all(|c| c == WORKER_KEY),
        "{:?}",
        mock.credentials()
    );

    // A second job, with the request's own key, tries the first job's placeholder on its own broker.
    mock.set_reply(Reply::RunCommand {
        cmd: format!(
            "curl -s -o /dev/null -w 'status=%{{http_code}}\\n' -H 'x-api-key: {placeholder}' \
             -H 'content-type: application/json' -d '{{}}' \"$ANTHROPIC_BASE_URL/v1/messages\"; echo snooped"
        ),
        final_text: "Tried.".into(),
    });
    let calls_before = mock.requests().len();
    worker.wait_for_status("idle").await;
    let mut body = job("Try that key");
    body["codingAssistantAccessToken"] = json!(REQUEST_KEY);
    let (events, tried) = snoop(&worker, &body).await;

    assert_eq!(events.last().unwrap().kind(), "completed");
    assert!(tried.contains("status=401"), "{tried}");
    assert_eq!(
        mock.requests().len(),
        calls_before + 2,
        "the refused call never reached the mock"
    );
    assert!(mock.credentials()[calls_before..].iter().all(|c| c == REQUEST_KEY));

    // The first job's broker is gone with its job.
    let after = client()
        .post(format!("{base_url}/v1/messages"))
        .header("x-api-key", &placeholder)
        .json(&json!({}))
        .send()
        .await;
    assert!(after.is_err(), "the ended job's broker still answers: {after:?}");
}

#[tokio::test]
async fn claude_codes_usage_is_the_workers_own_count_of_what_the_mock_sent() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: "echo counted".into(),
        final_text: "Counted.".into(),
    });
    // Kept after the job, for its /metrics.
    let worker = claude_worker(&mock, &[("EXIT_AFTER_JOB", "false")]);

    let events = worker.execute(&job("Count")).await.collect().await;

    assert_well_formed(&events, 0);
    let done = &events.last().unwrap().data;
    let calls = mock.requests().len() as u64;
    assert!(calls >= 2, "a tool call and the answer after it");
    // Every streamed answer of the mock: 10 input tokens in message_start, 5 output tokens in message_delta.
    assert_eq!(
        done["usage"],
        json!({"inputTokens": 10 * calls, "outputTokens": 5 * calls, "cacheReadTokens": 0,
            "cacheCreationTokens": 0, "metered": true, "modelCalls": calls}),
        "{done}"
    );
    let metrics = client()
        .get(worker.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "unified_worker_model_tokens_total{{provider=\"claude-code\",kind=\"output\"}} {}",
            5 * calls
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "unified_worker_model_calls_total{{provider=\"claude-code\",outcome=\"forwarded\"}} {calls}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("unified_worker_model_upstream_seconds_count{provider=\"claude-code\"}"));
}

#[tokio::test]
async fn max_tokens_reached_mid_turn_ends_the_job_and_no_further_call_reaches_the_mock() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: "echo one more call".into(),
        final_text: "never sent".into(),
    });
    let worker = claude_worker(&mock, &[("EXIT_AFTER_JOB", "false")]);
    let mut body = job("Spend");
    body["limits"] = json!({"maxTokens": 15});

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "budget_exceeded", "{end}");
    assert_eq!(end["limit"], "maxTokens");
    assert_eq!(end["used"]["tokens"], 15, "{end}");
    assert_eq!(end["used"]["modelCalls"], 1);
    assert!(end["used"]["costUsd"].as_f64().is_some(), "{end}");
    assert_eq!(
        mock.requests().len(),
        1,
        "the call after the limit never reached the mock"
    );
    let metrics = client()
        .get(worker.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The CLI may try the refused call again before it is stopped: each try is refused.
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("unified_worker_model_calls_total{provider=\"claude-code\",outcome=\"refused\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 1), "{metrics}");
}

#[tokio::test]
async fn max_model_calls_stops_the_job_at_the_next_call() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: "echo again".into(),
        final_text: "never sent".into(),
    });
    let worker = claude_worker(&mock, &[("LIMIT_MAX_MODEL_CALLS", "1")]);

    let events = worker.execute(&job("Call twice")).await.collect().await;

    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "budget_exceeded", "{end}");
    assert_eq!(end["limit"], "maxModelCalls");
    assert_eq!(end["used"]["modelCalls"], 1);
    assert_eq!(end["retryable"], false);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn bad_limits_are_refused_naming_the_field() {
    let mock = MockAnthropic::start(Reply::Text("unused".into()));
    let worker = claude_worker(&mock, &[]);
    for (limits, field) in [
        (json!({"maxTokens": 0}), "limits.maxTokens"),
        (json!({"maxCostUsd": -2}), "limits.maxCostUsd"),
        (json!({"maxModelCalls": 1.5}), "limits.maxModelCalls"),
        (json!({"tokens": 5}), "limits.tokens"),
    ] {
        let mut body = job("x");
        body["limits"] = limits;

        let resp = worker.post_execute(&body).await;

        assert_eq!(resp.status(), 422, "{field}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let mut cursor = job("x");
    cursor["codingAssistantProvider"] = json!("cursor");
    cursor["limits"] = json!({"maxTokens": 5});
    let resp = worker.post_execute(&cursor).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["field"], "limits");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn health_says_which_providers_are_brokered_and_broker_off_gives_the_cli_its_key() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: "echo \"key=$ANTHROPIC_API_KEY\"; echo snooped".into(),
        final_text: "Done.".into(),
    });
    let brokered = claude_worker(&mock, &[]);
    let off = claude_worker(&mock, &[("BROKER", "off")]);

    let health = brokered.get_json("/health").await;
    let health_off = off.get_json("/health").await;
    let events = off.execute(&job("Show the key")).await.collect().await;

    assert_eq!(health["providers"]["claude-code"]["brokered"], true, "{health}");
    assert_eq!(health["providers"]["gemini"]["brokered"], true);
    assert_eq!(health["providers"]["codex"]["brokered"], true);
    assert_eq!(health["providers"]["opencode"]["brokered"], true);
    assert_eq!(health["providers"]["cursor"]["brokered"], false);
    assert_eq!(
        health["providers"]["copilot"]["brokered"], false,
        "no bring-your-own-key endpoint here"
    );
    assert_eq!(health_off["providers"]["claude-code"]["brokered"], false);
    let output = find(&events, "tool_result").data["output"].as_str().unwrap();
    assert!(
        output.contains("key=[REDACTED]"),
        "today's path: the key, redacted: {output}"
    );
    assert!(events.last().unwrap().data["usage"].get("metered").is_none());
}

#[tokio::test]
async fn copilot_with_its_own_key_holds_only_a_placeholder() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    let worker = copilot_worker(&mock, &[("COPILOT_PROVIDER_API_KEY", WORKER_KEY)]);

    let health = worker.get_json("/health").await;
    let (events, seen) = snoop(&worker, &copilot_job("What can you see?")).await;

    assert_eq!(health["providers"]["copilot"]["brokered"], true);
    let done = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().kind(), "completed", "{done}");
    // Copilot keeps its provider variables out of its shell's environment and masks secrets in what the shell
    // prints, so the agent's view shows neither the key nor the placeholder; `snoop` checked that the real key is
    // nowhere in the stream.
    assert!(seen.contains("HOME="), "the shell's environment was printed: {seen}");
    assert!(!mock.credentials().is_empty());
    assert!(
        mock.credentials().iter().all(|c| c == WORKER_KEY),
        "{:?}",
        mock.credentials()
    );
    let calls = mock.requests().len() as u64;
    assert_eq!(done["usage"]["metered"], true);
    assert_eq!(done["usage"]["modelCalls"], calls);
    assert_eq!(done["usage"]["outputTokens"], 5 * calls);
}

#[tokio::test]
async fn gemini_cli_holds_only_a_placeholder_and_its_usage_is_metered() {
    let mock = MockGemini::start(mock_gemini::Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    let worker = gemini_worker(&mock, &[("GEMINI_API_KEY", "AIzaSy-CANARY-worker-key-77d0")]);

    let (events, seen) = snoop(&worker, &gemini_job("What can you see?")).await;

    let done = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().kind(), "completed", "{done}");
    assert!(
        var(&seen, "GEMINI_API_KEY").is_some_and(|k| k.starts_with("uwb-")),
        "{seen}"
    );
    assert!(
        var(&seen, "GOOGLE_GEMINI_BASE_URL").is_some_and(|u| u != mock.base_url()),
        "{seen}"
    );
    let calls = mock.calls();
    assert!(!calls.is_empty());
    assert!(
        calls
            .iter()
            .all(|c| c.api_key.as_deref() == Some("AIzaSy-CANARY-worker-key-77d0")),
        "the mock got the real key"
    );
    let turns = mock.turns().len() as u64;
    assert_eq!(
        done["usage"],
        json!({
            "inputTokens": turns * (mock_gemini::PROMPT_TOKENS - mock_gemini::CACHED_TOKENS),
            "outputTokens": turns * mock_gemini::ANSWER_TOKENS,
            "cacheReadTokens": turns * mock_gemini::CACHED_TOKENS,
            "cacheCreationTokens": 0,
            "metered": true,
            "modelCalls": turns,
        })
    );
}

#[tokio::test]
async fn the_gateway_refuses_bad_limits_like_every_other_field() {
    // No worker needs to answer: validation comes before the line.
    let gw = crate::support::fleet::gateway("http://127.0.0.1:9", &[]);
    // A value out of range is 422, one of the wrong JSON type 400, as for every field.
    for (limits, status, field) in [
        (json!({"maxTokens": 0}), 422, "limits.maxTokens"),
        (json!({"maxCostUsd": "a lot"}), 400, "limits.maxCostUsd"),
    ] {
        let mut body = job("x");
        body["limits"] = limits;

        let resp = client().post(gw.url("/execute")).json(&body).send().await.unwrap();

        assert_eq!(resp.status().as_u16(), status, "{field}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
}

#[tokio::test]
async fn codex_holds_only_a_placeholder_and_its_usage_is_metered() {
    let mock = MockOpenAi::start(mock_openai::Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    let worker = codex_worker(&mock, &[]);
    let codex_key = codex_job("x")["codingAssistantAccessToken"]
        .as_str()
        .unwrap()
        .to_string();

    let (events, seen) = snoop(&worker, &codex_job("What can you see?")).await;

    let done = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().kind(), "completed", "{done}");
    let placeholder = var(&seen, "OPENAI_API_KEY").expect("the CLI has a key");
    assert!(placeholder.starts_with("uwb-"), "{seen}");
    assert_eq!(var(&seen, "CODEX_API_KEY"), Some(placeholder));
    assert!(!mock.authorizations().is_empty());
    assert!(
        mock.authorizations()
            .iter()
            .all(|a| *a == format!("Bearer {codex_key}")),
        "{:?}",
        mock.authorizations()
    );
    // Every call of the mock: 100 input tokens of which 20 cached, 10 output tokens.
    let calls = mock.requests().len() as u64;
    assert_eq!(
        done["usage"],
        json!({"inputTokens": 80 * calls, "outputTokens": 10 * calls, "cacheReadTokens": 20 * calls,
            "cacheCreationTokens": 0, "metered": true, "modelCalls": calls}),
        "{done}"
    );
}

#[tokio::test]
async fn opencode_holds_only_a_placeholder_and_the_mock_gets_the_request_key() {
    let mock = MockChat::start(mock_chat::Reply::RunCommand {
        cmd: format!("{SNOOP}; printf '%s\\n' \"$OPENCODE_CONFIG_CONTENT\" \"$OPENCODE_AUTH_CONTENT\""),
        final_text: "Looked around.".into(),
    });
    let worker = opencode_worker(&mock, &[]);
    let mut body = opencode_job("What can you see?");
    body["codingAssistantAccessToken"] = json!("request-key-CANARY-opencode-31d7");

    let (events, seen) = snoop(&worker, &body).await;

    let done = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().kind(), "completed", "{done}");
    assert!(
        seen.contains("\"key\":\"uwb-"),
        "the stored credential is the placeholder: {seen}"
    );
    assert!(seen.contains("\"baseURL\":\"http://127.0.0.1:"), "{seen}");
    assert!(
        !seen.contains(&mock.base_url()),
        "the CLI does not know the upstream: {seen}"
    );
    let keys = mock.authorizations();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k == "Bearer request-key-CANARY-opencode-31d7"),
        "{keys:?}"
    );
    assert_eq!(done["usage"]["modelCalls"], mock.requests().len() as u64);
}

#[tokio::test]
async fn a_spent_budget_ends_a_conversation_at_its_next_turn() {
    let mock = MockAnthropic::start(Reply::Text("Noted.".into()));
    let worker = claude_worker(&mock, &[]);
    let mut body = job("Remember this.");
    body["jobId"] = json!("budget-conversation");
    body["conversation"] = json!({});
    body["limits"] = json!({"maxModelCalls": 1});
    let mut stream = worker.execute(&body).await;
    let mut events = Vec::new();
    while !events.iter().any(|e: &SseEvent| e.kind() == "turn_completed") {
        let event = stream.next_event().await.expect("the first turn ended the stream");
        assert!(!event.is_terminal(), "{}", event.data);
        events.push(event);
    }

    let sent = crate::conversation::send(&worker, "budget-conversation", "And now?", false).await;
    events.extend(stream.collect().await);

    assert_eq!(sent.status(), 202);
    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "budget_exceeded", "{end}");
    assert_eq!(end["limit"], "maxModelCalls");
    assert_eq!(end["used"]["modelCalls"], 1);
    assert_eq!(
        mock.requests().len(),
        1,
        "the second turn's call never reached the mock"
    );
}

#[tokio::test]
async fn max_cost_reached_after_a_call_ends_the_job_with_the_dollars_used() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: "echo one more call".into(),
        final_text: "never sent".into(),
    });
    // A dollar a token for the test's model: one call of the mock (10 input, 5 output tokens) costs $15.
    let prices = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        prices.path(),
        r#"{"claude-budget-test": {"input": 1000000, "output": 1000000}}"#,
    )
    .unwrap();
    let worker = claude_worker(&mock, &[("PRICES_FILE", prices.path().to_str().unwrap())]);
    let mut body = job("Spend dollars");
    body["providerOptions"] = json!({"model": "claude-budget-test"});
    body["limits"] = json!({"maxCostUsd": 10});

    let events = worker.execute(&body).await.collect().await;

    assert_well_formed(&events, 0);
    let end = &events.last().unwrap().data;
    assert_eq!(end["code"], "budget_exceeded", "{end}");
    assert_eq!(end["limit"], "maxCostUsd");
    assert_eq!(end["used"]["costUsd"], 15.0, "{end}");
    assert_eq!(end["used"]["tokens"], 15);
    assert_eq!(
        mock.requests().len(),
        1,
        "the call after the limit never reached the mock"
    );
    assert_eq!(mock.requests()[0]["model"], "claude-budget-test");
}

#[tokio::test]
async fn codex_with_its_built_in_openai_provider_holds_only_a_placeholder() {
    let mock = MockOpenAi::start(mock_openai::Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    // No model provider in a config.toml: the built-in `openai` one, with the worker's key, and the mock standing
    // for the OpenAI API.
    let key = "sk-proj-CANARY-builtin-6a02f1";
    let upstream = mock.base_url();
    let worker = TestWorker::spawn(&[
        ("CODEX_BIN", crate::support::codex_bin().as_str()),
        ("CODEX_API_KEY", key),
        ("OPENAI_UPSTREAM_URL", upstream.as_str()),
    ]);
    let mut body = codex_job("What can you see?");
    body.as_object_mut().unwrap().remove("codingAssistantAccessToken");
    body["providerOptions"] = json!({"model": "gpt-5.5"});

    let (events, seen) = snoop(&worker, &body).await;

    let done = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().kind(), "completed", "{done}");
    assert!(
        var(&seen, "CODEX_API_KEY").is_some_and(|k| k.starts_with("uwb-")),
        "{seen}"
    );
    let calls = mock.authorizations();
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|a| *a == format!("Bearer {key}")), "{calls:?}");
    assert_eq!(done["usage"]["metered"], true, "{done}");
    assert_eq!(done["usage"]["modelCalls"], calls.len() as u64);
}

#[tokio::test]
async fn opencode_with_a_built_in_provider_holds_only_a_placeholder() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    // No provider in a configuration: opencode's own `anthropic`, with the worker's key, and the mock standing for
    // the Anthropic API.
    let upstream = mock.base_url();
    let worker = TestWorker::spawn(&[
        ("OPENCODE_BIN", crate::support::opencode_bin().as_str()),
        ("ANTHROPIC_API_KEY", WORKER_KEY),
        ("ANTHROPIC_UPSTREAM_URL", upstream.as_str()),
        ("npm_config_registry", "http://127.0.0.1:9"),
    ]);
    let mut body = opencode_job("What can you see?");
    body["providerOptions"] = json!({"model": "anthropic/claude-sonnet-4-5"});

    let (events, seen) = snoop(&worker, &body).await;

    let done = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().kind(), "completed", "{done}");
    assert!(
        var(&seen, "ANTHROPIC_API_KEY").is_some_and(|k| k.starts_with("uwb-")),
        "{seen}"
    );
    assert!(!mock.credentials().is_empty());
    assert!(
        mock.credentials().iter().all(|c| c == WORKER_KEY),
        "{:?}",
        mock.credentials()
    );
    assert_eq!(done["usage"]["modelCalls"], mock.requests().len() as u64);
}

#[tokio::test]
async fn a_claude_credentials_object_that_outlives_the_job_is_brokered_and_never_a_file() {
    let mock = MockAnthropic::start(Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    let worker = claude_worker(&mock, &[]);
    let in_a_day = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
    let expires_at = in_a_day.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut body = job("What can you see?");
    body["codingAssistantAccessToken"] = json!({"claudeAiOauth": {
        "accessToken": "sk-ant-oat01-CANARY-access-51c2", "refreshToken": "sk-ant-ort01-CANARY-refresh-0f3e",
        "expiresAt": expires_at, "scopes": ["user:inference"]}});

    let (events, seen) = snoop(&worker, &body).await;

    assert_eq!(
        events.last().unwrap().kind(),
        "completed",
        "{}",
        events.last().unwrap().data
    );
    // Claude Code keeps its OAuth variable out of its shell; had it not, the shell would see the placeholder.
    assert!(
        var(&seen, "CLAUDE_CODE_OAUTH_TOKEN").is_none_or(|t| t.starts_with("uwb-")),
        "{seen}"
    );
    assert!(!seen.contains("claudeAiOauth"), "no credentials file to read: {seen}");
    let sent = mock.credentials();
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|c| c == "Bearer sk-ant-oat01-CANARY-access-51c2"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn opencode_with_openrouter_holds_only_a_placeholder() {
    let mock = MockChat::start(mock_chat::Reply::RunCommand {
        cmd: SNOOP.into(),
        final_text: "Looked around.".into(),
    });
    // opencode's own `openrouter` provider, with the worker's key, and the mock standing for OpenRouter's API.
    let upstream = mock.base_url();
    let worker = TestWorker::spawn(&[
        ("OPENCODE_BIN", crate::support::opencode_bin().as_str()),
        ("OPENROUTER_API_KEY", "sk-or-v1-CANARY-worker-8c1e"),
        ("OPENROUTER_UPSTREAM_URL", upstream.as_str()),
        ("npm_config_registry", "http://127.0.0.1:9"),
    ]);
    let mut body = opencode_job("What can you see?");
    body["providerOptions"] = json!({"model": "openrouter/anthropic/claude-sonnet-4.5"});

    let (events, seen) = snoop(&worker, &body).await;

    let done = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().kind(), "completed", "{done}");
    assert!(
        var(&seen, "OPENROUTER_API_KEY").is_some_and(|k| k.starts_with("uwb-")),
        "{seen}"
    );
    let keys = mock.authorizations();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k == "Bearer sk-or-v1-CANARY-worker-8c1e"),
        "{keys:?}"
    );
}
