//! Helpers the provider parsers' tests share: feeding lines, recorded fixtures, exit statuses, and the hostile
//! lines of the property tests.

use serde_json::Value;

use crate::{
    event::EventKind,
    process::{ExitInfo, OutputParser},
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

/// Feeds the lines and finishes with a failed exit: nothing may panic, and the run must end in one outcome.
pub fn survives(parser: &mut dyn OutputParser, lines: &[String]) {
    for line in lines {
        parser.push_line(line);
    }
    let _outcome = parser.finish(&exit(1, "stderr"));
}
