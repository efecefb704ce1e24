//! One request through the function: deadlines from the config, panics caught, one log line.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Method, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::{json_error, Body, BoxError, Config, Handler};

/// Runs `handler` on `req` and returns the response to write, never panicking.
pub(crate) async fn dispatch<H: Handler, B>(
    handler: &H,
    config: &Config,
    req: http::Request<B>,
) -> http::Response<Finish>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let start = Instant::now();
    let mut log = RequestLog {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        call_id: req
            .headers()
            .get("x-call-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        start,
        status: 0,
        outcome: "aborted",
    };
    let read_deadline = config.read_timeout.map(|t| start + t);
    let write_deadline = config.write_timeout.map(|t| start + t);
    let req = req.map(|body| Body::new(Deadline::new(body, read_deadline, "read_timeout")));

    let call = AssertUnwindSafe(handler.call(req)).catch_unwind();
    let answered = match write_deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, call).await.ok(),
        None => Some(call.await),
    };
    let resp = match answered {
        Some(Ok(resp)) => resp,
        Some(Err(panic)) => {
            tracing::error!(panic = panic_message(&*panic), path = %log.path, "handler panicked");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the handler panicked",
            )
        }
        None => {
            let secs = config.write_timeout.unwrap_or_default().as_secs_f64();
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the function did not answer within write_timeout ({secs}s)"),
            )
        }
    };
    log.status = resp.status().as_u16();
    resp.map(|body| Finish {
        body: Deadline::new(body, write_deadline, "write_timeout"),
        log,
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The fields of the one log line a request gets; written when its response body ends or is dropped.
struct RequestLog {
    method: Method,
    path: String,
    call_id: Option<String>,
    start: Instant,
    status: u16,
    outcome: &'static str,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let duration_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            method = %self.method,
            path = %self.path,
            status = self.status,
            duration_ms = format_args!("{duration_ms:.1}"),
            call_id = %self.call_id.as_deref().unwrap_or("none"),
            outcome = %self.outcome,
            "request"
        );
    }
}

/// The response body as written: bounded by `write_timeout`, logging the request when it ends.
pub(crate) struct Finish {
    body: Deadline<Body>,
    log: RequestLog,
}

impl Drop for Finish {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended, so "complete" is decided here too.
        if self.log.outcome == "aborted" && http_body::Body::is_end_stream(&self.body) {
            self.log.outcome = "complete";
        }
    }
}

impl http_body::Body for Finish {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.log.outcome = "complete",
            Poll::Ready(Some(Err(_))) => self.log.outcome = "body error",
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body that fails once its deadline has passed, so a stalled peer cannot hold a request forever.
struct Deadline<B> {
    inner: B,
    sleep: Option<Pin<Box<Sleep>>>,
    setting: &'static str,
    expired: bool,
}

impl<B> Deadline<B> {
    fn new(inner: B, deadline: Option<Instant>, setting: &'static str) -> Self {
        Self {
            inner,
            sleep: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            setting,
            expired: false,
        }
    }
}

/// The error a request body yields once `read_timeout` has passed (and a response body once
/// `write_timeout` has): a handler can tell a client too slow to send (408) from one that broke
/// off, by downcasting the body's error.
#[derive(Debug)]
pub struct DeadlineExceeded {
    setting: &'static str,
}

impl DeadlineExceeded {
    /// The setting whose deadline passed: `read_timeout` or `write_timeout`.
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "body not transferred within {}", self.setting)
    }
}

impl std::error::Error for DeadlineExceeded {}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                self.expired = true;
                let setting = self.setting;
                return Poll::Ready(Some(Err(Box::new(DeadlineExceeded { setting }))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
