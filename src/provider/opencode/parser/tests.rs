//! Parser tests on the opencode lines recorded in tests/fixtures/opencode (docs/providers.md), against the test suite's
//! chat-completions mock.

use serde_json::json;

use super::*;
use crate::event::StreamName;
use crate::provider::parser_testing::{exit, feed, feed_text, fixture, names};

fn failure(p: &mut OpencodeParser, code: i32, stderr: &str) -> Failure {
    match p.finish(&exit(code, stderr)) {
        Outcome::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_recorded_file_write_tells_the_whole_story() {
    let mut p = OpencodeParser::new();
    let events = feed_text(&mut p, &fixture("opencode", "write"));
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
        events[0],
        EventKind::Session {
            session_id: "ses_deb71829fffenxYo8VSM7W3cKG".into()
        }
    );
    let EventKind::ToolUse { id, name, input } = &events[2] else {
        panic!("{:?}", events[2])
    };
    assert_eq!((id.as_str(), name.as_str()), ("call_mock_1", "write"));
    assert_eq!(input["content"], "hello from opencode\n");
    assert_eq!(
        events[3],
        EventKind::ToolResult {
            tool_use_id: "call_mock_1".into(),
            output: "Wrote file successfully.".into(),
            is_error: false
        }
    );

    let Outcome::Completed(run) = p.finish(&exit(0, "")) else {
        panic!("expected completion")
    };

    assert_eq!(run.session_id.as_deref(), Some("ses_deb71829fffenxYo8VSM7W3cKG"));
    assert_eq!(run.result.as_deref(), Some("I wrote hello.txt."));
    assert_eq!(run.num_turns, 2);
    assert_eq!(run.cost_usd, Some(0.0));
    assert_eq!(
        run.usage,
        Usage {
            input_tokens: 120,
            output_tokens: 40,
            cache_read_tokens: 80,
            cache_creation_tokens: 0,
..Usage::default()
}
    );
}

#[test]
fn a_recorded_failed_tool_call_is_an_error_result_and_the_run_goes_on() {
    let mut p = OpencodeParser::new();
    let events = feed_text(&mut p, &fixture("opencode", "write_fail"));
    let EventKind::ToolResult {
        tool_use_id,
        output,
        is_error,
    } = &events[3]
    else {
        panic!("{:?}", events[3])
    };
    assert_eq!(tool_use_id, "call_mock_2");
    assert!(output.starts_with("BadResource"), "{output}");
    assert!(is_error);
    assert!(matches!(p.finish(&exit(0, "")), Outcome::Completed(_)));
}

#[test]
fn recorded_reasoning_is_thinking_before_the_answer() {
    let mut p = OpencodeParser::new();
    let events = feed_text(&mut p, &fixture("opencode", "thinking"));
    assert_eq!(
        events[1..],
        [
            EventKind::Thinking {
                text: "Let me think.".into()
            },
            EventKind::AssistantMessage {
                text: "Thought it through.".into()
            },
        ]
    );
}

#[test]
fn recorded_api_errors_are_classified_by_status() {
    for (name, code, retryable) in [
        ("status401", ErrorCode::AuthFailed, false),
        ("status429", ErrorCode::RateLimited, true),
    ] {
        let mut p = OpencodeParser::new();
        let events = feed_text(&mut p, &fixture("opencode", name));
        assert_eq!(names(&events), ["session"], "{name}");

        let f = failure(&mut p, 1, "");

        assert_eq!((f.code, f.retryable), (code, retryable), "{name}");
        assert_eq!(f.exit_code, Some(1));
        assert!(f.session_id.as_deref().is_some_and(|s| s.starts_with("ses_")), "{f:?}");
        assert!(f.message.contains(&name[6..]), "{}", f.message);
        assert!(f.message.contains("mock: scripted status"), "{}", f.message);
    }
}

#[test]
fn an_error_without_a_status_is_a_provider_failure_with_its_message() {
    // Recorded from a run whose model the configuration did not define.
    let line = r#"{"type":"error","timestamp":1795640273644,"sessionID":"ses_deb7fdd93ffeCJ63NmXmSMV2F7","error":{"name":"UnknownError","data":{"message":"Unexpected server error. Check server logs for details.","ref":"err_bc50d72a"}}}"#;
    let mut p = OpencodeParser::new();
    p.push_line(line);

    let f = failure(&mut p, 1, "");

    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert_eq!(
        f.message,
        "opencode: UnknownError: Unexpected server error. Check server logs for details."
    );
}

#[test]
fn an_unknown_session_fails_on_stderr_without_its_colours() {
    // Recorded: `run -s <unknown id>` prints nothing on stdout and this on stderr.
    let mut p = OpencodeParser::new();

    let f = failure(&mut p, 1, "\u{1b}[91m\u{1b}[1mError: \u{1b}[0mSession not found\n");

    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert_eq!(f.message, "opencode ended (exit code 1): Error: Session not found");
    assert_eq!(f.stderr_tail.as_deref(), Some("Error: Session not found\n"));
    assert_eq!(f.session_id, None);
}

#[test]
fn an_error_line_decides_even_when_the_process_exits_zero() {
    let mut p = OpencodeParser::new();
    feed(
        &mut p,
        &[json!({"type":"error","sessionID":"s1","error":{"name":"ProviderAuthError","data":{"message":"no key"}}})],
    );
    assert_eq!(failure(&mut p, 0, "").code, ErrorCode::AuthFailed);
}

#[test]
fn a_clean_exit_without_any_line_is_not_a_success() {
    let mut p = OpencodeParser::new();
    let f = failure(&mut p, 0, "");
    assert_eq!(f.code, ErrorCode::ProviderFailed);
}

#[test]
fn other_lines_are_ignored_foreign_ones_kept_and_the_session_announced_once() {
    let mut p = OpencodeParser::new();
    let events = feed_text(
        &mut p,
        "{\"type\":\"step_start\",\"sessionID\":\"s1\",\"part\":{}}\n\
         {\"type\":\"compaction\",\"sessionID\":\"s1\"}\n\
         Update available\n\
         {\"type\":\"text\",\"sessionID\":\"s1\",\"part\":{}}\n",
    );
    assert_eq!(
        events,
        vec![
            EventKind::Session {
                session_id: "s1".into()
            },
            EventKind::Log {
                stream: StreamName::Stdout,
                text: "Update available".into()
            },
            // An empty text adds nothing.
        ]
    );
}

#[test]
fn a_tool_call_shown_again_is_reported_once() {
    let mut p = OpencodeParser::new();
    let call = |status: &str| {
        json!({"type":"tool_use","sessionID":"s1","part":{"tool":"bash","callID":"c1",
            "state":{"status":status,"input":{"command":"ls"},"output":"a\nb"}}})
    };
    let events = feed(&mut p, &[call("running"), call("completed")]);
    assert_eq!(names(&events), ["session", "tool_use", "tool_result"]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_lines_never_panic(lines in crate::provider::parser_testing::hostile_lines(&fixture("opencode", "write"))) {
        crate::provider::parser_testing::survives(&mut OpencodeParser::new(), &lines);
    }
}
