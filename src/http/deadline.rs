//! The request body deadline of both servers (`BODY_TIMEOUT_SECONDS`): a client that sends a request head and then
//! trickles its body, or stops sending, is answered `408 body_timeout` and its connection is closed, instead of
//! holding a connection (and ~22 KiB) for as long as it likes.
//!
//! actix bounds the head (`client_request_timeout`) and the idle time between requests (`keep_alive`), but
//! nothing bounds a body once the head is in: this middleware wraps every request body in a stream that fails at
//! the deadline, which `http::body::read` turns into `ApiError::BodyTimeout`. A response to a request whose body
//! was not read to its end keeps that body alive until the response is written: actix then closes the
//! connection after the answer, where it would otherwise go on draining a chunked body that never ends.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{
    Error,
    body::{BodySize, BoxBody, MessageBody},
    dev::{Payload, Service, ServiceRequest, ServiceResponse},
    error::PayloadError,
    web::Bytes,
};
use futures_util::Stream;
use tokio::time::Sleep;

/// The error a body stream yields at its deadline; `is_deadline` recognizes it.
#[derive(Debug)]
struct BodyDeadline;

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive before its deadline")
    }
}

impl std::error::Error for BodyDeadline {}

/// Whether a body read failed because its deadline passed (as opposed to a broken or malformed body).
pub fn is_deadline(err: &PayloadError) -> bool {
    matches!(err, PayloadError::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<BodyDeadline>()))
}

/// The middleware, for `App::wrap_fn`: `.wrap_fn(move |req, srv| deadline::guard(req, srv, limit))`.
pub fn guard<S>(
    mut req: ServiceRequest,
    srv: &S,
    limit: Duration,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, Error>> + use<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = Error>,
    S::Future: 'static,
{
    let payload = req.parts_mut().1.take();
    let held = if matches!(payload, Payload::None) {
        // No body at all (a GET, `Content-Length: 0`): nothing to bound, and no timer to pay for.
        req.set_payload(payload);
        None
    } else {
        let body = Rc::new(RefCell::new(Body {
            payload,
            finished: false,
        }));
        let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Deadline {
            body: body.clone(),
            timer: Box::pin(tokio::time::sleep(limit)),
            expired: false,
        });
        req.set_payload(Payload::from(stream));
        Some(body)
    };
    let response = srv.call(req);
    async move {
        let response = response.await?;
        Ok(match held {
            Some(body) if !body.borrow().finished => {
                response.map_body(|_, inner| BoxBody::new(Holding { inner, _body: body }))
            }
            _ => response,
        })
    }
}

struct Body {
    payload: Payload,
    /// The body was read to its end: the connection can carry the next request.
    finished: bool,
}

/// The body as the handler sees it: the client's bytes until the deadline, then `BodyDeadline`.
struct Deadline {
    body: Rc<RefCell<Body>>,
    timer: Pin<Box<Sleep>>,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        let mut body = this.body.borrow_mut();
        if body.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut body.payload).poll_next(cx) {
            Poll::Ready(None) => {
                body.finished = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            // Bytes that arrive after the deadline do not count: a trickle must not outrun it one byte at a time.
            Poll::Ready(Some(Ok(chunk))) if !this.timer.is_elapsed() => return Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        drop(body);
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired = true;
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    BodyDeadline,
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A response body that keeps the unread request body alive until the response is written, so that actix sees a
/// body nobody will read and closes the connection after the answer.
struct Holding {
    inner: BoxBody,
    _body: Rc<RefCell<Body>>,
}

impl MessageBody for Holding {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_next(cx)
    }
}
