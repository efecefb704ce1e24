//! function-builder: the OpenFaaS Function Builder API as a function of the rust-http template.
//!
//! Routes (behind of-watchdog, which adds `/_/health` and `/_/ready` of its own):
//! - `POST /build`: a signed tar (`com.openfaas.docker.config` + `context/`) in, an image built
//!   by BuildKit and pushed out, with the build log as JSON or NDJSON;
//! - `GET /healthz`: liveness;
//! - `GET /ready`: ready only when BuildKit answers;
//! - `GET /publickey`: the key build secrets are sealed to, when one is configured;
//! - anything else: 404 with a JSON error naming the method and path.

mod archive;
mod build;
mod buildconfig;
mod cache;
mod error;
mod intake;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals;
mod policy;
mod respond;
mod run;
pub mod sealed;
mod settings;
mod verify;
pub mod wire;

use std::sync::Arc;

use buildkit::Client;
use openfaas_runtime::http::{Method, StatusCode};
use openfaas_runtime::{handler, json, json_error, BoxError, Init, Request, Response};

use error::BuildError;
pub use policy::{Policy, TenantRule};
pub use settings::{Settings, SettingsError};

/// The builder's state, built once at start.
pub struct Builder {
    settings: Settings,
    /// Dialled on first use; never held across the dial, so a daemon that drops packets stalls
    /// only the requests that need it, for at most the connect timeout.
    client: std::sync::Mutex<Option<Client>>,
}

impl Builder {
    /// A builder with `settings`; BuildKit is dialled on first use. Request temp dirs that an
    /// earlier builder process left in `work_dir` (after a kill or an OOM) are removed.
    pub fn new(settings: Settings) -> Arc<Self> {
        let removed = intake::remove_leftovers(&settings.work_dir);
        if removed > 0 {
            tracing::info!(removed, work_dir = %settings.work_dir.display(), "removed request temp dirs left by an earlier process");
        }
        Arc::new(Self {
            settings,
            client: std::sync::Mutex::new(None),
        })
    }

    fn cached_client(&self) -> std::sync::MutexGuard<'_, Option<Client>> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The BuildKit client, connecting (again) when there is none.
    async fn client(&self) -> Result<Client, BuildError> {
        if let Some(client) = self.cached_client().clone() {
            return Ok(client);
        }
        let connected =
            Client::connect(&self.settings.buildkit, self.settings.buildkit_tls.as_ref()).await?;
        Ok(self.cached_client().get_or_insert(connected).clone())
    }

    /// The payload secret, read per request so a rotated secret takes effect; `None` when HMAC
    /// checking is disabled.
    async fn payload_secret(&self) -> Result<Option<Vec<u8>>, BuildError> {
        if self.settings.disable_hmac {
            return Ok(None);
        }
        let path = &self.settings.payload_secret_path;
        let secret = tokio::fs::read(path)
            .await
            .map_err(|e| BuildError::Internal {
                message: format!("cannot read the payload secret {}: {e}", path.display()),
            })?;
        let secret = secret.trim_ascii();
        // An empty key would accept any body signed with an empty key.
        if secret.is_empty() {
            return Err(BuildError::Internal {
                message: format!("the payload secret {} is empty", path.display()),
            });
        }
        Ok(Some(secret.to_vec()))
    }

    async fn ready(&self) -> Response {
        let answered = match self.client().await {
            Ok(client) => client
                .list_workers()
                .await
                .map(|_| ())
                .map_err(BuildError::from),
            Err(err) => Err(err),
        };
        match answered {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
            Err(err) => {
                // A broken channel is dropped so the next check dials again.
                *self.cached_client() = None;
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("buildkit is not ready: {err}"),
                )
            }
        }
    }
}

/// The state `#[handler]` builds once: settings from the environment.
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
        Ok(Self(Builder::new(settings)))
    }
}

#[handler]
pub async fn handle(state: &State, req: Request) -> Response {
    route(&state.0, req).await
}

/// Dispatches a request; what `handle` does, for callers holding a [`Builder`].
pub async fn route(builder: &Arc<Builder>, req: Request) -> Response {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/build") => build::handle(builder, req).await,
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        (&Method::GET, "/ready") => builder.ready().await,
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
}
