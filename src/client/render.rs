//! How `exec` shows a job: a line per tool call, assistant text as it comes, a clone progress bar, a summary at
//! the end — or, with `--json`, the raw events one per line. Colour only on a terminal and never with NO_COLOR.

use std::io::{IsTerminal, Write};

use serde_json::Value;

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

pub struct Renderer {
    json: bool,
    color: bool,
    tty: bool,
    last_phase: Option<String>,
    progress_open: bool,
}

impl Renderer {
    pub fn new(json: bool) -> Self {
        let tty = std::io::stdout().is_terminal();
        let color = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Renderer {
            json,
            color,
            tty,
            last_phase: None,
            progress_open: false,
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// Progress of the client itself (waiting, reconnecting) goes to stderr so stdout stays the job's.
    pub fn notice(&self, text: &str) {
        eprintln!("{}", self.paint(DIM, &format!("… {text}")));
    }

    /// A gateway's `queued` event: where the job stands in line.
    pub fn queued(&mut self, data: &Value, raw: &str) {
        if self.json {
            let _ = writeln!(std::io::stdout().lock(), "{raw}");
            return;
        }
        self.notice(&format!(
            "waiting for a worker: position {} of {} ({} of {} workers busy)",
            data["position"], data["queueLength"], data["busy"], data["workers"]
        ));
    }

    pub fn event(&mut self, data: &Value, raw: &str) {
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{raw}");
            return;
        }
        let kind = data["type"].as_str().unwrap_or_default();
        if kind != "github_pull_progress" && self.progress_open {
            let _ = writeln!(out);
            self.progress_open = false;
        }
        let line = match kind {
            "connected" => Some(self.paint(
                DIM,
                &format!("connected to {} ({})", s(&data["workerId"]), s(&data["provider"])),
            )),
            "message" if data["level"] == "warn" => Some(self.paint(YELLOW, &format!("! {}", s(&data["text"])))),
            "message" => Some(self.paint(DIM, s(&data["text"]))),
            "github_pull_progress" => self.progress(data),
            "session" => Some(self.paint(DIM, &format!("session {}", s(&data["sessionId"])))),
            "assistant_message" => Some(s(&data["text"]).to_string()),
            "thinking" => Some(self.paint(DIM, &format!("thinking: {}", one_line(s(&data["text"]), 200)))),
            "tool_use" => Some(format!(
                "{} {}",
                self.paint(CYAN, &format!("→ {}", s(&data["name"]))),
                tool_summary(&data["input"])
            )),
            "tool_result" if data["isError"] == true => {
                Some(self.paint(RED, &format!("✗ tool error: {}", one_line(s(&data["output"]), 200))))
            }
            "log" if data["stream"] == "stderr" => Some(self.paint(DIM, &format!("│ {}", s(&data["text"])))),
            "git_changes" => Some(format!("{} {}", self.paint(BOLD, "changes:"), changes_line(data))),
            "git_push" => Some(format!("pushed {} ({})", s(&data["branch"]), short(s(&data["commit"])))),
            "pull_request" => Some(format!("pull request: {}", s(&data["url"]))),
            "completed" => Some(self.completed(data)),
            "error" => Some(self.failed(data)),
            _ => None,
        };
        if let Some(line) = line {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }

    /// A bar redrawn in place on a terminal; elsewhere one line per phase, so logs stay readable.
    fn progress(&mut self, data: &Value) -> Option<String> {
        let phase = s(&data["phase"]).to_string();
        let percent = data["percent"].as_u64().unwrap_or(0).min(100) as usize;
        if !self.tty {
            let changed = self.last_phase.as_deref() != Some(phase.as_str());
            self.last_phase = Some(phase.clone());
            return changed.then(|| self.paint(DIM, &format!("clone: {phase}")));
        }
        let filled = percent / 5;
        let bar = format!(
            "[{}{}] {percent:>3}% {phase}",
            "#".repeat(filled),
            "-".repeat(20 - filled)
        );
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r{}", self.paint(DIM, &bar));
        let _ = out.flush();
        self.progress_open = phase != "done";
        if phase == "done" {
            let _ = writeln!(out);
        }
        None
    }

    fn completed(&self, data: &Value) -> String {
        let mut parts = vec![format!(
            "completed in {:.1}s",
            data["durationMs"].as_f64().unwrap_or(0.0) / 1000.0
        )];
        if let Some(turns) = data["numTurns"].as_u64() {
            parts.push(format!("{turns} turn{}", if turns == 1 { "" } else { "s" }));
        }
        if let Some(cost) = data["costUsd"].as_f64() {
            parts.push(format!("${cost:.4}"));
        }
        if data["changes"].is_object() {
            parts.push(changes_line(&data["changes"]));
        }
        if let Some(url) = data["pullRequest"]["url"].as_str() {
            parts.push(format!("pull request {url}"));
        }
        self.paint(GREEN, &format!("✓ {}", parts.join(" · ")))
    }

    fn failed(&self, data: &Value) -> String {
        let mut text = format!("✗ {}: {}", s(&data["code"]), s(&data["message"]));
        if let Some(code) = data["exitCode"].as_i64() {
            text.push_str(&format!(" (exit code {code})"));
        }
        if let Some(tail) = data["stderrTail"].as_str() {
            let lines: Vec<&str> = tail.lines().collect();
            for line in &lines[lines.len().saturating_sub(5)..] {
                text.push_str(&format!("\n  │ {line}"));
            }
        }
        self.paint(RED, &text)
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn changes_line(changes: &Value) -> String {
    let files = changes["filesChanged"].as_u64().unwrap_or(0);
    format!(
        "{files} file{} changed, +{} -{}",
        if files == 1 { "" } else { "s" },
        changes["insertions"].as_u64().unwrap_or(0),
        changes["deletions"].as_u64().unwrap_or(0)
    )
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

/// The one input field that says what a tool call does: its command, file, pattern or address.
pub fn tool_summary(input: &Value) -> String {
    const KEYS: &[&str] = &[
        "command",
        "file_path",
        "path",
        "pattern",
        "url",
        "query",
        "description",
        "prompt",
    ];
    let pick = KEYS
        .iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .or_else(|| input.as_object().and_then(|m| m.values().find_map(Value::as_str)));
    one_line(pick.unwrap_or_default(), 80)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tool_summaries_pick_the_telling_field() {
        assert_eq!(
            tool_summary(&json!({"file_path": "/w/a.rs", "content": "long"})),
            "/w/a.rs"
        );
        assert_eq!(
            tool_summary(&json!({"command": "cargo test\n--all", "timeout": 5})),
            "cargo test --all"
        );
        assert_eq!(tool_summary(&json!({"other": "x"})), "x");
        assert_eq!(tool_summary(&json!({"command": "y".repeat(100)})).chars().count(), 81);
    }

    #[test]
    fn summaries_read_like_a_sentence() {
        let r = Renderer {
            json: false,
            color: false,
            tty: false,
            last_phase: None,
            progress_open: false,
        };
        let done = json!({"durationMs": 12300, "numTurns": 2, "costUsd": 0.0123,
            "changes": {"filesChanged": 1, "insertions": 3, "deletions": 0}, "pullRequest": {"url": "https://x/pr/1"}});
        assert_eq!(
            r.completed(&done),
            "✓ completed in 12.3s · 2 turns · $0.0123 · 1 file changed, +3 -0 · pull request https://x/pr/1"
        );
        let err = json!({"code": "provider_failed", "message": "boom", "exitCode": 3, "stderrTail": "a\nb"});
        assert_eq!(r.failed(&err), "✗ provider_failed: boom (exit code 3)\n  │ a\n  │ b");
    }
}
