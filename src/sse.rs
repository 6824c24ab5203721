//! The SSE response: one reader of the event log turned into actix-web-lab's `Sse` body, with keep-alive
//! comments and the hooks that tell the job whether its terminal event reached a client and whether the client
//! went away.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
    vec,
};

use actix_web::{
    HttpResponse,
    body::{BodySize, MessageBody},
};
use actix_web_lab::sse::{Data, Event, Sse};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    event_log::{Frame, Reader},
    worker::{CancelReason, JobHandle},
};

/// Bursts are joined up to this size so that a fast provider costs few writes (and few HTTP chunks), without
/// large copies. It also bounds how much of the log one look takes under its lock.
const CHUNK_BYTES: usize = 64 * 1024;

/// Cancels a `cancelOnDisconnect` job when its `/execute` stream is dropped before the end.
pub struct DisconnectGuard {
    job: Arc<JobHandle>,
}

impl DisconnectGuard {
    pub fn new(job: Arc<JobHandle>) -> Option<Self> {
        // `then`, not `then_some`: building a guard that is then dropped would cancel the job.
        job.cancel_on_disconnect.then(|| DisconnectGuard { job })
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.job.log.is_closed() {
            tracing::info!(job_id = %self.job.id, "client disconnected; cancelling (cancelOnDisconnect)");
            self.job.cancel(CancelReason::ClientGone);
        }
    }
}

struct StreamState {
    reader: Reader,
    keepalive: Duration,
    /// Frames taken from the log and not yet handed to the body.
    batch: vec::IntoIter<Frame>,
    /// Held only for its `Drop`, which runs when actix drops the body of a vanished client.
    _guard: Option<DisconnectGuard>,
    ended: bool,
    /// The terminal event was handed to the connection and a trailing comment is on its way.
    confirming: bool,
    /// The client confirms the terminal event itself: writing it here does not count as delivered.
    confirms_itself: bool,
}

pub fn response(
    reader: Reader,
    keepalive: Duration,
    guard: Option<DisconnectGuard>,
    confirms_itself: bool,
) -> HttpResponse {
    let state = StreamState {
        reader,
        keepalive,
        batch: Vec::new().into_iter(),
        _guard: guard,
        ended: false,
        confirming: false,
        confirms_itself,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(frame) = st.batch.next() {
            return Some((data(&frame), st));
        }
        if st.ended {
            return None;
        }
        // The keep-alive is timed here rather than by `Sse::with_keep_alive`: that one is a fixed interval whose
        // first tick is immediate and which data does not reset, while docs/events.md sends one after a period of silence.
        match tokio::time::timeout(st.keepalive, st.reader.next_frames(usize::MAX, CHUNK_BYTES)).await {
            Err(_) => Some((comment("keep-alive"), st)),
            Ok(Ok(frames)) if !frames.is_empty() => {
                st.batch = frames.into_iter();
                let frame = st.batch.next()?;
                Some((data(&frame), st))
            }
            Ok(Ok(_)) if st.reader.saw_terminal() && !st.confirming => {
                // A vanished peer is only noticed when a write fails, and actix buffers writes. Returning Pending
                // makes it flush the terminal frame; if the peer is gone, writing the comment then fails and the
                // stream is dropped before it can count as delivered.
                tokio::task::yield_now().await;
                st.confirming = true;
                Some((comment("end"), st))
            }
            Ok(Ok(_)) => {
                if st.confirming && !st.confirms_itself {
                    tokio::task::yield_now().await;
                    st.reader.log().mark_terminal_delivered();
                }
                None
            }
            Ok(Err(evicted)) => {
                // This reader fell behind the memory bound. Ending the stream makes the client reconnect with
                // Last-Event-ID, and that answer (410) tells it to read the gap from persistence.
                tracing::warn!(error = %evicted, "SSE reader fell behind the event log; closing its stream");
                st.ended = true;
                Some((comment("events evicted; reconnect with Last-Event-ID"), st))
            }
        }
    });
    // Not `Sse`'s own `Responder`: it adds `Content-Encoding: identity`, and docs/events.md lists the headers exactly.
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .body(Joined::new(Sse::from_infallible_stream(events)))
}

/// Joins the events that `Sse` encodes one by one into chunks of up to `CHUNK_BYTES`. Without it every event is
/// its own HTTP chunk, which made the stream five times slower end to end (BENCHMARKS.md).
///
/// A chunk ends when the events stop coming (the inner body is Pending). The next poll then answers Pending once
/// (after asking to be polled again), so actix writes what it has before the inner body goes on: the stream above
/// relies on that to have the terminal event written before `: end`, and `: end` before counting it delivered.
struct Joined<B: MessageBody> {
    inner: Pin<Box<B>>,
    /// The inner body was Pending when the last chunk was handed out.
    flush: bool,
    /// The inner body ended (or failed) after the chunk handed out last.
    ended: Option<Option<B::Error>>,
}

impl<B: MessageBody> Joined<B> {
    fn new(inner: B) -> Self {
        Joined {
            inner: Box::pin(inner),
            flush: false,
            ended: None,
        }
    }
}

impl<B: MessageBody> MessageBody for Joined<B>
where
    B::Error: Unpin,
{
    type Error = B::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, B::Error>>> {
        let this = self.get_mut();
        if let Some(ended) = this.ended.take() {
            this.ended = Some(None);
            return Poll::Ready(ended.map(Err));
        }
        if std::mem::take(&mut this.flush) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut joined: Option<BytesMut> = None;
        let mut first: Option<Bytes> = None;
        let mut len = 0;
        loop {
            let next = this.inner.as_mut().poll_next(cx);
            let chunk = match next {
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(end) => {
                    if first.is_none() {
                        return Poll::Ready(end);
                    }
                    this.ended = Some(end.and_then(Result::err));
                    break;
                }
                Poll::Pending => {
                    if first.is_none() {
                        return Poll::Pending;
                    }
                    this.flush = true;
                    break;
                }
            };
            len += chunk.len();
            match (&mut joined, &first) {
                (None, None) => first = Some(chunk),
                (None, Some(one)) => {
                    let mut buf = BytesMut::with_capacity(CHUNK_BYTES.max(one.len() + chunk.len()));
                    buf.extend_from_slice(one);
                    buf.extend_from_slice(&chunk);
                    joined = Some(buf);
                }
                (Some(buf), _) => buf.extend_from_slice(&chunk),
            }
            if len >= CHUNK_BYTES {
                break;
            }
        }
        Poll::Ready(joined.map(BytesMut::freeze).or(first).map(Ok))
    }
}

/// One log frame as an SSE message. The library encodes it again from its parts; the log's frame holds them all
/// (`id: seq`, `event: type`, `data:` the one-line JSON), so the bytes on the wire are the log's frame.
fn data(frame: &Frame) -> Event {
    let json = ByteString::try_from(frame.json())
        // The JSON is a slice of a `String` at ASCII boundaries, so this never copies; the fallback only keeps the
        // stream free of `unwrap`.
        .unwrap_or_else(|_| String::from_utf8_lossy(&frame.json()).into_owned().into());
    Event::Data(Data::new(json).id(frame.seq.to_string()).event(frame.kind_name))
}

fn comment(text: &'static str) -> Event {
    Event::Comment(text.into())
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, convert::Infallible};

    use actix_web::body::BodyStream;
    use futures_util::task::noop_waker;

    use super::*;

    /// A body that hands out `Some` chunks at once and answers Pending (asking to be polled again) for `None`.
    fn body(
        script: Vec<Option<&'static str>>,
    ) -> Joined<BodyStream<impl futures_util::Stream<Item = Result<Bytes, Infallible>>>> {
        let mut script: VecDeque<_> = script.into();
        Joined::new(BodyStream::new(futures_util::stream::poll_fn(move |cx| {
            match script.pop_front() {
                Some(Some(text)) => Poll::Ready(Some(Ok(Bytes::from_static(text.as_bytes())))),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        })))
    }

    fn polls<B: MessageBody>(mut body: Pin<&mut B>, n: usize) -> Vec<Option<String>> {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        (0..n)
            .map(|_| match body.as_mut().poll_next(&mut cx) {
                Poll::Ready(Some(Ok(chunk))) => Some(String::from_utf8_lossy(&chunk).into_owned()),
                Poll::Ready(Some(Err(_))) => Some("error".into()),
                Poll::Ready(None) => Some("end".into()),
                Poll::Pending => None,
            })
            .collect()
    }

    #[test]
    fn a_burst_is_one_chunk_and_every_pause_of_the_events_reaches_the_connection() {
        let mut joined = body(vec![Some("a"), Some("b"), None, Some("c"), None, None, Some("d")]);
        let seen = polls(Pin::new(&mut joined), 8);
        let expected = [
            Some("ab"),
            None, // the pause after the burst: actix writes "ab" before the body goes on
            Some("c"),
            None,
            None, // the inner body's own second pause
            Some("d"),
            Some("end"),
            Some("end"),
        ];
        assert_eq!(seen, expected.map(|s| s.map(String::from)));
    }

    #[test]
    fn chunks_stop_growing_at_the_limit() {
        let big: &'static str = "x".repeat(CHUNK_BYTES - 1).leak();
        let mut joined = body(vec![Some(big), Some("yy"), Some("z")]);
        let seen = polls(Pin::new(&mut joined), 3);
        assert_eq!(seen[0].as_deref().map(str::len), Some(CHUNK_BYTES + 1));
        assert_eq!(seen[1..], [Some("z".to_string()), Some("end".to_string())]);
    }
}
