use openfaas_runtime::{handler, Body, Request, Response};

#[handler]
fn handle(_req: Request) -> Response {
    Response::new(Body::empty())
}

fn main() {}
