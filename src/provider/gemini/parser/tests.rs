//! Parser tests on the Gemini CLI lines recorded in tests/fixtures/gemini (docs/providers.md).

use serde_json::json;

use super::*;
use crate::provider::parser_testing::{exit, feed, feed_text, fixture, names};

const SESSION: &str = "4769068a-9427-47a4-a5ae-a9d17747e772";

#[test]
fn a_recorded_file_write_tells_the_whole_story() {
    let mut p = GeminiParser::default();
    let events = feed_text(&mut p, &fixture("gemini", "write"));
    assert_eq!(
        names(&events),
        [
            "session",
            "assistant_message",
            "tool_use",
            "tool_result",
            "assistant_message"
        ]
    );
    assert_eq!(
        events[1],
        EventKind::AssistantMessage {
            text: "Writing hello.txt.".into()
        },
        "the deltas of one answer are joined"
    );
    let EventKind::ToolUse { id, name, input } = &events[2] else {
        panic!("{:?}", events[2])
    };
    assert_eq!(
        (id.as_str(), name.as_str()),
        ("write_file__write_file_1795640279185_0", "write_file")
    );
    assert_eq!(input["content"], "hello from gemini\n");
    assert_eq!(
        events[3],
        EventKind::ToolResult {
            tool_use_id: id.clone(),
            output: String::new(),
            is_error: false
        }
    );
    let Outcome::Completed(run) = p.finish(&exit(0, "")) else {
        panic!("expected completion")
    };
    assert_eq!(run.session_id.as_deref(), Some(SESSION));
    assert_eq!(run.result.as_deref(), Some("I wrote hello.txt."));
    assert_eq!(run.num_turns, 2);
    assert_eq!(run.duration_ms, 394);
    assert_eq!(run.cost_usd, None);
    assert_eq!(
        run.usage,
        Usage {
            input_tokens: 180,
            output_tokens: 40,
            cache_read_tokens: 20,
            cache_creation_tokens: 0,
..Usage::default()
}
    );
}

#[test]
fn a_recorded_resumed_run_announces_the_resumed_session() {
    let mut p = GeminiParser::default();
    let events = feed_text(&mut p, &fixture("gemini", "resume"));
    assert_eq!(
        events,
        vec![
            EventKind::Session {
                session_id: "af38660f-381f-46ca-ae60-4dd494314c00".into()
            },
            EventKind::AssistantMessage { text: "Noted.".into() },
        ]
    );
    assert!(matches!(p.finish(&exit(0, "")), Outcome::Completed(_)));
}

#[test]
fn a_recorded_401_is_auth_failed_with_the_apis_message() {
    let mut p = GeminiParser::default();
    feed_text(&mut p, &fixture("gemini", "status401"));
    let Outcome::Failed(f) = p.finish(&exit(145, "Error when talking to Gemini API")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::AuthFailed);
    assert!(f.message.contains("UNAUTHENTICATED"), "{}", f.message);
    assert_eq!(f.exit_code, Some(145));
    assert_eq!(f.stderr_tail.as_deref(), Some("Error when talking to Gemini API"));
    assert_eq!(f.session_id.as_deref(), Some("7e2b59a1-652c-4112-8cec-3f8fe7df173e"));
}

#[test]
fn a_recorded_429_is_rate_limited() {
    let mut p = GeminiParser::default();
    feed_text(&mut p, &fixture("gemini", "status429"));
    let Outcome::Failed(f) = p.finish(&exit(173, "")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::RateLimited);
    assert!(f.retryable);
    assert!(f.message.contains("429"), "{}", f.message);
}

#[test]
fn exit_codes_decide_when_the_message_does_not() {
    for (code, expected) in [
        (41, ErrorCode::AuthFailed),
        (147, ErrorCode::AuthFailed),
        (42, ErrorCode::ProviderFailed),
        (53, ErrorCode::ProviderFailed),
        (55, ErrorCode::ProviderFailed),
        (1, ErrorCode::ProviderFailed),
    ] {
        let mut p = GeminiParser::default();
        feed(
            &mut p,
            &[json!({"type":"result","status":"error","error":{"type":"x","message":"it broke"},"stats":{}})],
        );
        let Outcome::Failed(f) = p.finish(&exit(code, "")) else {
            panic!("{code}: expected failure")
        };
        assert_eq!((f.code, f.exit_code), (expected, Some(code)), "{code}");
        assert_eq!(f.message, "it broke");
    }
}

#[test]
fn an_api_status_named_in_the_message_decides_when_the_exit_code_does_not() {
    for (message, expected) in [
        ("[API Error: {\"error\":{\"code\":400,\"status\":\"API_KEY_INVALID\"}}]", ErrorCode::AuthFailed),
        ("[API Error: RESOURCE_EXHAUSTED]", ErrorCode::RateLimited),
    ] {
        let mut p = GeminiParser::default();
        feed(
            &mut p,
            &[json!({"type":"result","status":"error","error":{"message":message}})],
        );
        let Outcome::Failed(f) = p.finish(&exit(1, "")) else {
            panic!("expected failure")
        };
        assert_eq!(f.code, expected, "{message}");
    }
}

#[test]
fn an_unknown_session_is_told_on_stderr_only() {
    let mut p = GeminiParser::default();
    let stderr = "YOLO mode is enabled.\nError resuming session: No previous sessions found for this project.";
    let Outcome::Failed(f) = p.finish(&exit(42, stderr)) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert_eq!(
        f.message,
        "Gemini CLI ended (exit code 42) without a result: Error resuming session: No previous sessions found \
         for this project."
    );
    assert_eq!(f.session_id, None);
}

#[test]
fn a_result_without_success_fails_even_with_exit_code_zero() {
    // An empty or blocked answer: the CLI says why in an `error` line, then ends the run with an error result.
    let mut p = GeminiParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"init","session_id":"s","model":"m"}),
            json!({"type":"error","severity":"error","message":"Model stream ended with an empty response."}),
            json!({"type":"result","status":"error","stats":{}}),
        ],
    );
    assert_eq!(names(&events), ["session"]);
    let Outcome::Failed(f) = p.finish(&exit(0, "")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert_eq!(f.message, "Model stream ended with an empty response.");
    assert_eq!(f.session_id.as_deref(), Some("s"));

    let mut p = GeminiParser::default();
    let Outcome::Failed(f) = p.finish(&exit(0, "")) else {
        panic!("no result at all is a failure too")
    };
    assert_eq!(f.message, "Gemini CLI ended (exit code 0) without a result");
}

#[test]
fn a_failed_tool_is_an_error_result_with_its_message() {
    let mut p = GeminiParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"tool_use","tool_name":"run_shell_command","tool_id":"t1","parameters":{"command":"false"}}),
            json!({"type":"tool_result","tool_id":"t1","status":"error","output":"exit 1",
                   "error":{"type":"TOOL_EXECUTION_ERROR","message":"Command exited with code 1"}}),
            json!({"type":"tool_result","tool_id":"t2","status":"success","output":"listed 3 files"}),
        ],
    );
    assert_eq!(
        events,
        vec![
            EventKind::ToolUse {
                id: "t1".into(),
                name: "run_shell_command".into(),
                input: json!({"command":"false"})
            },
            EventKind::ToolResult {
                tool_use_id: "t1".into(),
                output: "Command exited with code 1".into(),
                is_error: true
            },
            EventKind::ToolResult {
                tool_use_id: "t2".into(),
                output: "listed 3 files".into(),
                is_error: false
            },
        ]
    );
}

#[test]
fn a_warning_is_a_message_and_the_run_goes_on() {
    let mut p = GeminiParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"init","session_id":"s","model":"m"}),
            json!({"type":"message","role":"assistant","content":"Let me ","delta":true}),
            json!({"type":"error","severity":"warning","message":"Agent execution blocked: not now"}),
            json!({"type":"message","role":"assistant","content":"fine","delta":true}),
            json!({"type":"result","status":"success","stats":{}}),
        ],
    );
    assert_eq!(
        names(&events),
        ["session", "assistant_message", "message", "assistant_message"]
    );
    assert_eq!(events[2], EventKind::warn("Agent execution blocked: not now"));
    let Outcome::Completed(run) = p.finish(&exit(0, "")) else {
        panic!("expected completion")
    };
    assert_eq!(run.result.as_deref(), Some("fine"));
    assert_eq!(run.num_turns, 2);
}

#[test]
fn lines_outside_the_format_are_kept_and_unknown_types_ignored() {
    let mut p = GeminiParser::default();
    let events = feed_text(
        &mut p,
        "Loaded cached credentials.\n{\"type\":\"usage_update\",\"tokens\":3}\n\n{\"type\":\"message\",\"role\":\"user\",\"content\":\"hi\"}",
    );
    assert_eq!(events, vec![EventKind::unparsed_stdout("Loaded cached credentials.")]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_lines_never_panic(lines in crate::provider::parser_testing::hostile_lines(&fixture("gemini", "write"))) {
        crate::provider::parser_testing::survives(&mut GeminiParser::default(), &lines);
    }
}
