//! The runtime of the `rust-http` OpenFaaS template: a hyper 1 server that of-watchdog (HTTP mode)
//! forwards requests to, and the handler model functions are written in.
//!
//! - Bodies stream both ways ([`Body`]); nothing is buffered unless the handler asks
//!   ([`Body::collect_bytes`]).
//! - `read_timeout` and `write_timeout` are honoured as of-watchdog reads them ([`Config`]).
//! - On SIGTERM the server stops accepting and lets in-flight requests finish.
//! - A panic in a handler becomes a 500 JSON response; the process lives on.
//! - One log line per request: method, path, status, duration and `X-Call-Id`.
//!
//! The runtime is complete without the macro:
//!
//! ```no_run
//! use openfaas_runtime::{handler_fn, serve, Body, BoxError, Request, Response};
//!
//! async fn handle(req: Request) -> Response {
//!     Response::new(Body::from(format!("you asked for {}\n", req.uri().path())))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), BoxError> {
//!     serve(handler_fn(handle)).await
//! }
//! ```
//!
//! In a function made from the template, `#[handler]` on one `async fn` in the handler crate's
//! `lib.rs` is all it takes; the template's `main` serves it. State built once at start goes in a
//! type implementing [`Init`], taken by reference:
//!
//! ```no_run
//! use openfaas_runtime::{handler, Body, BoxError, Init, Request, Response};
//!
//! pub struct Greeter {
//!     greeting: String,
//! }
//!
//! impl Init for Greeter {
//!     async fn init() -> Result<Self, BoxError> {
//!         Ok(Self { greeting: std::env::var("greeting").unwrap_or_else(|_| "Hello".into()) })
//!     }
//! }
//!
//! #[handler]
//! async fn handle(greeter: &Greeter, _req: Request) -> Response {
//!     Response::new(Body::from(format!("{}!\n", greeter.greeting)))
//! }
//! ```

mod body;
mod config;
mod handler;
mod server;
mod service;

pub use body::{Body, BodyTooLarge};
pub use config::{parse_duration, Config, ConfigError};
pub use handler::{
    handler_fn, json, json_error, Handler, HandlerFn, Init, IntoResponse, Request, Response,
};
pub use http;
pub use openfaas_macros::handler;
pub use server::{serve, serve_with};
pub use service::DeadlineExceeded;

/// The error type handlers and state initialisers may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
