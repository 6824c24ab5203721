//! Helpers the provider parsers' tests share: feeding lines, recorded fixtures, exit statuses, and the hostile
//! lines of the property tests.

use serde_json::Value;

use crate::{
    event::{Envelope, ErrorCode, EventKind},
    process::{ExitInfo, Outcome, OutputParser},
};

pub fn feed(parser: &mut dyn OutputParser, lines: &[Value]) -> Vec<EventKind> {
    lines.iter().flat_map(|l| parser.push_line(&l.to_string())).collect()
}

pub fn feed_text(parser: &mut dyn OutputParser, text: &str) -> Vec<EventKind> {
    text.lines().flat_map(|l| parser.push_line(l)).collect()
}

/// Output recorded from a real CLI, under `tests/fixtures/<provider>/<name>.jsonl`.
pub fn fixture(provider: &str, name: &str) -> String {
    let path = format!("{}/tests/fixtures/{provider}/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn exit(code: i32, stderr: &str) -> ExitInfo {
    ExitInfo {
        code: Some(code),
        signal: None,
        stderr_tail: stderr.into(),
        ..ExitInfo::default()
    }
}

pub fn names(events: &[EventKind]) -> Vec<&'static str> {
    events.iter().map(EventKind::type_name).collect()
}

/// Lines a CLI could print after a bug, a cut or a crash, built from its recorded lines: cut at any character,
/// values swapped for huge numbers, deep nesting, long runs, control characters, and plain noise.
pub fn hostile_lines(recorded: &str) -> impl proptest::strategy::Strategy<Value = Vec<String>> {
    use proptest::prelude::*;
    let lines: Vec<String> = recorded.lines().map(str::to_string).collect();
    let one = (0..lines.len(), 0usize..6, any::<u16>(), ".{0,40}").prop_map(move |(i, how, n, noise)| {
        let line = &lines[i];
        let cut = line
            .char_indices()
            .map(|(at, _)| at)
            .nth(n as usize % line.chars().count().max(1));
        match how {
            0 => line[..cut.unwrap_or(0)].to_string(),
            1 => line
                .replace(|c: char| c.is_ascii_digit(), "9")
                .replacen(':', ":1e999999,\"x\":", 1),
            2 => format!(
                "{}{line}{}",
                "[".repeat(200 + n as usize % 5000),
                "]".repeat(200 + n as usize % 5000)
            ),
            3 => line.repeat(1 + n as usize % 300),
            4 => line.replacen("\"", &format!("\"{noise}\u{0}\r"), 3),
            _ => noise,
        }
    });
    proptest::collection::vec(one, 0..40)
}

/// Feeds the lines and finishes with a failed exit. Nothing may panic; every event must go on the wire as it is;
/// the terminal event is `finish`'s alone; and the run ends in one outcome that tells the truth about an exit
/// code 1: a failure a CLI can cause, carrying that exit code, or a success only where a whole line of JSON (a
/// report the CLI could have printed) came through, never from fragments and noise alone.
pub fn survives(parser: &mut dyn OutputParser, lines: &[String]) {
    for line in lines {
        for event in parser.push_line(line) {
            assert!(
                !event.is_terminal(),
                "a line ended the run before the process did: {event:?}"
            );
            let wire = Envelope {
                kind_name: event.type_name(),
                seq: 1,
                job_id: "job",
                ts: "T",
                kind: &event,
            };
            let json = serde_json::to_value(&wire).unwrap_or_else(|e| panic!("{event:?} does not serialise: {e}"));
            assert_eq!(json["type"], event.type_name(), "{json}");
        }
    }
    match parser.finish(&exit(1, "stderr")) {
        Outcome::Failed(failure) => {
            assert!(
                matches!(
                    failure.code,
                    ErrorCode::ProviderFailed | ErrorCode::AuthFailed | ErrorCode::RateLimited
                ),
                "a CLI's failure cannot be {:?}",
                failure.code
            );
            assert_eq!(failure.retryable, failure.code.retryable(), "{failure:?}");
            assert!(!failure.message.trim().is_empty(), "{failure:?}");
            assert_eq!(failure.exit_code, Some(1), "{failure:?}");
        }
        Outcome::Completed(summary) => {
            // Whole JSON objects only; numbers out of range still count, as a parser may skip the field.
            let whole = |line: &String| {
                line.trim_start().starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok()
            };
            assert!(
                lines.iter().any(whole),
                "garbage and exit code 1 ended as a success: {summary:?}"
            );
        }
    }
}
