//! How `exec` shows a job: a line per tool call, assistant text as it comes, a clone progress bar, a summary at
//! the end — or, with `--json`, the raw events one per line. Colour only on a terminal and never with NO_COLOR.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::Value;

use super::question::{Choice, choices, printable};

/// A question's diff is shown up to this many changed lines; the rest is counted.
const DIFF_MAX_LINES: usize = 20;
/// A plan longer than this is cut, with the rest counted.
const PLAN_MAX_ENTRIES: usize = 20;

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
    /// Open questions by request id, so that a resolution can name the question and the option it was given.
    questions: HashMap<String, Asked>,
    /// Set while an approval prompt waits on an unfinished line (see `approvals`).
    prompt_open: Arc<AtomicBool>,
}

struct Asked {
    title: String,
    choices: Vec<Choice>,
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
            questions: HashMap::new(),
            prompt_open: Arc::default(),
        }
    }

    pub fn color(&self) -> bool {
        self.color
    }

    pub fn prompt_flag(&self) -> Arc<AtomicBool> {
        self.prompt_open.clone()
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

    /// The prompt for a conversation's next message, on stderr so stdout stays the job's.
    pub fn chat_prompt(&self) {
        if self.json {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "{}",
            self.paint(BOLD, "› (Enter sends, Ctrl-C interrupts a turn, Ctrl-D ends) ")
        );
        let _ = err.flush();
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
        if self.prompt_open.swap(false, Ordering::Relaxed) {
            let _ = writeln!(out);
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
            "plan" => Some(self.plan(data)),
            "permission_request" => Some(self.question(data)),
            "permission_resolved" => Some(self.resolved(data)),
            "turn_started" => Some(self.paint(BOLD, &format!("── turn {}", data["turn"]))),
            "turn_completed" => Some(self.paint(
                DIM,
                &format!(
                    "── turn {} done{}",
                    data["turn"],
                    data["changes"]["filesChanged"]
                        .as_u64()
                        .map(|n| format!(", {n} files changed"))
                        .unwrap_or_default()
                ),
            )),
            "turn_failed" => Some(self.paint(
                YELLOW,
                &format!("── turn {} {}: {}", data["turn"], s(&data["code"]), s(&data["message"])),
            )),
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

    /// A permission question: what the agent wants to do and the numbered options the answer is picked from.
    fn question(&mut self, data: &Value) -> String {
        let title = printable(s(&data["title"]));
        let kind = data["kind"]
            .as_str()
            .map(|k| format!(" ({})", printable(k)))
            .unwrap_or_default();
        let mut lines = vec![self.paint(BOLD, &format!("? permission: {title}{kind}"))];
        if data["diff"].is_object() {
            let (header, changes) = diff_lines(&data["diff"], DIFF_MAX_LINES);
            lines.push(format!("  {header}"));
            for line in changes {
                let style = match line.chars().next() {
                    Some('+') => GREEN,
                    Some('-') => RED,
                    _ => DIM,
                };
                lines.push(format!("    {}", self.paint(style, &line)));
            }
        } else if !data["input"].is_null() {
            lines.push(format!("  input: {}", input_summary(&data["input"])));
        }
        let options = choices(data);
        for (i, choice) in options.iter().enumerate() {
            lines.push(format!(
                "  {}) {} {}",
                i + 1,
                printable(&choice.name),
                self.paint(DIM, &format!("[{}]", printable(&choice.id)))
            ));
        }
        if let Some(id) = data["requestId"].as_str() {
            self.questions.insert(
                id.to_string(),
                Asked {
                    title,
                    choices: options,
                },
            );
        }
        lines.join("\n")
    }

    /// One line: the question, the option it got and who decided.
    fn resolved(&mut self, data: &Value) -> String {
        let request = s(&data["requestId"]);
        let asked = self.questions.remove(request);
        let title = asked.as_ref().map_or_else(|| printable(request), |a| a.title.clone());
        let by = printable(data["by"].as_str().unwrap_or("unknown"));
        let Some(option) = data["optionId"].as_str() else {
            return self.paint(DIM, &format!("• no answer to \"{title}\" (by {by})"));
        };
        let choice = asked.and_then(|a| a.choices.into_iter().find(|c| c.id == option));
        let name = choice
            .as_ref()
            .map_or_else(|| printable(option), |c| printable(&c.name));
        match choice.as_ref().map(|c| c.kind.as_str()) {
            Some("allow_once" | "allow_always") => {
                self.paint(GREEN, &format!("✓ allowed \"{title}\": {name} (by {by})"))
            }
            Some("reject_once" | "reject_always") => {
                self.paint(RED, &format!("✗ rejected \"{title}\": {name} (by {by})"))
            }
            _ => format!("• \"{title}\": {name} (by {by})"),
        }
    }

    /// The agent's plan as a checklist.
    fn plan(&self, data: &Value) -> String {
        let entries = data["entries"].as_array().map(Vec::as_slice).unwrap_or_default();
        let mut lines = vec![self.paint(BOLD, "plan:")];
        for entry in entries.iter().take(PLAN_MAX_ENTRIES) {
            let mark = match entry["status"].as_str() {
                Some("completed") => "[x]",
                Some("in_progress") => "[>]",
                _ => "[ ]",
            };
            let text = printable(&one_line(s(&entry["content"]), 120));
            let line = format!("  {mark} {text}");
            lines.push(if mark == "[x]" { self.paint(DIM, &line) } else { line });
        }
        if entries.len() > PLAN_MAX_ENTRIES {
            lines.push(format!("  … {} more", entries.len() - PLAN_MAX_ENTRIES));
        }
        lines.join("\n")
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

fn input_summary(input: &Value) -> String {
    let summary = tool_summary(input);
    printable(&if summary.is_empty() {
        one_line(&input.to_string(), 120)
    } else {
        summary
    })
}

/// A diff's header (path and counts) and its changed lines, at most `max` of them.
fn diff_lines(diff: &Value, max: usize) -> (String, Vec<String>) {
    let old: Vec<&str> = diff["oldText"].as_str().unwrap_or_default().lines().collect();
    let new: Vec<&str> = diff["newText"].as_str().unwrap_or_default().lines().collect();
    let changes = line_changes(&old, &new);
    let added = changes.iter().filter(|(sign, _)| *sign == '+').count();
    let header = format!(
        "diff: {} (+{added} -{})",
        printable(s(&diff["path"])),
        changes.len() - added
    );
    let mut lines: Vec<String> = changes
        .iter()
        .take(max)
        .map(|(sign, line)| format!("{sign} {}", printable(&truncate(line, 160))))
        .collect();
    if changes.len() > max {
        lines.push(format!("… {} more lines", changes.len() - max));
    }
    (header, lines)
}

/// Above this many line pairs a diff is not worth its quadratic table; the changed middle is then shown as
/// replaced, which is still enough to judge an edit by.
const DIFF_MAX_CELLS: usize = 1 << 20;

/// The removed (`-`) and added (`+`) lines that turn `old` into `new`, in order: the longest common subsequence of
/// what lies between the unchanged first and last lines.
fn line_changes<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<(char, &'a str)> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old, new) = (&old[prefix..old.len() - suffix], &new[prefix..new.len() - suffix]);
    if (old.len() + 1).saturating_mul(new.len() + 1) > DIFF_MAX_CELLS {
        let removed = old.iter().map(|l| ('-', *l));
        return removed.chain(new.iter().map(|l| ('+', *l))).collect();
    }
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let width = new.len() + 1;
    let mut common = vec![0u32; (old.len() + 1) * width];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i * width + j] = if old[i] == new[j] {
                common[(i + 1) * width + j + 1] + 1
            } else {
                common[(i + 1) * width + j].max(common[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j, mut changes) = (0, 0, Vec::new());
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            i += 1;
            j += 1;
        } else if j == new.len() || (i < old.len() && common[(i + 1) * width + j] >= common[i * width + j + 1]) {
            changes.push(('-', old[i]));
            i += 1;
        } else {
            changes.push(('+', new[j]));
            j += 1;
        }
    }
    changes
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
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
        let r = plain();
        let done = json!({"durationMs": 12300, "numTurns": 2, "costUsd": 0.0123,
            "changes": {"filesChanged": 1, "insertions": 3, "deletions": 0}, "pullRequest": {"url": "https://x/pr/1"}});
        assert_eq!(
            r.completed(&done),
            "✓ completed in 12.3s · 2 turns · $0.0123 · 1 file changed, +3 -0 · pull request https://x/pr/1"
        );
        let err = json!({"code": "provider_failed", "message": "boom", "exitCode": 3, "stderrTail": "a\nb"});
        assert_eq!(r.failed(&err), "✗ provider_failed: boom (exit code 3)\n  │ a\n  │ b");
    }

    fn plain() -> Renderer {
        Renderer {
            json: false,
            color: false,
            tty: false,
            last_phase: None,
            progress_open: false,
            questions: HashMap::new(),
            prompt_open: Arc::default(),
        }
    }

    fn request() -> Value {
        json!({"type": "permission_request", "requestId": "perm-1", "toolCallId": "t1",
            "title": "Write hello.txt\u{1b}[2J", "kind": "edit", "input": null,
            "diff": {"path": "/w/hello.txt", "oldText": "a\nb\nc\n", "newText": "a\nB\nc\nd\n"},
            "options": [{"optionId": "allow_once", "name": "Allow once", "kind": "allow_once"},
                        {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"},
                        {"name": "no id"}]})
    }

    #[test]
    fn a_question_shows_what_is_asked_and_numbers_the_options() {
        let mut r = plain();
        assert_eq!(
            r.question(&request()),
            "? permission: Write hello.txt\u{fffd}[2J (edit)\n  diff: /w/hello.txt (+2 -1)\n    - b\n    + B\n    + d\n  \
             1) Allow once [allow_once]\n  2) Reject [reject_once]"
        );
        let input = json!({"requestId": "perm-2", "title": "Run", "input": {"command": "rm -rf build/"},
            "options": []});
        assert_eq!(r.question(&input), "? permission: Run\n  input: rm -rf build/");
    }

    #[test]
    fn a_long_diff_is_capped_and_counted() {
        let new: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let (header, lines) = diff_lines(&json!({"path": "/w/a", "oldText": null, "newText": new}), 20);
        assert_eq!(header, "diff: /w/a (+30 -0)");
        assert_eq!(lines.len(), 21);
        assert_eq!(lines.last().unwrap(), "… 10 more lines");
        let (header, lines) = diff_lines(&json!({"path": 3, "oldText": "same", "newText": "same"}), 20);
        assert_eq!((header.as_str(), lines.len()), ("diff:  (+0 -0)", 0));
    }

    #[test]
    fn a_diff_keeps_the_lines_both_sides_share() {
        let changes = |old: &str, new: &str| {
            let (old, new): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
            line_changes(&old, &new)
                .into_iter()
                .map(|(sign, line)| format!("{sign}{line}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(changes("a\nb\nc\nd\ne", "a\nc\nX\nd\ne"), ["-b", "+X"]);
        assert_eq!(changes("x\ny", ""), ["-x", "-y"]);
        assert_eq!(changes("", "x"), ["+x"]);
        assert_eq!(changes("a\nb", "b\na"), ["-a", "+a"]);
    }

    #[test]
    fn a_resolution_names_the_question_the_option_and_who_decided() {
        let mut r = plain();
        r.question(&request());
        let resolved = json!({"requestId": "perm-1", "optionId": "allow_once", "by": "client"});
        assert_eq!(
            r.resolved(&resolved),
            "✓ allowed \"Write hello.txt\u{fffd}[2J\": Allow once (by client)"
        );
        assert_eq!(
            r.resolved(&json!({"requestId": "perm-9", "optionId": null, "by": "cancel"})),
            "• no answer to \"perm-9\" (by cancel)"
        );
        r.question(&request());
        assert_eq!(
            r.resolved(&json!({"requestId": "perm-1", "optionId": "reject_once", "by": "timeout"})),
            "✗ rejected \"Write hello.txt\u{fffd}[2J\": Reject (by timeout)"
        );
        assert_eq!(r.resolved(&json!({})), "• no answer to \"\" (by unknown)");
    }

    #[test]
    fn a_plan_is_a_checklist() {
        let plan = json!({"entries": [
            {"content": "Read the code", "status": "completed", "priority": "high"},
            {"content": "Write\nthe fix", "status": "in_progress", "priority": "high"},
            {"content": "Run the tests", "status": "pending", "priority": "low"}]});
        assert_eq!(
            plain().plan(&plan),
            "plan:\n  [x] Read the code\n  [>] Write the fix\n  [ ] Run the tests"
        );
        assert_eq!(plain().plan(&json!({"entries": "bogus"})), "plan:");
    }
}
