//! The builder's state, built once at start: its settings, its connection to BuildKit and its
//! metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::BuildError;
use crate::metrics::{DaemonState, Metrics};
use crate::pool::{Lease, Pool};
use crate::settings::Settings;
use crate::workdir;

/// The builder's state, built once at start.
pub struct Builder {
    pub(crate) settings: Settings,
    /// The daemons, each dialled on first use; never held across a dial, so a daemon that drops
    /// packets stalls only the requests that need it, for at most the connect timeout.
    pool: Arc<Pool>,
    /// What the builds did, and the pool's daemons as each scrape finds them.
    pub(crate) metrics: Arc<Metrics>,
}

impl Builder {
    /// A builder with `settings`; BuildKit is dialled on first use. Request temp dirs that an
    /// earlier builder process left in `work_dir` (after a kill or an OOM) are removed. Its
    /// metrics are served only once asked ([`Builder::serve_metrics`]).
    pub fn new(settings: Settings) -> Arc<Self> {
        let removed = workdir::remove_leftovers(&settings.work_dir);
        if removed > 0 {
            tracing::info!(removed, work_dir = %settings.work_dir.display(), "removed request temp dirs left by an earlier process");
        }
        let pool = Pool::new(
            settings.buildkit.clone(),
            settings.buildkit_tls.clone(),
            settings.buildkit_load_factor,
            settings.buildkit_probe_interval,
        );
        let daemons = Arc::downgrade(&pool);
        let metrics = Arc::new(Metrics::new(move || {
            let Some(pool) = daemons.upgrade() else {
                return Vec::new();
            };
            (pool.members().iter())
                .map(|m| DaemonState {
                    name: m.name.clone(),
                    up: m.is_up(),
                    in_flight: m.in_flight(),
                })
                .collect()
        }));
        Arc::new(Self {
            settings,
            pool,
            metrics,
        })
    }

    /// Serves the builder's metrics (`GET /metrics`) on `addr`, from now until the process
    /// ends; port 0 takes one the system picks. Returns where they are served.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn serve_metrics(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        crate::metrics::serve(Arc::clone(&self.metrics), addr).await
    }

    /// A daemon for a build of `key` (its tenant and image repository), dialled, and counted as
    /// running the build until the lease is dropped.
    pub(crate) async fn daemon(&self, key: &str) -> Result<Lease, BuildError> {
        Ok(self.pool.route(key).await?)
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

    /// Whether a daemon answers a cheap call, asked of every daemon at once. A daemon that does
    /// not is marked down and dialled again when it next answers.
    pub(crate) async fn buildkit_ready(&self) -> Result<(), BuildError> {
        Ok(self.pool.probe_all().await?)
    }
}
