//! `#[handler]`: what it accepts and rejects (trybuild), and that its adapter serves as written.

use openfaas_runtime::__private::Entry;
use openfaas_runtime::{handler, http, Body, BoxError, Handler, Init, Request, Response};

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}

struct Greeting(String);

impl Init for Greeting {
    async fn init() -> Result<Self, BoxError> {
        Ok(Self("Hello".to_owned()))
    }
}

#[handler]
async fn greet(greeting: &Greeting, req: Request) -> Response {
    Response::new(Body::from(format!(
        "{}, {}!",
        greeting.0,
        req.uri().path().trim_start_matches('/')
    )))
}

#[tokio::test]
async fn the_adapter_builds_state_once_and_calls_the_function_with_it() {
    let handler = __OpenfaasHandler::build().await.unwrap();
    let req = http::Request::builder()
        .uri("/faas")
        .body(Body::empty())
        .unwrap();
    let body = handler
        .call(req)
        .await
        .into_body()
        .collect_bytes(64)
        .await
        .unwrap();
    assert_eq!(&body[..], b"Hello, faas!");
}

#[tokio::test]
async fn the_function_stays_callable_as_written() {
    let req = http::Request::builder()
        .uri("/test")
        .body(Body::empty())
        .unwrap();
    let body = greet(&Greeting("Hi".to_owned()), req)
        .await
        .into_body()
        .collect_bytes(64)
        .await
        .unwrap();
    assert_eq!(&body[..], b"Hi, test!");
}
