use openfaas_runtime::{handler, Body, BoxError, Init, Request, Response};

pub struct Counter {
    start: u64,
}

impl Init for Counter {
    async fn init() -> Result<Self, BoxError> {
        Ok(Self { start: 41 })
    }
}

#[handler]
pub async fn handle(counter: &Counter, _req: Request) -> Response {
    Response::new(Body::from((counter.start + 1).to_string()))
}

fn main() {}
