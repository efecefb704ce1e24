//! The builder's state, built once at start: its settings and its connection to BuildKit.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use buildkit::Client;

use crate::error::BuildError;
use crate::settings::Settings;
use crate::workdir;

/// The builder's state, built once at start.
pub struct Builder {
    pub(crate) settings: Settings,
    /// Dialled on first use; never held across the dial, so a daemon that drops packets stalls
    /// only the requests that need it, for at most the connect timeout.
    client: Mutex<Option<Client>>,
}

impl Builder {
    /// A builder with `settings`; BuildKit is dialled on first use. Request temp dirs that an
    /// earlier builder process left in `work_dir` (after a kill or an OOM) are removed.
    pub fn new(settings: Settings) -> Arc<Self> {
        let removed = workdir::remove_leftovers(&settings.work_dir);
        if removed > 0 {
            tracing::info!(removed, work_dir = %settings.work_dir.display(), "removed request temp dirs left by an earlier process");
        }
        Arc::new(Self {
            settings,
            client: Mutex::new(None),
        })
    }

    fn cached_client(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The BuildKit client, connecting (again) when there is none.
    pub(crate) async fn client(&self) -> Result<Client, BuildError> {
        if let Some(client) = self.cached_client().clone() {
            return Ok(client);
        }
        let connected =
            Client::connect(&self.settings.buildkit, self.settings.buildkit_tls.as_ref()).await?;
        Ok(self.cached_client().get_or_insert(connected).clone())
    }

    /// The payload secret, read per request so a rotated secret takes effect; `None` when HMAC
    /// checking is disabled.
    pub(crate) async fn payload_secret(&self) -> Result<Option<Vec<u8>>, BuildError> {
        if self.settings.disable_hmac {
            return Ok(None);
        }
        let path = &self.settings.payload_secret_path;
        let secret = tokio::fs::read(path).await.map_err(|e| {
            BuildError::internal(format!("reading the payload secret {}", path.display()), e)
        })?;
        let secret = secret.trim_ascii();
        // An empty key would accept any body signed with an empty key.
        if secret.is_empty() {
            return Err(BuildError::Internal {
                context: format!("the payload secret {} is empty", path.display()),
                source: None,
            });
        }
        Ok(Some(secret.to_vec()))
    }

    /// Whether BuildKit answers a cheap call. A broken channel is dropped so the next check
    /// dials again.
    pub(crate) async fn buildkit_ready(&self) -> Result<(), BuildError> {
        let client = self.client().await?;
        let answered = client.list_workers().await;
        if answered.is_err() {
            *self.cached_client() = None;
        }
        answered.map(|_| ()).map_err(BuildError::from)
    }
}
