//! The Codex parser on lines recorded from codex-cli 0.169.0 (`tests/fixtures/codex/`) and on the shapes the
//! recordings do not cover.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::provider::parser_testing::{exit, feed, feed_text, fixture, names};

fn recorded(name: &str) -> (Vec<EventKind>, CodexParser) {
    let mut p = CodexParser::default();
    let events = feed_text(&mut p, &fixture("codex", name));
    (events, p)
}

#[test]
fn a_recorded_file_write_tells_the_whole_story_with_usage() {
    let (events, mut p) = recorded("write");

    assert_eq!(
        names(&events),
        ["session", "assistant_message", "tool_use", "tool_result", "assistant_message"]
    );
    let EventKind::Session { session_id } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(session_id, "01a2146a-f113-7282-aec7-7f6ab582a849");
    let EventKind::ToolUse { id, name, input } = &events[2] else {
        panic!("{events:?}")
    };
    assert_eq!((id.as_str(), name.as_str()), ("item_1", "file_change"));
    assert_eq!(input["changes"][0]["kind"], "add");
    let EventKind::ToolResult {
        tool_use_id,
        output,
        is_error,
    } = &events[3]
    else {
        panic!("{events:?}")
    };
    assert_eq!((tool_use_id.as_str(), *is_error), ("item_1", false));
    assert!(output.starts_with("add /") && output.ends_with("/hello.txt"), "{output}");

    let mut ran = exit(0, "");
    ran.elapsed = Duration::from_millis(1234);
    let Outcome::Completed(run) = p.finish(&ran) else {
        panic!("expected success")
    };
    assert_eq!(run.session_id.as_deref(), Some("01a2146a-f113-7282-aec7-7f6ab582a849"));
    assert_eq!(run.result.as_deref(), Some("I wrote hello.txt."));
    assert_eq!((run.duration_ms, run.num_turns, run.cost_usd), (1234, 1, None));
    assert_eq!(
        run.usage,
        Usage {
            input_tokens: 160,
            output_tokens: 20,
            cache_read_tokens: 40,
            cache_creation_tokens: 0,
..Usage::default()
}
    );
}

#[test]
fn recorded_commands_pair_their_results_and_a_failing_one_is_an_error_result() {
    let (events, _) = recorded("command");
    assert_eq!(names(&events), ["session", "tool_use", "tool_result", "assistant_message"]);
    let EventKind::ToolUse { name, input, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(name, "command_execution");
    assert!(input["command"].as_str().unwrap().contains("made.txt"));
    assert!(matches!(&events[2], EventKind::ToolResult { output, is_error: false, .. } if output == "wrote\n"));

    let (events, _) = recorded("command_fail");
    assert!(
        matches!(&events[2], EventKind::ToolResult { output, is_error: true, .. } if output.contains("No such file")),
        "{events:?}"
    );
}

#[test]
fn recorded_reasoning_is_thinking() {
    let (events, _) = recorded("thinking");
    assert_eq!(names(&events), ["session", "thinking", "assistant_message"]);
    assert!(matches!(&events[1], EventKind::Thinking { text } if text == "The user wants a greeting."));
}

#[test]
fn recorded_401_and_429_are_auth_failed_and_rate_limited_with_the_session() {
    for (name, code) in [("status401", ErrorCode::AuthFailed), ("status429", ErrorCode::RateLimited)] {
        let (events, mut p) = recorded(name);
        assert_eq!(names(&events), ["session", "message"], "{name}");
        let Outcome::Failed(failure) = p.finish(&exit(1, "Reading prompt from stdin...")) else {
            panic!("{name}: expected failure")
        };
        assert_eq!(failure.code, code, "{name}: {failure:?}");
        assert_eq!(failure.exit_code, Some(1));
        assert!(failure.session_id.is_some(), "{name}");
    }
}

#[test]
fn an_unknown_resume_prints_nothing_and_stderr_says_why() {
    let mut p = CodexParser::default();
    let stderr = "WARNING: proceeding, even though we could not create PATH aliases\nReading prompt from stdin...\n\
                  Error: thread/resume: thread/resume failed: no rollout found for thread id 0b5f (code -32600)";

    let Outcome::Failed(failure) = p.finish(&exit(1, stderr)) else {
        panic!("expected failure")
    };

    assert_eq!(failure.code, ErrorCode::ProviderFailed);
    assert!(failure.message.contains("no rollout found"), "{}", failure.message);
    assert_eq!(failure.stderr_tail.as_deref(), Some(stderr));
}

#[test]
fn warnings_mcp_calls_and_unknown_lines_never_end_the_run() {
    let mut p = CodexParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"thread.started","thread_id":"t-1"}),
            json!({"type":"error","message":"Reconnecting... 2/5 (stream disconnected before completion)"}),
            json!({"type":"item.completed","item":{"id":"item_0","type":"error","message":"model fell back"}}),
            json!({"type":"item.started","item":{"id":"item_1","type":"mcp_tool_call","server":"notes","tool":"mark",
                "arguments":{"name":"x"},"result":null,"error":null,"status":"in_progress"}}),
            json!({"type":"item.completed","item":{"id":"item_1","type":"mcp_tool_call","server":"notes","tool":"mark",
                "arguments":{"name":"x"},"result":{"content":[{"type":"text","text":"marked"}]},"error":null,
                "status":"completed"}}),
            json!({"type":"item.updated","item":{"id":"item_2","type":"todo_list","items":[]}}),
            json!({"type":"future.event","x":1}),
            json!({"type":"turn.completed","usage":{"input_tokens":5,"output_tokens":1}}),
        ],
    );
    let mut all = events;
    all.extend(p.push_line("not json at all"));

    assert_eq!(
        names(&all),
        ["session", "message", "message", "tool_use", "tool_result", "log"]
    );
    assert!(matches!(&all[3], EventKind::ToolUse { name, .. } if name == "mcp__notes__mark"));
    assert!(matches!(&all[4], EventKind::ToolResult { output, is_error: false, .. } if output == "marked"));
    assert!(matches!(p.finish(&exit(0, "")), Outcome::Completed(_)));
}

#[test]
fn a_process_that_dies_mid_turn_is_provider_failed_with_its_last_error() {
    let mut p = CodexParser::default();
    feed(
        &mut p,
        &[
            json!({"type":"thread.started","thread_id":"t-2"}),
            json!({"type":"error","message":"Reconnecting... 1/5 (connection reset)"}),
        ],
    );

    let Outcome::Failed(failure) = p.finish(&exit(137, "")) else {
        panic!("expected failure")
    };

    assert_eq!(failure.code, ErrorCode::ProviderFailed);
    assert!(failure.message.contains("connection reset"), "{}", failure.message);
    assert_eq!((failure.exit_code, failure.session_id.as_deref()), (Some(137), Some("t-2")));
}

#[test]
fn statuses_are_read_as_words_not_digits_inside_other_numbers() {
    assert_eq!(classify("unexpected status 401 Unauthorized: x"), Some(ErrorCode::AuthFailed));
    assert_eq!(classify("last status: 429 Too Many Requests"), Some(ErrorCode::RateLimited));
    assert_eq!(classify("request 14012 failed with status 500"), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_lines_never_panic(lines in crate::provider::parser_testing::hostile_lines(&crate::provider::parser_testing::fixture("codex", "write"))) {
        crate::provider::parser_testing::survives(&mut CodexParser::default(), &lines);
    }
}
