use openfaas_runtime::{handler, Body, Request, Response};

#[handler(path = "/")]
async fn with_args(_req: Request) -> Response {
    Response::new(Body::empty())
}

mod generic {
    use super::*;

    #[handler]
    async fn generic<T>(_req: Request) -> Response {
        Response::new(Body::empty())
    }
}

fn main() {}
