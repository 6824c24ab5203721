//! The SSE response: one reader of the event log turned into a streaming body, with keep-alive comments and the
//! hooks that tell the job whether its terminal event reached a client and whether the client went away.

use std::{sync::Arc, time::Duration};

use actix_web::HttpResponse;
use bytes::Bytes;

use crate::{
    event_log::Reader,
    worker::{CancelReason, JobHandle},
};

/// Bursts are joined up to this size so that a fast provider costs few writes, without large copies.
const CHUNK_BYTES: usize = 64 * 1024;
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
const END_COMMENT: &[u8] = b": end\n\n";

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
    /// Held only for its `Drop`, which runs when actix drops the body of a vanished client.
    _guard: Option<DisconnectGuard>,
    ended: bool,
    /// The terminal event was handed to the connection and a trailing comment is on its way.
    confirming: bool,
}

pub fn response(reader: Reader, keepalive: Duration, guard: Option<DisconnectGuard>) -> HttpResponse {
    let state = StreamState {
        reader,
        keepalive,
        _guard: guard,
        ended: false,
        confirming: false,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.ended {
            return None;
        }
        match tokio::time::timeout(st.keepalive, st.reader.next_chunk(CHUNK_BYTES)).await {
            Err(_) => Some((Ok::<_, actix_web::Error>(Bytes::from_static(KEEP_ALIVE)), st)),
            Ok(Ok(Some(chunk))) => Some((Ok(chunk), st)),
            Ok(Ok(None)) if st.reader.saw_terminal() && !st.confirming => {
                // A vanished peer is only noticed when a write fails, and actix buffers writes. Returning Pending
                // makes it flush the terminal frame; if the peer is gone, writing the comment then fails and the
                // stream is dropped before it can count as delivered.
                tokio::task::yield_now().await;
                st.confirming = true;
                Some((Ok(Bytes::from_static(END_COMMENT)), st))
            }
            Ok(Ok(None)) => {
                if st.confirming {
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
                Some((
                    Ok(Bytes::from_static(
                        b": events evicted; reconnect with Last-Event-ID\n\n",
                    )),
                    st,
                ))
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
