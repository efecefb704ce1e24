//! A hello-world function for the rust-http template.
//!
//! `#[handler]` marks the one function that serves requests; it stays an ordinary `async fn`, so a
//! test can call it directly. For state built once at start (clients, secrets), take `&State` as a
//! first argument and implement `openfaas_runtime::Init` for it.

use openfaas_runtime::{handler, Body, Request, Response};

#[handler]
pub async fn handle(req: Request) -> Response {
    let name = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("name="))
        .unwrap_or("world");
    Response::new(Body::from(format!("Hello, {name}!\n")))
}

#[cfg(test)]
mod tests {
    use openfaas_runtime::http;

    use super::*;

    #[tokio::test]
    async fn greets_by_name() {
        let req = http::Request::builder()
            .uri("/?name=faas")
            .body(Body::empty())
            .unwrap();
        let body = handle(req)
            .await
            .into_body()
            .collect_bytes(1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"Hello, faas!\n");
    }
}
