//! function-builder: the OpenFaaS Function Builder API as a function of the rust-http template.
//!
//! Routes (behind of-watchdog, which adds `/_/health` and `/_/ready` of its own):
//! - `POST /build`: a signed tar (`com.openfaas.docker.config` + `context/`) in, an image built
//!   by BuildKit and pushed out, with the build log as JSON or NDJSON;
//! - `GET /healthz`: liveness;
//! - `GET /ready`: ready only when BuildKit answers;
//! - `GET /publickey`: the key build secrets are sealed to, when one is configured;
//! - anything else: 404 with a JSON error naming the method and path.
//!
//! Its Prometheus metrics are served apart, on `metrics_port` (default 8082).

mod archive;
mod attest;
mod build;
mod buildconfig;
mod builder;
mod cache;
mod dockerfile;
mod error;
mod id;
mod intake;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod metrics;
mod platform;
mod policy;
mod pool;
mod respond;
mod run;
pub mod sealed;
mod settings;
mod verify;
pub mod wire;
mod workdir;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use openfaas_runtime::http::{Method, StatusCode};
use openfaas_runtime::{handler, json, json_error, BoxError, Init, Request, Response};

pub use attest::Defaults as AttestDefaults;
pub use builder::Builder;
pub use policy::{Policy, TenantRule, TenantRuleError};
pub use pool::{Daemons, DaemonsError};
pub use settings::{Settings, SettingsError};

/// The state `#[handler]` builds once: settings from the environment, and the metrics server.
pub struct State(Arc<Builder>);

impl Init for State {
    async fn init() -> Result<Self, BoxError> {
        let settings = Settings::from_env()?;
        if settings.disable_hmac {
            tracing::warn!("disable_hmac=true: build requests are NOT authenticated; use this for local development only");
        } else {
            let path = &settings.payload_secret_path;
            match std::fs::read(path) {
                Err(err) => return Err(format!("payload secret {}: {err}", path.display()).into()),
                Ok(secret) if secret.trim_ascii().is_empty() => {
                    return Err(format!("payload secret {} is empty", path.display()).into())
                }
                Ok(_) => {}
            }
        }
        tracing::info!(buildkit = %settings.buildkit, network = ?settings.network, "builder configured");
        let builder = Builder::new(settings);
        if let Some(port) = builder.settings.metrics_port {
            // Every interface: Prometheus scrapes the pod's IP.
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let served = builder
                .serve_metrics(addr)
                .await
                .map_err(|err| format!("metrics_port {port}: {err}"))?;
            tracing::info!(addr = %served, "metrics served at /metrics");
        }
        Ok(Self(builder))
    }
}

#[handler]
pub async fn handle(state: &State, req: Request) -> Response {
    route(&state.0, req).await
}

/// Dispatches a request; what `handle` does, for callers holding a [`Builder`]. Routes that need
/// no signature answer without file paths or addresses: those go to the builder's log.
pub async fn route(builder: &Arc<Builder>, req: Request) -> Response {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/build") => build::handle(builder, req).await,
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        (&Method::GET, "/ready") => ready(builder).await,
        // Unauthenticated, as faas-cli fetches it: a public key is public.
        (&Method::GET, "/publickey") => match &builder.settings.secrets_key {
            Some(key) => json(StatusCode::OK, key.public()),
            None => json_error(
                StatusCode::NOT_FOUND,
                "no build secrets key is configured (build_secrets_private_key_path)",
            ),
        },
        (_, "/build") => json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST /build"),
        (method, path) => json_error(
            StatusCode::NOT_FOUND,
            &format!("no route for {method} {path}"),
        ),
    }
}

/// `/ready`: 200 while a BuildKit daemon answers. Anyone may ask, so the answer says only that it does
/// not; the log line says why, with the address and any TLS file at fault.
async fn ready(builder: &Builder) -> Response {
    match builder.buildkit_ready().await {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(err) => {
            tracing::warn!(error = %err, buildkit = %builder.settings.buildkit, "not ready");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "buildkit is not ready: it does not answer (the builder's log says why)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use openfaas_runtime::{http, Body};

    use super::*;

    fn builder() -> Arc<Builder> {
        let settings = Settings::from_env().unwrap();
        Builder::new(settings)
    }

    async fn call(method: Method, path: &str) -> (StatusCode, serde_json::Value) {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = route(&builder(), req).await;
        let status = resp.status();
        let body = resp.into_body().collect_bytes(4096).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn healthz_is_ok() {
        let (status, body) = call(Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }

    #[tokio::test]
    async fn unknown_routes_are_404_json() {
        let (status, body) = call(Method::POST, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            serde_json::json!({"status": "failed", "error": "no route for POST /nope"})
        );
        let (status, _) = call(Method::GET, "/build").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn ready_names_no_path_or_address_of_the_operators() {
        let mut settings = Settings::from_env().unwrap();
        settings.buildkit = "unix:///nonexistent/secret-dir/buildkitd.sock"
            .parse()
            .unwrap();
        settings.buildkit_tls = None;
        let req = http::Request::get("/ready").body(Body::empty()).unwrap();
        let resp = route(&Builder::new(settings), req).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = resp.into_body().collect_bytes(4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "failed", "error": "buildkit is not ready: it does not answer (the builder's log says why)"})
        );
    }
}
