use openfaas_runtime::{handler, Body, Request, Response};

#[handler]
async fn none() -> Response {
    Response::new(Body::empty())
}

mod three {
    use super::*;

    #[handler]
    async fn three(_a: &u8, _b: &u8, _req: Request) -> Response {
        Response::new(Body::empty())
    }
}

fn main() {}
