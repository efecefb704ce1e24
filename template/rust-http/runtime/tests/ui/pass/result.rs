use openfaas_runtime::{handler, http, Body, Request};

#[derive(Debug)]
struct NotFound;

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

// Any `IntoResponse` may be returned: here a `Result` whose error becomes a 500.
#[handler]
async fn handle(req: Request) -> Result<http::Response<String>, NotFound> {
    match req.uri().path() {
        "/" => Ok(http::Response::new("home".to_owned())),
        _ => Err(NotFound),
    }
}

#[tokio::main]
async fn main() {
    let req = http::Request::builder().uri("/x").body(Body::empty()).unwrap();
    let resp = openfaas_runtime::IntoResponse::into_response(handle(req).await);
    assert_eq!(resp.status(), 500);
}
