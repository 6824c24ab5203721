//! Parser tests on the Copilot CLI lines recorded in tests/fixtures/copilot (docs/providers.md).

use serde_json::json;

use super::*;
use crate::event::StreamName;
use crate::provider::parser_testing::{exit, feed, feed_text, fixture, names};

const SESSION: &str = "11111111-2222-4333-8444-555555555555";

#[test]
fn a_recorded_file_write_tells_the_whole_story() {
    let mut p = CopilotParser::new(Some(SESSION.into()));
    let events = feed_text(&mut p, &fixture("copilot", "write"));
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
    let EventKind::ToolUse { id, name, input } = &events[2] else {
        panic!("{:?}", events[2])
    };
    assert_eq!((id.as_str(), name.as_str()), ("toolu_mock_1", "create"));
    assert_eq!(input["file_text"], "hello\n");
    let EventKind::ToolResult {
        tool_use_id,
        output,
        is_error,
    } = &events[3]
    else {
        panic!("{:?}", events[3])
    };
    assert_eq!(tool_use_id, "toolu_mock_1");
    assert!(output.starts_with("Created file"), "{output}");
    assert!(!is_error);
    let Outcome::Completed(run) = p.finish(&exit(0, "")) else {
        panic!("expected completion")
    };
    assert_eq!(run.session_id.as_deref(), Some(SESSION));
    assert_eq!(run.result.as_deref(), Some("I wrote hello.txt."));
    assert_eq!(run.num_turns, 2);
    assert_eq!(run.duration_ms, 390);
}

#[test]
fn recorded_reasoning_is_reported_once_before_the_answer() {
    let mut p = CopilotParser::new(None);
    let events = feed_text(&mut p, &fixture("copilot", "thinking"));
    assert_eq!(
        events,
        vec![
            EventKind::Thinking {
                text: "Let me think.".into()
            },
            EventKind::AssistantMessage {
                text: "Done thinking.".into()
            },
            // Without a known id up front, the result line names the session.
            EventKind::Session {
                session_id: "4f30ca4b-a00f-4e28-83c7-dde20e3cabce".into()
            },
        ]
    );
    assert!(matches!(p.finish(&exit(0, "")), Outcome::Completed(_)));
}

#[test]
fn a_recorded_authentication_error_is_auth_failed() {
    let mut p = CopilotParser::new(None);
    feed_text(&mut p, &fixture("copilot", "status401"));
    let Outcome::Failed(f) = p.finish(&exit(1, "")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::AuthFailed);
    assert!(f.message.contains("HTTP 401"), "{}", f.message);
    assert_eq!(f.exit_code, Some(1));
    assert_eq!(f.session_id.as_deref(), Some("20dc2177-356c-48a3-ac05-2f6063d6e27d"));
}

#[test]
fn session_errors_are_classified_by_error_type() {
    for (error_type, code) in [
        ("rate_limit", ErrorCode::RateLimited),
        ("query", ErrorCode::ProviderFailed),
        ("authentication", ErrorCode::AuthFailed),
    ] {
        let mut p = CopilotParser::new(Some("s".into()));
        feed(
            &mut p,
            &[
                json!({"type":"session.error","data":{"errorType":error_type,"message":"it broke"}}),
                json!({"type":"result","sessionId":"s","exitCode":1,"usage":{}}),
            ],
        );
        let Outcome::Failed(f) = p.finish(&exit(1, "")) else {
            panic!("expected failure")
        };
        assert_eq!(f.code, code, "{error_type}");
        assert_eq!(f.message, "it broke");
    }
}

#[test]
fn deltas_are_skipped_and_a_failed_tool_is_an_error_result() {
    let mut p = CopilotParser::new(None);
    let events = feed(
        &mut p,
        &[
            json!({"type":"assistant.message_delta","data":{"messageId":"m","deltaContent":"Rea"},"ephemeral":true}),
            json!({"type":"tool.execution_start","data":{"toolCallId":"t1","toolName":"bash","arguments":{"command":"false"}}}),
            json!({"type":"tool.execution_complete","data":{"toolCallId":"t1","success":false,"error":{"message":"exit code 1","code":"failure"}}}),
        ],
    );
    assert_eq!(
        events,
        vec![
            EventKind::ToolUse {
                id: "t1".into(),
                name: "bash".into(),
                input: json!({"command":"false"})
            },
            EventKind::ToolResult {
                tool_use_id: "t1".into(),
                output: "exit code 1".into(),
                is_error: true
            }
        ]
    );
}

#[test]
fn plain_text_failures_on_stderr_decide_without_json() {
    let mut p = CopilotParser::new(Some("s".into()));
    let Outcome::Failed(f) = p.finish(&exit(
        1,
        "Error: No authentication information found.\nRun copilot login",
    )) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::AuthFailed);

    let mut p = CopilotParser::new(Some("gone".into()));
    let Outcome::Failed(f) = p.finish(&exit(
        1,
        "Error: No session, task, or name matched 'gone'.\n\nTo resume …",
    )) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert!(
        f.message.contains("No session, task, or name matched 'gone'"),
        "{}",
        f.message
    );
    assert_eq!(f.session_id.as_deref(), Some("gone"));
}

#[test]
fn an_abort_is_a_failure_even_though_the_result_says_zero() {
    let mut p = CopilotParser::new(Some("s".into()));
    feed(
        &mut p,
        &[
            json!({"type":"abort","data":{"reason":"user_initiated"}}),
            json!({"type":"result","sessionId":"s","exitCode":0,"usage":{}}),
        ],
    );
    assert!(matches!(p.finish(&exit(0, "")), Outcome::Failed(f) if f.message.contains("user_initiated")));
}

#[test]
fn foreign_lines_are_logs() {
    let mut p = CopilotParser::new(None);
    assert_eq!(
        p.push_line("npm warn something"),
        vec![EventKind::Log {
            stream: StreamName::Stdout,
            text: "npm warn something".into()
        }]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_lines_never_panic(lines in crate::provider::parser_testing::hostile_lines(&crate::provider::parser_testing::fixture("copilot", "write"))) {
        crate::provider::parser_testing::survives(&mut CopilotParser::new(None), &lines);
    }
}
