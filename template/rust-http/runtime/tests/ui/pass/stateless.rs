use openfaas_runtime::{handler, http, Body, Request, Response};

#[handler]
async fn handle(req: Request) -> Response {
    Response::new(Body::from(req.uri().path().to_owned()))
}

#[tokio::main]
async fn main() {
    let req = http::Request::builder().uri("/path").body(Body::empty()).unwrap();
    let body = handle(req).await.into_body().collect_bytes(64).await.unwrap();
    assert_eq!(&body[..], b"/path");
}
