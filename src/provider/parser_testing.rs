//! Helpers the provider parsers' tests share: feeding lines, recorded fixtures, exit statuses.

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
