//! function-builder: the OpenFaaS Function Builder API as a function of the rust-http template.
//!
//! Routes (behind of-watchdog, which adds `/_/health` and `/_/ready` of its own):
//! - `GET /healthz`: liveness, `{"status":"ok"}`;
//! - anything else: 404 with a JSON error naming the method and path.

use openfaas_runtime::http::{Method, StatusCode};
use openfaas_runtime::{handler, json, json_error, Request, Response};

#[handler]
pub async fn handle(req: Request) -> Response {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        (method, path) => json_error(
            StatusCode::NOT_FOUND,
            &format!("no route for {method} {path}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use openfaas_runtime::{http, Body};

    use super::*;

    async fn call(method: Method, path: &str) -> (StatusCode, serde_json::Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = handle(req).await;
        let status = resp.status();
        let body = resp.into_body().collect_bytes(4096).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn healthz_is_ok() {
        let (status, body) = call(Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn unknown_routes_are_404_json() {
        let (status, body) = call(Method::POST, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            serde_json::json!({"status": "failed", "error": "no route for POST /nope"})
        );
    }
}
