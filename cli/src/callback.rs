//! `build --async --wait`: a one-shot receiver for the queue-worker's callback, which carries the
//! builder's result as its body and the builder's HTTP status in `X-Function-Status`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// What the callback brought.
pub(crate) struct Callback {
    /// The builder's status code (`X-Function-Status`).
    pub(crate) status: http::StatusCode,
    /// The call it answers (`X-Call-Id`).
    pub(crate) call_id: String,
    /// The builder's result.
    pub(crate) result: handler::wire::Report,
}

/// Accepts connections on `listener` until one POST arrives, answers it 200 and returns it.
pub(crate) async fn wait(listener: TcpListener) -> Result<Callback> {
    let (tx, rx) = oneshot::channel::<Result<Callback>>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let serve = async {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => return err,
            };
            let tx = Arc::clone(&tx);
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let tx = Arc::clone(&tx);
                async move {
                    let received = receive(req).await;
                    if let Some(tx) = tx
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take()
                    {
                        let _ = tx.send(received);
                    }
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    };
    tokio::select! {
        err = serve => Err(anyhow!("callback receiver stopped: {err}")),
        received = rx => received.context("callback receiver")?,
    }
}

async fn receive(req: http::Request<Incoming>) -> Result<Callback> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let status = header("x-function-status")
        .parse::<u16>()
        .ok()
        .and_then(|s| http::StatusCode::from_u16(s).ok());
    let call_id = header("x-call-id");
    let body = req.into_body().collect().await?.to_bytes();
    let result = serde_json::from_slice(&body).with_context(|| {
        format!(
            "the callback body is not the builder's JSON: {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok(Callback {
        status: status.unwrap_or(http::StatusCode::OK),
        call_id,
        result,
    })
}
