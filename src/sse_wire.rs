//! The SSE wire format of everyone who writes or reads it: encoding one frame, splitting a byte stream
//! into whole frames, and reading a frame's `id`/`event`/`data` fields. Frames end with a blank line (`\n\n`);
//! this worker writes nothing else, so that is all the readers here accept.

pub mod schema;

use std::{borrow::Cow, ops::Range};

use bytes::{Bytes, BytesMut};

/// Encodes `id: …\nevent: …\ndata: …\n\n` and returns where the data (the JSON) sits in it. `json` must be one
/// line (serde_json output is: it escapes every control character).
pub fn encode(id: Option<u64>, event: &str, json: &str) -> (BytesMut, Range<usize>) {
    let mut buf = BytesMut::with_capacity(json.len() + event.len() + 40);
    if let Some(id) = id {
        buf.extend_from_slice(b"id: ");
        buf.extend_from_slice(id.to_string().as_bytes());
        buf.extend_from_slice(b"\n");
    }
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(event.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    let start = buf.len();
    buf.extend_from_slice(json.as_bytes());
    let end = buf.len();
    buf.extend_from_slice(b"\n\n");
    (buf, start..end)
}

/// Bytes in, whole frames out (comments such as keep-alives are frames too). A frame is never split, so a
/// reader that forwards only what this returns can always append a frame of its own afterwards.
#[derive(Default)]
pub struct FrameSplitter {
    pending: BytesMut,
    /// No frame ends before this offset of `pending`: a multi-MiB event arriving in small chunks is scanned once.
    scanned: usize,
}

impl FrameSplitter {
    /// Appends `chunk` and returns every frame it completed, joined (each still ending with its blank line), or
    /// `None` when no frame is complete yet.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Bytes> {
        self.pending.extend_from_slice(chunk);
        let from = self.scanned;
        let end = memchr::memmem::rfind(&self.pending[from..], b"\n\n").map(|at| from + at + 2);
        let frames = end.map(|end| self.pending.split_to(end).freeze());
        // What is left holds no frame end, but its last byte may be the first half of the next one.
        self.scanned = self.pending.len().saturating_sub(1);
        frames
    }

    /// Bytes of an unfinished frame held back.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// One frame's fields, borrowed from it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub id: Option<&'a [u8]>,
    pub event: Option<&'a [u8]>,
    /// The `data` lines joined by `\n`, as the SSE standard joins them (borrowed when there is one, as this
    /// worker writes them); `None` for a comment-only frame.
    pub data: Option<Cow<'a, [u8]>>,
}

impl Fields<'_> {
    pub fn id_number(&self) -> Option<u64> {
        std::str::from_utf8(self.id?).ok()?.trim().parse().ok()
    }
}

/// Splits a run of whole frames (as `FrameSplitter::push` returns them) into frames.
pub fn frames(joined: &[u8]) -> FrameIter<'_> {
    FrameIter { rest: joined }
}

pub struct FrameIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FrameIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let end = memchr::memmem::find(self.rest, b"\n\n").map_or(self.rest.len(), |at| at + 2);
        let (frame, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(frame)
    }
}

/// Reads the fields of one frame. Only the first `id` and `event` count; `data` lines are joined.
pub fn fields(frame: &[u8]) -> Fields<'_> {
    let mut out = Fields::default();
    for line in frame.split(|b| *b == b'\n') {
        let (name, value) = match memchr::memchr(b':', line) {
            Some(0) | None => continue,
            Some(at) => (&line[..at], &line[at + 1..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match name {
            b"id" if out.id.is_none() => out.id = Some(value),
            b"event" if out.event.is_none() => out.event = Some(value),
            b"data" => match &mut out.data {
                Some(data) => {
                    let data = data.to_mut();
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
                None => out.data = Some(Cow::Borrowed(value)),
            },
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_come_out_whole_and_in_order() {
        let mut s = FrameSplitter::default();
        assert_eq!(s.push(b"id: 0\nevent: x\nda"), None);
        assert_eq!(s.push(b"ta: {\"a\":1}\n"), None);
        let out = s.push(b"\n: keep-alive\n\nid: 1\ndata: 2\n\nid: 2\n").expect("frames");
        assert_eq!(
            &out[..],
            b"id: 0\nevent: x\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 1\ndata: 2\n\n"
        );
        assert_eq!(s.pending(), 6);
        let out = s.push(b"data: 3\n\n").expect("frame");
        assert_eq!(&out[..], b"id: 2\ndata: 3\n\n");
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn a_frame_end_split_between_two_chunks_is_found() {
        let mut s = FrameSplitter::default();
        assert_eq!(s.push(b"data: 1\n"), None);
        assert_eq!(&s.push(b"\n").expect("frame")[..], b"data: 1\n\n");
    }

    #[test]
    fn fields_are_read_and_comments_have_no_data() {
        let joined = b"id: 7\nevent: completed\ndata: {}\n\n: keep-alive\n\n";
        let all: Vec<_> = frames(joined).map(fields).collect();
        assert_eq!(all[0].id_number(), Some(7));
        assert_eq!(all[0].event, Some(&b"completed"[..]));
        assert_eq!(all[0].data.as_deref(), Some(&b"{}"[..]));
        assert_eq!(all[1], Fields::default());
    }

    #[test]
    fn encoded_frames_read_back() {
        let (frame, json) = encode(Some(3), "error", "{\"x\":1}");
        assert_eq!(&frame[json], b"{\"x\":1}");
        let f = fields(&frame);
        assert_eq!((f.id_number(), f.event), (Some(3), Some(&b"error"[..])));
        let (frame, _) = encode(None, "queued", "{}");
        assert_eq!(&frame[..], b"event: queued\ndata: {}\n\n");
    }
}
