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
