//! A function served by the template runtime without the macro, for process-level tests.
//! Run: `upstream_url=http://127.0.0.1:0 cargo run -p function-builder-tests --bin probe-server`
//!
//! - `POST /sha256`: streams the request body through SHA-256, answers `<bytes> <hex digest>`;
//! - `GET /drip?n=N&ms=M`: streams N lines, one every M milliseconds;
//! - `GET /panic`: panics.

use std::time::Duration;

use futures_util::{stream, StreamExt};
use openfaas_runtime::{handler_fn, serve, Body, BoxError, Request, Response};
use sha2::{Digest, Sha256};

async fn handle(req: Request) -> Result<Response, BoxError> {
    let query = |key: &str| -> Option<u64> {
        req.uri()
            .query()?
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    match req.uri().path() {
        "/sha256" => {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            let mut chunks = req.into_body().into_data_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                len += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(Response::new(Body::from(format!(
                "{len} {:x}",
                hasher.finalize()
            ))))
        }
        "/drip" => {
            let (n, ms) = (query("n").unwrap_or(5), query("ms").unwrap_or(100));
            let lines = stream::iter(0..n).then(move |i| async move {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Ok::<_, BoxError>(format!("line {i}\n"))
            });
            Ok(Response::new(Body::from_stream(lines)))
        }
        "/panic" => panic!("probe asked to panic"),
        _ => Ok(Response::new(Body::from("probe\n"))),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    serve(handler_fn(handle)).await
}
