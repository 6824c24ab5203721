//! Parser tests on Cursor's documented stream-json line shapes (docs/providers.md).

use serde_json::json;

use super::*;
use crate::event::StreamName;
use crate::provider::parser_testing::{exit, feed};

fn init() -> Value {
    json!({"type":"system","subtype":"init","apiKeySource":"env","cwd":"/w","session_id":"c-1","model":"Claude 4 Sonnet","permissionMode":"default"})
}

#[test]
fn init_announces_the_session_and_the_echoed_prompt_is_not_an_event() {
    let mut p = CursorParser::default();
    let events = feed(
        &mut p,
        &[
            init(),
            json!({"type":"user","message":{"role":"user","content":[{"type":"text","text":"do it"}]},"session_id":"c-1"}),
            json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"On it."}]},"session_id":"c-1"}),
        ],
    );
    assert_eq!(
        events,
        vec![
            EventKind::Session {
                session_id: "c-1".into()
            },
            EventKind::AssistantMessage { text: "On it.".into() }
        ]
    );
    assert_eq!(p.session_id(), Some("c-1"));
}

#[test]
fn thinking_deltas_become_one_thought() {
    let mut p = CursorParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"thinking","subtype":"delta","text":"Let me ","session_id":"c-1"}),
            json!({"type":"thinking","subtype":"delta","text":"look.","session_id":"c-1"}),
            json!({"type":"thinking","subtype":"completed","session_id":"c-1"}),
        ],
    );
    assert_eq!(
        events[1],
        EventKind::Thinking {
            text: "Let me look.".into()
        }
    );
    assert_eq!(events.len(), 2);
}

#[test]
fn tool_calls_pair_by_call_id_with_each_result_variant() {
    let mut p = CursorParser::default();
    let events = feed(
        &mut p,
        &[
            json!({"type":"tool_call","subtype":"started","call_id":"t1","tool_call":{"writeToolCall":{"args":{"path":"a.txt","fileText":"x"}}},"session_id":"c-1"}),
            json!({"type":"tool_call","subtype":"completed","call_id":"t1","tool_call":{"writeToolCall":{"args":{"path":"a.txt","fileText":"x"},"result":{"success":{"path":"/w/a.txt","linesCreated":1,"fileSize":1}}}},"session_id":"c-1"}),
            json!({"type":"tool_call","subtype":"completed","call_id":"t2","tool_call":{"readToolCall":{"args":{"path":"b"},"result":{"success":{"content":"hello","totalLines":1}}}}}),
            json!({"type":"tool_call","subtype":"completed","call_id":"t3","tool_call":{"shellToolCall":{"args":{"command":"ls"},"result":{"success":{"stdout":"a.txt","stderr":"","exitCode":0}}}}}),
            json!({"type":"tool_call","subtype":"completed","call_id":"t4","tool_call":{"readToolCall":{"args":{"path":"nope"},"result":{"error":{"errorMessage":"File not found"}}}}}),
            json!({"type":"tool_call","subtype":"completed","call_id":"t5","tool_call":{"shellToolCall":{"args":{"command":"rm -rf /"},"result":{"rejected":{"reason":"blocked"}}}}}),
            json!({"type":"tool_call","subtype":"started","call_id":"t6","tool_call":{"function":{"name":"mcp_search","arguments":"{\"q\":1}"}}}),
        ],
    );
    let session = EventKind::Session {
        session_id: "c-1".into(),
    };
    assert_eq!(
        events,
        vec![
            session,
            EventKind::ToolUse {
                id: "t1".into(),
                name: "write".into(),
                input: json!({"path":"a.txt","fileText":"x"})
            },
            EventKind::ToolResult {
                tool_use_id: "t1".into(),
                output: json!({"path":"/w/a.txt","linesCreated":1,"fileSize":1}).to_string(),
                is_error: false
            },
            EventKind::ToolResult {
                tool_use_id: "t2".into(),
                output: "hello".into(),
                is_error: false
            },
            EventKind::ToolResult {
                tool_use_id: "t3".into(),
                output: "a.txt".into(),
                is_error: false
            },
            EventKind::ToolResult {
                tool_use_id: "t4".into(),
                output: "File not found".into(),
                is_error: true
            },
            EventKind::ToolResult {
                tool_use_id: "t5".into(),
                output: "blocked".into(),
                is_error: true
            },
            EventKind::ToolUse {
                id: "t6".into(),
                name: "mcp_search".into(),
                input: json!("{\"q\":1}")
            },
        ]
    );
}

#[test]
fn a_successful_result_completes_with_usage() {
    let mut p = CursorParser::default();
    feed(
        &mut p,
        &[
            init(),
            json!({"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Done."}]},"session_id":"c-1"}),
            json!({"type":"result","subtype":"success","duration_ms":1234,"duration_api_ms":1000,"is_error":false,"result":"Done.","session_id":"c-1","request_id":"r","usage":{"inputTokens":10,"outputTokens":20,"cacheReadTokens":3,"cacheWriteTokens":4}}),
        ],
    );
    let Outcome::Completed(run) = p.finish(&exit(0, "")) else {
        panic!("expected completion")
    };
    assert_eq!(run.session_id.as_deref(), Some("c-1"));
    assert_eq!(run.result.as_deref(), Some("Done."));
    assert_eq!(run.duration_ms, 1234);
    assert_eq!(run.num_turns, 1);
    assert_eq!(
        run.usage,
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
fn an_error_result_fails_and_is_classified() {
    let mut p = CursorParser::default();
    feed(
        &mut p,
        &[
            json!({"type":"result","subtype":"error","is_error":true,"result":"Authentication failed: invalid API key","session_id":"c-1"}),
        ],
    );
    let Outcome::Failed(f) = p.finish(&exit(1, "")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::AuthFailed);
    assert_eq!(f.session_id.as_deref(), Some("c-1"));
    assert_eq!(f.exit_code, Some(1));
}

#[test]
fn a_stream_without_result_is_decided_by_exit_code_and_stderr() {
    let mut p = CursorParser::default();
    feed(&mut p, &[init()]);
    let Outcome::Failed(f) = p.finish(&exit(3, "panic: connection reset")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
    assert_eq!(f.exit_code, Some(3));
    assert_eq!(f.stderr_tail.as_deref(), Some("panic: connection reset"));
    assert_eq!(f.session_id.as_deref(), Some("c-1"));

    let mut p = CursorParser::default();
    let Outcome::Failed(f) = p.finish(&exit(1, "Error: Authentication required. Set CURSOR_API_KEY")) else {
        panic!("expected failure")
    };
    assert_eq!(f.code, ErrorCode::AuthFailed);

    let mut p = CursorParser::default();
    let Outcome::Failed(f) = p.finish(&exit(0, "")) else {
        panic!("a clean exit without result is still a failure")
    };
    assert_eq!(f.code, ErrorCode::ProviderFailed);
}

#[test]
fn foreign_lines_become_logs_and_unknown_types_are_ignored() {
    let mut p = CursorParser::default();
    let events = feed(&mut p, &[json!({"type":"telemetry","x":1})]);
    assert!(events.is_empty());
    assert_eq!(
        p.push_line("Update available"),
        vec![EventKind::Log {
            stream: StreamName::Stdout,
            text: "Update available".into()
        }]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_lines_never_panic(lines in crate::provider::parser_testing::hostile_lines(&crate::provider::parser_testing::fixture("claude-code", "write"))) {
        crate::provider::parser_testing::survives(&mut CursorParser::default(), &lines);
    }
}
