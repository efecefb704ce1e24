//! Pushing an image the Docker Engine built: its BuildKit exports to the Engine's image store
//! (exporter `moby`), so the push goes through the Engine API, as buildx does.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;

use crate::error::RegistryFault;
use crate::failure::registry_fault;
use crate::{BuildkitError, DockerConfig, ImageRef};

/// Engine API version: Docker 20.10's, understood by every later Engine.
const API_VERSION: &str = "v1.41";

/// One line of the push progress stream.
#[derive(Deserialize)]
struct PushMessage {
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorDetail")]
    error_detail: Option<ErrorDetail>,
    #[serde(default)]
    aux: Option<PushAux>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct PushAux {
    #[serde(rename = "Digest")]
    digest: Option<String>,
}

/// Pushes `image` from the Engine at `socket`, with credentials for its registry
/// from `config` in the `X-Registry-Auth` header; returns the manifest digest the registry stored.
///
/// # Errors
/// [`BuildkitError::Registry`] with the registry's message (errors arrive inside a 200 response).
pub(crate) async fn push(
    socket: &Path,
    image: &ImageRef,
    config: Arc<DockerConfig>,
) -> Result<String, BuildkitError> {
    // The Engine says what went wrong only in words (its `errorDetail` has no code for a
    // registry's answers): what they do not name as a refusal may pass with a retry.
    let fail = |message: String| BuildkitError::Registry {
        fault: registry_fault(&message).unwrap_or(RegistryFault::Unreachable),
        registry: Some(image.registry().to_owned()),
        message: format!("push {}: {message}", image.given()),
    };
    let registry_auth = config
        .registry_auth_header(image.registry())
        .await
        .map_err(|err| fail(err.to_string()))?;
    let (name, tag) = (image.repository(), image.tag().unwrap_or("latest"));
    let req = http::Request::post(format!("/{API_VERSION}/images/{name}/push?tag={tag}"))
        .header("x-registry-auth", registry_auth);
    let (status, body) = engine_call(socket, req).await.map_err(|err| match err {
        EngineError::Connect(message) => BuildkitError::Unavailable {
            address: format!("docker://{}", socket.display()),
            message,
        },
        EngineError::Exchange(message) => fail(message),
    })?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(fail(format!("engine answered {status}: {message}")));
    }
    let mut digest = None;
    for line in body.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        let Ok(message) = serde_json::from_slice::<PushMessage>(line) else {
            continue;
        };
        if let Some(detail) = message.error_detail.filter(|d| !d.message.is_empty()) {
            return Err(fail(detail.message));
        }
        if let Some(error) = message.error {
            return Err(fail(error));
        }
        if let Some(d) = message.aux.and_then(|aux| aux.digest) {
            digest = Some(d);
        }
    }
    digest.ok_or_else(|| fail("the engine reported no digest for the pushed manifest".to_owned()))
}

/// Removes `image`'s tag from the Engine's image store, so that no later build resolves it by
/// name there: Docker's BuildKit prefers a local image to the registry, which would let any
/// build read what another built. What the daemon's build cache holds stays.
pub(crate) async fn untag(socket: &Path, image: &ImageRef) {
    let (name, tag) = (image.repository(), image.tag().unwrap_or("latest"));
    let req = http::Request::delete(format!("/{API_VERSION}/images/{name}:{tag}?noprune=1"));
    match engine_call(socket, req).await {
        Ok((status, _)) if status.is_success() || status == http::StatusCode::NOT_FOUND => {}
        Ok((status, body)) => {
            tracing::warn!(image = image.given(), %status, body = %String::from_utf8_lossy(&body), "could not untag the built image in the engine")
        }
        Err(err) => {
            tracing::warn!(image = image.given(), error = ?err, "could not untag the built image in the engine")
        }
    }
}

/// Why an Engine API call failed: no connection, or a broken exchange.
#[derive(Debug)]
enum EngineError {
    Connect(String),
    Exchange(String),
}

/// One Engine API call on a connection of its own; the whole answer.
async fn engine_call(
    socket: &Path,
    req: http::request::Builder,
) -> Result<(http::StatusCode, Bytes), EngineError> {
    let exchange = |err: &dyn std::fmt::Display| EngineError::Exchange(err.to_string());
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|err| EngineError::Connect(err.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| exchange(&err))?;
    tokio::spawn(conn);
    let req = req
        .header(http::header::HOST, "api.moby.localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|err| exchange(&err))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|err| exchange(&err))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|err| exchange(&err))?
        .to_bytes();
    Ok((status, body))
}
