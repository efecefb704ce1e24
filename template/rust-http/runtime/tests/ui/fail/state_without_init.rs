use openfaas_runtime::{handler, Body, Request, Response};

pub struct State;

#[handler]
async fn handle(_state: &State, _req: Request) -> Response {
    Response::new(Body::empty())
}

fn main() {}
