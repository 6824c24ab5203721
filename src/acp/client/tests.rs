use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn setup(policy: Policy) -> AcpSetup {
    AcpSetup {
        prompt: "write hello.txt".into(),
        cwd: "/WORKSPACE".into(),
        resume_session_id: None,
        mcp_servers: Vec::new(),
        policy,
    }
}

const CLIENT: Policy = Policy::Client {
    timeout: Duration::from_secs(300),
    on_timeout: OnTimeout::Reject,
};

fn sent(steps: &[Step]) -> Vec<Value> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Send(line) => Some(serde_json::from_str(line).unwrap()),
            _ => None,
        })
        .collect()
}

fn events(steps: &[Step]) -> Vec<EventKind> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Emit(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn line(v: Value) -> String {
    v.to_string()
}

/// Through `initialize` and `session/new` to the prompt.
fn started(policy: Policy) -> AcpClient {
    let (mut client, steps) = AcpClient::start(setup(policy));
    let init = &sent(&steps)[0];
    assert_eq!(init["method"], "initialize");
    assert_eq!(init["params"]["clientCapabilities"]["fs"]["readTextFile"], false);
    let steps = client.push_line(&line(json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":1}})));
    let new = &sent(&steps)[0];
    assert_eq!(
        (&new["method"], &new["params"]["cwd"]),
        (&json!("session/new"), &json!("/WORKSPACE"))
    );
    let steps = client.push_line(&line(json!({"jsonrpc":"2.0","id":1,"result":{"sessionId":"s1"}})));
    assert_eq!(
        events(&steps),
        [EventKind::Session {
            session_id: "s1".into()
        }]
    );
    let prompt = &sent(&steps)[0];
    assert_eq!(prompt["method"], "session/prompt");
    assert_eq!(
        prompt["params"]["prompt"],
        json!([{"type":"text","text":"write hello.txt"}])
    );
    client
}

fn update(body: Value) -> String {
    line(json!({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":body}}))
}

fn permission(id: Value) -> String {
    line(
        json!({"jsonrpc":"2.0","id":id,"method":"session/request_permission","params":{
        "sessionId":"s1",
        "toolCall":{"toolCallId":"t1","title":"Write a.txt","kind":"edit",
            "content":[{"type":"diff","path":"/WORKSPACE/a.txt","oldText":null,"newText":"a"}]},
        "options":[{"optionId":"yes","name":"Allow","kind":"allow_once"},{"optionId":"no","name":"Reject","kind":"reject_once"}]}}),
    )
}

#[test]
fn chunks_are_joined_per_message_and_the_turn_completes() {
    let mut client = started(Policy::AllowAll);
    let mut steps = Vec::new();
    for l in [
        update(json!({"sessionUpdate":"agent_thought_chunk","content":{"type":"text","text":"hm"}})),
        update(json!({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hel"}})),
        update(json!({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"lo"}})),
        update(json!({"sessionUpdate":"available_commands_update","availableCommands":[]})),
        update(json!({"sessionUpdate":"usage_update","used":5,"size":10,"cost":{"amount":0.5,"currency":"USD"}})),
        line(
            json!({"jsonrpc":"2.0","id":2,"result":{"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":4}}}),
        ),
    ] {
        steps.extend(client.push_line(&l));
    }
    assert_eq!(
        events(&steps),
        [
            EventKind::Thinking { text: "hm".into() },
            EventKind::AssistantMessage { text: "Hello".into() },
        ]
    );
    let Some(Step::Finished(Outcome::Completed(run))) = steps.last() else {
        panic!("not finished: {steps:?}");
    };
    assert_eq!(run.result.as_deref(), Some("Hello"));
    assert_eq!(run.cost_usd, Some(0.5));
    assert_eq!((run.usage.input_tokens, run.usage.output_tokens), (3, 4));
    assert_eq!(run.session_id.as_deref(), Some("s1"));
}

#[test]
fn without_approvals_the_first_allow_option_is_chosen_at_once() {
    let mut client = started(Policy::AllowAll);
    let steps = client.push_line(&permission(json!(0)));
    assert_eq!(
        sent(&steps),
        [json!({"jsonrpc":"2.0","id":0,"result":{"outcome":{"outcome":"selected","optionId":"yes"}}})]
    );
    // The question is the first the stream hears of the tool.
    assert!(matches!(&events(&steps)[..], [EventKind::ToolUse { id, .. }] if id == "t1"));
}

#[test]
fn a_question_waits_for_its_answer_and_is_answered_once() {
    let mut client = started(CLIENT);
    let steps = client.push_line(&permission(json!("p-7")));
    assert!(
        matches!(&steps[1], Step::Ask { request_id, options } if request_id == "perm-1" && options == &["yes", "no"])
    );
    let EventKind::PermissionRequest(question) = &events(&steps)[1] else {
        panic!("{steps:?}");
    };
    assert_eq!(
        question.diff.as_ref().map(|d| d.path.as_str()),
        Some("/WORKSPACE/a.txt")
    );
    assert!(sent(&steps).is_empty());
    assert_eq!(client.open_questions(), ["perm-1"]);

    let steps = client.answer("perm-1", "no", ResolvedBy::Client);
    assert_eq!(
        sent(&steps),
        [json!({"jsonrpc":"2.0","id":"p-7","result":{"outcome":{"outcome":"selected","optionId":"no"}}})]
    );
    assert!(client.answer("perm-1", "yes", ResolvedBy::Client).is_empty());
    assert!(client.open_questions().is_empty());
}

#[test]
fn a_timeout_picks_by_kind_and_a_cancel_withdraws() {
    let mut client = started(CLIENT);
    client.push_line(&permission(json!(1)));
    let steps = client.expire("perm-1", OnTimeout::Allow);
    assert_eq!(sent(&steps)[0]["result"]["outcome"]["optionId"], "yes");
    assert!(matches!(
        &events(&steps)[0],
        EventKind::PermissionResolved {
            by: ResolvedBy::Timeout,
            ..
        }
    ));

    client.push_line(&permission(json!(2)));
    let steps = client.cancel();
    let out = sent(&steps);
    assert_eq!(
        out[0],
        json!({"jsonrpc":"2.0","method":"session/cancel","params":{"sessionId":"s1"}})
    );
    assert_eq!(
        out[1],
        json!({"jsonrpc":"2.0","id":2,"result":{"outcome":{"outcome":"cancelled"}}})
    );
    assert!(matches!(
        &events(&steps)[0],
        EventKind::PermissionResolved {
            option_id: None,
            by: ResolvedBy::Cancel,
            ..
        }
    ));
}

#[test]
fn a_turn_that_ends_with_a_question_open_withdraws_it() {
    let mut client = started(CLIENT);
    client.push_line(&permission(json!(4)));
    let steps = client.push_line(&line(
        json!({"jsonrpc":"2.0","id":2,"result":{"stopReason":"end_turn"}}),
    ));
    assert!(client.open_questions().is_empty());
    assert_eq!(sent(&steps)[0]["result"]["outcome"], json!({"outcome":"cancelled"}));
    let names = crate::provider::parser_testing::names(&events(&steps));
    assert_eq!(names, ["permission_resolved", "tool_result"]);
    assert!(matches!(steps.last(), Some(Step::Finished(Outcome::Completed(_)))));
}

#[test]
fn requests_for_capabilities_not_offered_get_method_not_found() {
    let mut client = started(Policy::AllowAll);
    let steps = client.push_line(&line(
        json!({"jsonrpc":"2.0","id":9,"method":"fs/read_text_file","params":{"path":"/etc/passwd"}}),
    ));
    assert_eq!(sent(&steps)[0]["error"]["code"], METHOD_NOT_FOUND);
}

#[test]
fn errors_and_stop_reasons_become_the_right_failures() {
    for (reply, code) in [
        (
            json!({"error":{"code":-32603,"message":"Internal error","data":"API Error: 401 invalid x-api-key"}}),
            ErrorCode::AuthFailed,
        ),
        (
            json!({"error":{"code":-32603,"message":"429 Too Many Requests"}}),
            ErrorCode::RateLimited,
        ),
        (
            json!({"error":{"code":-32603,"message":"boom"}}),
            ErrorCode::ProviderFailed,
        ),
        (json!({"result":{"stopReason":"refusal"}}), ErrorCode::ProviderFailed),
    ] {
        let mut client = started(Policy::AllowAll);
        let mut message = json!({"jsonrpc":"2.0","id":2});
        message
            .as_object_mut()
            .unwrap()
            .extend(reply.as_object().unwrap().clone());
        let steps = client.push_line(&line(message));
        let Some(Step::Finished(Outcome::Failed(failure))) = steps.last() else {
            panic!("{steps:?}");
        };
        assert_eq!(failure.code, code, "{failure:?}");
        assert_eq!(failure.session_id.as_deref(), Some("s1"));
    }
}

#[test]
fn a_load_replays_nothing_and_an_agent_without_load_is_refused() {
    let mut with_resume = setup(Policy::AllowAll);
    with_resume.resume_session_id = Some("old".into());
    let (mut client, _) = AcpClient::start(with_resume.clone());
    let steps = client.push_line(&line(
        json!({"jsonrpc":"2.0","id":0,"result":{"agentCapabilities":{"loadSession":true}}}),
    ));
    assert_eq!(sent(&steps)[0]["method"], "session/load");
    let replay = client.push_line(&update(
        json!({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"old"}}),
    ));
    assert!(events(&replay).is_empty());
    let steps = client.push_line(&line(json!({"jsonrpc":"2.0","id":1,"result":null})));
    assert_eq!(
        events(&steps),
        [EventKind::Session {
            session_id: "old".into()
        }]
    );

    let (mut client, _) = AcpClient::start(with_resume);
    let steps = client.push_line(&line(json!({"jsonrpc":"2.0","id":0,"result":{"agentCapabilities":{}}})));
    assert!(matches!(steps.last(), Some(Step::Finished(Outcome::Failed(_)))));
}

/// Agent lines of every kind the client reads, for the hostile-line property below.
fn recorded() -> String {
    [
        line(json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":1,"agentCapabilities":{"loadSession":true}}})),
        line(json!({"jsonrpc":"2.0","id":1,"result":{"sessionId":"s1"}})),
        update(json!({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hi"}})),
        update(json!({"sessionUpdate":"tool_call","toolCallId":"t1","title":"Run ls","kind":"execute","status":"pending","rawInput":{"command":"ls"}})),
        update(json!({"sessionUpdate":"tool_call_update","toolCallId":"t1","status":"completed","content":[{"type":"content","content":{"type":"text","text":"a b"}}]})),
        update(json!({"sessionUpdate":"plan","entries":[{"content":"x","status":"pending","priority":"low"}]})),
        permission(json!(0)),
        line(json!({"jsonrpc":"2.0","id":2,"result":{"stopReason":"end_turn"}})),
    ]
    .join("\n")
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_lines_never_panic(lines in crate::provider::parser_testing::hostile_lines(&recorded())) {
        let mut client = started(CLIENT);
        for line in &lines {
            client.push_line(line);
        }
        for request_id in client.open_questions() {
            client.answer(&request_id, "yes", ResolvedBy::Client);
        }
        client.cancel();
        let _ = client.finish(&crate::provider::parser_testing::exit(1, "stderr"));
    }
}

/// Replays a transcript recorded from a real agent (`tests/fixtures/acp/<agent>/<flow>.jsonl`): the agent's lines are
/// fed to a client, its requests are checked against what the recording client sent (ids mapped by order), and the
/// recording client's answers to permission requests become the job's answers. Returns the events and the outcome.
fn replay(agent: &str, flow: &str) -> (Vec<EventKind>, Option<Outcome>) {
    let recorded = crate::provider::parser_testing::fixture(&format!("acp/{agent}"), flow);
    let mut setup = setup(CLIENT);
    let mut ids: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let messages: Vec<Value> = recorded.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    if let Some(load) = messages.iter().find(|m| m["msg"]["method"] == "session/load") {
        setup.resume_session_id = load["msg"]["params"]["sessionId"].as_str().map(String::from);
    }
    let (mut client, first) = AcpClient::start(setup);
    let mut pending: Vec<Value> = sent(&first);
    let mut steps: Vec<Step> = first;
    let mut questions: Vec<(Value, String)> = Vec::new();
    for message in &messages {
        let msg = &message["msg"];
        match message["dir"].as_str() {
            Some("out") if msg["method"].is_string() && msg.get("id").is_some() => {
                let ours = pending.remove(0);
                assert_eq!(
                    ours["method"], msg["method"],
                    "{agent}/{flow}: the client asks in the recorded order"
                );
                ids.insert(msg["id"].to_string(), ours["id"].as_u64().unwrap());
            }
            Some("out") if msg["method"] == "session/cancel" => {
                let before = steps.len();
                steps.extend(client.cancel());
                questions.clear();
                let said = sent(&steps[before..]);
                assert_eq!(said[0]["method"], "session/cancel", "{agent}/{flow}");
            }
            Some("out") if msg.get("result").is_some() => {
                let Some(option_id) = msg["result"]["outcome"]["optionId"].as_str() else {
                    continue;
                };
                let (_, request_id) = questions
                    .iter()
                    .find(|(id, _)| *id == msg["id"])
                    .expect("a question")
                    .clone();
                steps.extend(client.answer(&request_id, option_id, ResolvedBy::Client));
            }
            Some("in") if msg.get("raw").is_some() => {}
            Some("in") => {
                let mut msg = msg.clone();
                if msg.get("method").is_none()
                    && let Some(ours) = ids.get(&msg["id"].to_string())
                {
                    msg["id"] = json!(ours);
                }
                let new = client.push_line(&msg.to_string());
                for step in &new {
                    if let Step::Ask { request_id, .. } = step {
                        questions.push((msg["id"].clone(), request_id.clone()));
                    }
                }
                pending.extend(
                    sent(&new)
                        .into_iter()
                        .filter(|m| m["method"].is_string() && m.get("id").is_some()),
                );
                steps.extend(new);
            }
            _ => {}
        }
    }
    let outcome = steps.iter().find_map(|s| match s {
        Step::Finished(outcome) => Some(outcome.clone()),
        _ => None,
    });
    (events(&steps), outcome)
}

fn types(events: &[EventKind]) -> Vec<&'static str> {
    let mut names = crate::provider::parser_testing::names(events);
    names.dedup();
    names
}

#[test]
fn recorded_allow_flows_ask_once_and_complete_with_the_agents_words() {
    for agent in ["copilot", "gemini", "claude", "codex"] {
        let (events, outcome) = replay(agent, "allow");
        let names = types(&events);
        let asked = names
            .iter()
            .position(|n| *n == "permission_request")
            .unwrap_or_else(|| panic!("{agent}: {names:?}"));
        let used = names.iter().position(|n| *n == "tool_use").unwrap();
        assert!(
            used < asked,
            "{agent}: the tool is announced before the question: {names:?}"
        );
        assert!(
            names.contains(&"permission_resolved") && names.contains(&"tool_result"),
            "{agent}: {names:?}"
        );
        let Some(Outcome::Completed(run)) = outcome else {
            panic!("{agent}: {outcome:?}");
        };
        assert_eq!(run.result.as_deref(), Some("Finished."), "{agent}");
        // Every tool call is closed, successfully.
        let results: Vec<&EventKind> = events
            .iter()
            .filter(|e| matches!(e, EventKind::ToolResult { .. }))
            .collect();
        assert!(
            results
                .iter()
                .all(|r| matches!(r, EventKind::ToolResult { is_error: false, .. })),
            "{agent}: {results:?}"
        );
        let EventKind::PermissionRequest(question) =
            events.iter().find(|e| e.type_name() == "permission_request").unwrap()
        else {
            unreachable!()
        };
        assert!(
            question.options.iter().any(|o| o.kind == "allow_once"),
            "{agent}: {question:?}"
        );
        if agent != "codex" {
            assert!(run.usage.input_tokens > 0, "{agent}: {:?}", run.usage);
        }
    }
}

#[test]
fn recorded_reject_flows_complete_without_the_write() {
    for agent in ["copilot", "gemini", "claude", "codex"] {
        let (events, outcome) = replay(agent, "reject");
        assert!(matches!(outcome, Some(Outcome::Completed(_))), "{agent}: {outcome:?}");
        for event in &events {
            if let EventKind::ToolResult { is_error, .. } = event {
                assert!(
                    *is_error || agent == "gemini",
                    "{agent}: a rejected tool reported success: {events:?}"
                );
            }
        }
    }
}

#[test]
fn recorded_cancels_withdraw_the_question_and_close_the_tool() {
    for agent in ["copilot", "gemini", "claude", "codex"] {
        let (events, _) = replay(agent, "cancel");
        let withdrawn = events.iter().any(|e| {
            matches!(
                e,
                EventKind::PermissionResolved {
                    option_id: None,
                    by: ResolvedBy::Cancel,
                    ..
                }
            )
        });
        assert!(withdrawn, "{agent}: {events:?}");
        let uses = events.iter().filter(|e| e.type_name() == "tool_use").count();
        let results = events.iter().filter(|e| e.type_name() == "tool_result").count();
        assert_eq!(uses, results, "{agent}: every tool_use has its tool_result");
    }
}

#[test]
fn recorded_api_failures_become_auth_failed_and_rate_limited() {
    for agent in ["copilot", "gemini", "claude", "codex"] {
        for (flow, code) in [("auth401", ErrorCode::AuthFailed), ("rate429", ErrorCode::RateLimited)] {
            let (_, outcome) = replay(agent, flow);
            let Some(Outcome::Failed(failure)) = outcome else {
                panic!("{agent}/{flow}: {outcome:?}");
            };
            assert_eq!(failure.code, code, "{agent}/{flow}: {failure:?}");
        }
    }
}

#[test]
fn a_recorded_load_streams_none_of_the_replayed_history_before_the_load_answer() {
    for agent in ["copilot", "claude", "codex"] {
        let (events, _) = replay(agent, "load");
        let names = types(&events);
        assert_eq!(names, ["session"], "{agent}: {events:?}");
    }
}

/// Why the client reads what agents send by hand while it writes with the protocol crate's types: the crate's
/// `SessionUpdate` has no variant for a kind it does not know, so one update of a kind newer than the pinned schema
/// would fail its whole notification, where the client skips it and goes on (`available_commands_update` above
/// stands for such a kind). When this fails, the crate tolerates unknown kinds and the reading side can move too.
#[test]
fn the_crates_session_update_refuses_a_kind_it_does_not_know_which_the_client_skips() {
    use agent_client_protocol::v1::schema::SessionUpdate;
    let newer = json!({"sessionUpdate": "a_kind_from_a_newer_schema", "content": {"type": "text", "text": "x"}});
    assert!(serde_json::from_value::<SessionUpdate>(newer.clone()).is_err());

    let mut client = started(Policy::AllowAll);
    let mut steps = client.push_line(&update(newer));
    steps.extend(client.push_line(&update(
        json!({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"still here"}}),
    )));
    steps.extend(client.push_line(&line(
        json!({"jsonrpc":"2.0","id":2,"result":{"stopReason":"end_turn"}}),
    )));
    assert_eq!(
        events(&steps),
        [EventKind::AssistantMessage {
            text: "still here".into()
        }]
    );
}
