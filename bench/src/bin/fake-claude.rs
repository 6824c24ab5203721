//! A fast stand-in for the Claude Code CLI: prints stream-json lines of realistic shapes as fast as it can (or at a
//! set rate), optionally stamped with CLOCK_MONOTONIC so the client can measure the delay to receipt.
//!
//! Settings come in the prompt (the worker passes no unknown variables to a CLI), as `key=value` words:
//! lines (default 200000), rate (lines/s, 0 = as fast as possible), stamp=1, big (print about this many bytes,
//! mixing lines of several MB), hold (a file: wait for it to exist before the result line, to keep a job busy),
//! sleep (milliseconds to spend before the result line: the job's own duration, as a model's thinking would be).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn setting<'a>(prompt: &'a str, key: &str) -> Option<&'a str> {
    prompt
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

fn number(prompt: &str, key: &str, default: u64) -> u64 {
    setting(prompt, key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("fake-claude 1.0");
        return;
    }
    let mut prompt = String::new();
    let _ = std::io::stdin().read_to_string(&mut prompt);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let session = "bench-session";
    let _ = writeln!(
        out,
        r#"{{"type":"system","subtype":"init","session_id":"{session}","tools":["Bash","Edit","Read","Write"],"model":"bench"}}"#
    );

    let lines = number(&prompt, "lines", 200_000);
    let rate = number(&prompt, "rate", 0);
    let stamp = setting(&prompt, "stamp") == Some("1");
    let big = number(&prompt, "big", 0);
    let start = Instant::now();

    if big > 0 {
        let mut written = 0u64;
        let mut i = 0u64;
        while written < big {
            // Mostly 64 KiB tool results, every 50th a 4 MiB file write: the shapes a large job really prints.
            let size = if i.is_multiple_of(50) { 4 << 20 } else { 64 << 10 };
            let body = "x".repeat(size);
            let line = format!(
                r#"{{"type":"assistant","session_id":"{session}","message":{{"id":"m{i}","content":[{{"type":"tool_use","id":"t{i}","name":"Write","input":{{"file_path":"/w/f{i}.txt","content":"{body}"}}}}]}}}}"#
            );
            written += line.len() as u64 + 1;
            let _ = writeln!(out, "{line}");
            i += 1;
        }
    } else {
        for i in 0..lines {
            if let Some(offset) = (i * 1_000_000_000).checked_div(rate) {
                let due = start + Duration::from_nanos(offset);
                let now = Instant::now();
                if due > now {
                    let _ = out.flush();
                    std::thread::sleep(due - now);
                }
            }
            let text = if stamp {
                format!("t={}", monotonic_ns())
            } else {
                format!("Working on step {i}: reading the module and checking its callers.")
            };
            let _ = match i % 4 {
                0 => writeln!(
                    out,
                    r#"{{"type":"assistant","session_id":"{session}","message":{{"id":"m{i}","content":[{{"type":"text","text":"{text}"}}]}}}}"#
                ),
                1 => writeln!(
                    out,
                    r#"{{"type":"assistant","session_id":"{session}","message":{{"id":"m{i}","content":[{{"type":"tool_use","id":"toolu_{i}","name":"Read","input":{{"file_path":"/workspace/src/lib.rs","note":"{text}"}}}}]}}}}"#
                ),
                2 => writeln!(
                    out,
                    r#"{{"type":"user","session_id":"{session}","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_{}","content":"{text} fn main() {{ println!(\"hello\"); }}"}}]}}}}"#,
                    i - 1
                ),
                _ => writeln!(
                    out,
                    r#"{{"type":"assistant","session_id":"{session}","message":{{"id":"m{i}","content":[{{"type":"thinking","thinking":"{text}","signature":"sig"}}]}}}}"#
                ),
            };
            if stamp {
                let _ = out.flush();
            }
        }
    }
    if let Some(ms) = setting(&prompt, "sleep").and_then(|v| v.parse().ok()) {
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(hold) = setting(&prompt, "hold") {
        let _ = out.flush();
        while !std::path::Path::new(&hold).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = writeln!(
        out,
        r#"{{"type":"result","subtype":"success","is_error":false,"result":"done","num_turns":1,"duration_ms":{},"total_cost_usd":0.01,"session_id":"{session}","usage":{{"input_tokens":1,"output_tokens":1}}}}"#,
        start.elapsed().as_millis()
    );
    let _ = out.flush();
}
