//! What a function is to the runtime: a [`Handler`] from [`Request`] to [`Response`].

use std::fmt::Display;
use std::future::Future;

use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::{Body, BoxError};

/// A request as the function receives it; its body streams in as the client sends it.
pub type Request = http::Request<Body>;

/// A response as the function returns it; its body may stream.
pub type Response = http::Response<Body>;

/// Serves requests. Implement it on a struct holding your state, or wrap an `async fn` with
/// [`handler_fn`]; `#[handler]` implements it for you.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send;
}

/// State built once, before the server accepts its first connection, and shared by every request
/// (`#[handler] async fn handle(state: &MyState, req: Request)`).
pub trait Init: Sized + Send + Sync + 'static {
    /// Builds the state, e.g. from environment variables and secrets.
    ///
    /// # Errors
    /// Any error ends the process before it serves; it is logged.
    fn init() -> impl Future<Output = Result<Self, BoxError>> + Send;
}

/// Turns what a handler returns into a [`Response`].
pub trait IntoResponse {
    /// The response to send.
    fn into_response(self) -> Response;
}

impl<B: Into<Body>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        self.map(Into::into)
    }
}

/// An `Err` is logged and answered with 500 and a JSON error; its text is not sent to the caller.
impl<T: IntoResponse, E: Display> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(err) => {
                tracing::error!(error = %err, "handler returned an error");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: see the function's logs",
                )
            }
        }
    }
}

/// A [`Handler`] made from an `async fn(Request) -> impl IntoResponse`.
#[derive(Clone, Debug)]
pub struct HandlerFn<F>(F);

/// Wraps `f` as a [`Handler`]: `serve(handler_fn(handle))` is a complete function.
pub fn handler_fn<F, Fut, R>(f: F) -> HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: IntoResponse,
{
    HandlerFn(f)
}

impl<F, Fut, R> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: IntoResponse,
{
    fn call(&self, req: Request) -> impl Future<Output = Response> + Send {
        let fut = (self.0)(req);
        async move { fut.await.into_response() }
    }
}

/// A response with `value` as its JSON body.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_json_type(status, Body::from(bytes)),
        Err(err) => {
            tracing::error!(error = %err, "could not encode a JSON response");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: could not encode the response",
            )
        }
    }
}

/// The runtime's error shape, `{"status":"failed","error":"…"}`, the same the Builder API uses.
pub fn json_error(status: StatusCode, error: &str) -> Response {
    let body = serde_json::json!({ "status": "failed", "error": error });
    with_json_type(status, Body::from(body.to_string()))
}

fn with_json_type(status: StatusCode, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
