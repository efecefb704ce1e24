use std::rc::Rc;

use openfaas_runtime::{handler, Body, Request, Response};

#[handler]
async fn handle(_req: Request) -> Response {
    let local = Rc::new(1);
    tokio::task::yield_now().await;
    Response::new(Body::from(local.to_string()))
}

fn main() {}
