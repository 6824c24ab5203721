//! Parser tests on Claude Code's stream-json line shapes (docs/providers.md).

use serde_json::json;

use super::*;
use crate::event::StreamName;
use crate::provider::parser_testing::{exit, feed, feed_text, fixture, names};

fn result_line(extra: Value) -> Value {
    let mut base = json!({
        "type": "result", "subtype": "success", "is_error": false, "result": "done", "num_turns": 2,
        "duration_ms": 1234, "total_cost_usd": 0.0123, "session_id": "s-1",
        "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 4}
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    base
}

#[test]
fn init_announces_the_session_once() {
    let mut p = ClaudeCodeParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"system","subtype":"init","session_id":"s-1","tools":["Write"],"model":"m"}),
            json!({"type":"assistant","session_id":"s-1","message":{"id":"m1","content":[{"type":"text","text":"hi"}]}}),
        ],
    );
    assert_eq!(
        events,
        vec![
            EventKind::Session {
                session_id: "s-1".into()
            },
            EventKind::AssistantMessage { text: "hi".into() }
        ]
    );
}

#[test]
fn each_content_block_line_becomes_its_event() {
    let mut p = ClaudeCodeParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"assistant","message":{"id":"m1","content":[{"type":"thinking","thinking":"hmm","signature":"x"}]}}),
            json!({"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"I will write"}]}}),
            json!({"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/w/a.txt","content":"x"}}]}}),
            json!({"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"File created"}]}}),
            json!({"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","content":[{"type":"text","text":"a"},{"type":"image","source":{}}],"is_error":true}]}}),
        ],
    );
    assert_eq!(
        events,
        vec![
            EventKind::Thinking { text: "hmm".into() },
            EventKind::AssistantMessage {
                text: "I will write".into()
            },
            EventKind::ToolUse {
                id: "t1".into(),
                name: "Write".into(),
                input: json!({"file_path":"/w/a.txt","content":"x"})
            },
            EventKind::ToolResult {
                tool_use_id: "t1".into(),
                output: "File created".into(),
                is_error: false
            },
            EventKind::ToolResult {
                tool_use_id: "t2".into(),
                output: "a\n[image]".into(),
                is_error: true
            },
        ]
    );
}

#[test]
fn unknown_system_subtypes_and_line_types_are_ignored() {
    let mut p = ClaudeCodeParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"system","subtype":"api_retry","attempt":1}),
            json!({"type":"system","subtype":"permission_denied","tool":"Bash"}),
            json!({"type":"stream_event","event":{}}),
            json!({"type":"assistant","message":{"content":[{"type":"redacted_thinking","data":"x"}]}}),
        ],
    );
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn lines_outside_the_format_become_log_events() {
    let mut p = ClaudeCodeParser::default();
    assert_eq!(
        p.push_line("Warning: something"),
        vec![EventKind::Log {
            stream: StreamName::Stdout,
            text: "Warning: something".into()
        }]
    );
    assert_eq!(p.push_line("[1,2]").len(), 1);
    assert!(p.push_line("").is_empty());
}

#[test]
fn a_successful_result_completes_with_cost_and_usage() {
    let mut p = ClaudeCodeParser::default();
    feed(&mut p, &[result_line(json!({}))]);
    let Outcome::Completed(summary) = p.finish(&exit(0, "boom")) else {
        panic!("expected success")
    };
    assert_eq!(summary.session_id.as_deref(), Some("s-1"));
    assert_eq!(summary.result.as_deref(), Some("done"));
    assert_eq!(
        (summary.num_turns, summary.duration_ms, summary.cost_usd),
        (2, 1234, Some(0.0123))
    );
    assert_eq!(
        summary.usage,
        Usage {
            input_tokens: 10,
            output_tokens: 20,
            cache_read_tokens: 3,
            cache_creation_tokens: 4,
..Usage::default()
}
    );
}

#[test]
fn api_errors_with_subtype_success_are_failures() {
    let cases = [
        (401, ErrorCode::AuthFailed),
        (429, ErrorCode::RateLimited),
        (529, ErrorCode::RateLimited),
        (500, ErrorCode::ProviderFailed),
    ];
    for (status, code) in cases {
        let mut p = ClaudeCodeParser::default();
        feed(
            &mut p,
            &[result_line(
                json!({"is_error": true, "api_error_status": status, "result": "API Error"}),
            )],
        );
        let Outcome::Failed(f) = p.finish(&exit(1, "boom")) else {
            panic!("expected failure for {status}")
        };
        assert_eq!(f.code, code, "status {status}");
        assert_eq!(f.exit_code, Some(1));
        assert_eq!(f.session_id.as_deref(), Some("s-1"));
    }
}

#[test]
fn error_texts_without_a_status_are_classified() {
    let mut p = ClaudeCodeParser::default();
    feed(
        &mut p,
        &[result_line(
            json!({"is_error": true, "result": "Invalid API key · Please run /login"}),
        )],
    );
    assert!(matches!(p.finish(&exit(1, "boom")), Outcome::Failed(f) if f.code == ErrorCode::AuthFailed));
}

#[test]
fn max_turns_is_a_provider_failure_that_says_so() {
    let mut p = ClaudeCodeParser::default();
    feed(
        &mut p,
        &[result_line(
            json!({"subtype": "error_max_turns", "is_error": true, "result": null}),
        )],
    );
    let Outcome::Failed(f) = p.finish(&exit(1, "boom")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert!(f.message.contains("maximum number of turns"), "{}", f.message);
}

#[test]
fn a_missing_result_line_is_provider_failed_with_exit_code_and_stderr() {
    let mut p = ClaudeCodeParser::default();
    feed(&mut p, &[json!({"type":"system","subtype":"init","session_id":"s-9"})]);
    let Outcome::Failed(f) = p.finish(&ExitInfo {
        code: None,
        signal: Some(15),
        stderr_tail: "killed".into(),
        ..ExitInfo::default()
    }) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert_eq!(f.exit_code, Some(143));
    assert_eq!(f.stderr_tail.as_deref(), Some("killed"));
    assert_eq!(f.session_id.as_deref(), Some("s-9"));
}

/// Lines recorded from the real CLI (2.1.329) against a mock API.
fn recorded(name: &str) -> (Vec<EventKind>, ClaudeCodeParser) {
    let mut p = ClaudeCodeParser::default();
    let events = feed_text(&mut p, &fixture("claude-code", name));
    (events, p)
}

#[test]
fn recorded_write_run_gives_the_expected_sequence() {
    let (events, mut p) = recorded("write");
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
    let EventKind::ToolUse { name, input, .. } = &events[2] else {
        panic!("tool_use")
    };
    assert_eq!(name, "Write");
    assert!(
        input["file_path"].as_str().is_some_and(|p| p.ends_with(".txt")),
        "{input}"
    );
    assert!(matches!(&events[3], EventKind::ToolResult { is_error: false, .. }));
    let Outcome::Completed(run) = p.finish(&exit(0, "boom")) else {
        panic!("completed")
    };
    assert_eq!(run.num_turns, 2);
    assert!(run.cost_usd.is_some_and(|c| c > 0.0));
}

#[test]
fn recorded_api_errors_map_to_their_codes_without_a_fake_assistant_message() {
    for (name, code) in [
        ("status401", ErrorCode::AuthFailed),
        ("status429", ErrorCode::RateLimited),
        ("status529", ErrorCode::RateLimited),
    ] {
        let (events, mut p) = recorded(name);
        assert_eq!(names(&events), ["session"], "{name}");
        let Outcome::Failed(f) = p.finish(&exit(1, "boom")) else {
            panic!("{name} must fail")
        };
        assert_eq!(f.code, code, "{name}");
        assert!(f.message.contains("API Error"), "{name}: {}", f.message);
    }
}

#[test]
fn recorded_max_turns_reports_the_errors_array() {
    let (_, mut p) = recorded("maxturns");
    let Outcome::Failed(f) = p.finish(&exit(1, "boom")) else {
        panic!("must fail")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert!(f.message.contains("Reached maximum number of turns"), "{}", f.message);
}

#[test]
fn recorded_thinking_and_failed_tool_results() {
    let (events, _) = recorded("thinking");
    assert!(names(&events).contains(&"thinking"));
    let (events, _) = recorded("write_fail");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::ToolResult { is_error: true, .. }))
    );
}

#[test]
fn recorded_sigterm_has_no_result_and_unknown_resume_has_no_init() {
    let (_, mut p) = recorded("sigterm");
    let outcome = p.finish(&ExitInfo {
        code: Some(143),
        signal: None,
        stderr_tail: String::new(),
        ..ExitInfo::default()
    });
    assert!(matches!(outcome, Outcome::Failed(f) if f.code == ErrorCode::ProviderFailed && f.exit_code == Some(143)));
    let (events, mut p) = recorded("resume_unknown");
    assert_eq!(names(&events), ["session"]);
    let Outcome::Failed(f) = p.finish(&exit(1, "boom")) else {
        panic!("must fail")
    };
    assert!(f.message.contains("No conversation found"), "{}", f.message);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_lines_never_panic(lines in crate::provider::parser_testing::hostile_lines(&crate::provider::parser_testing::fixture("claude-code", "write"))) {
        crate::provider::parser_testing::survives(&mut ClaudeCodeParser::default(), &lines);
    }
}
