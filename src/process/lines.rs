//! Reading a CLI's output: lines capped at `MAX_LINE_BYTES` without buffering the excess, bytes that are not
//! UTF-8 made readable, and the last few KiB of stderr kept for error events.

use std::{collections::VecDeque, io};

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

pub(super) const STDERR_TAIL_BYTES: usize = 4096;

/// Provider output is not guaranteed to be UTF-8; invalid bytes become U+FFFD instead of failing the job.
pub(super) fn into_text(buf: &mut Vec<u8>) -> String {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    match String::from_utf8(std::mem::take(buf)) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Reads one line into `out`, keeping at most `cap` bytes of it; returns the line's full length (without the
/// newline) or `None` at end of input. A line longer than the cap is consumed whole, so the next line starts clean.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    cap: usize,
    out: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    out.clear();
    let mut total = 0usize;
    let mut seen_any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(seen_any.then_some(total));
        }
        seen_any = true;
        let (chunk, found) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        total += chunk.len();
        let consumed = chunk.len() + usize::from(found);
        reader.consume(consumed);
        if found {
            return Ok(Some(total));
        }
    }
}

/// The last few KiB of stderr, for error events.
#[derive(Default)]
pub(super) struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    pub(super) fn push(&mut self, line: &str) {
        let line = truncate_front(line, STDERR_TAIL_BYTES);
        self.bytes += line.len() + 1;
        self.lines.push_back(line.to_string());
        while self.bytes > STDERR_TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    pub(super) fn text(&self) -> String {
        self.lines.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

fn truncate_front(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use tokio::io::BufReader;

    use super::*;

    #[tokio::test]
    async fn long_lines_are_capped_and_the_next_line_starts_clean() {
        let input = format!("{}\nshort\r\nlast", "x".repeat(100));
        let mut reader = BufReader::with_capacity(16, input.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(read_line_capped(&mut reader, 10, &mut buf).await.unwrap(), Some(100));
        assert_eq!(buf, b"xxxxxxxxxx");
        assert_eq!(read_line_capped(&mut reader, 10, &mut buf).await.unwrap(), Some(6));
        assert_eq!(into_text(&mut buf), "short");
        assert_eq!(read_line_capped(&mut reader, 10, &mut buf).await.unwrap(), Some(4));
        assert_eq!(read_line_capped(&mut reader, 10, &mut buf).await.unwrap(), None);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut buf = vec![b'a', 0xff, b'b'];
        assert_eq!(into_text(&mut buf), "a\u{fffd}b");
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        for i in 0..2000 {
            tail.push(&format!("line {i}"));
        }
        let text = tail.text();
        assert!(text.len() <= STDERR_TAIL_BYTES && text.ends_with("line 1999"));
    }
}
