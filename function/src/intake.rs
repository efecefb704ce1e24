//! Intake: signature, size, then the index of the spooled archive and its config, before BuildKit
//! is called. Each request's spool files live in one temp dir owned by what this returns.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use openfaas_runtime::http::header;
use openfaas_runtime::Request;

use crate::archive::{Archive, Limits};
use crate::attest::Asked;
use crate::buildconfig::BuildConfig;
use crate::builder::Builder;
use crate::error::BuildError;
use crate::policy::Decision;
use crate::sealed::{OpeningKey, SealedError};
use crate::verify::verify;
use crate::workdir::{self, SPOOL_NAME};

/// A request that passed intake: its indexed archive and its config.
pub(crate) struct Prepared {
    /// The spool files; removed when dropped, on every path (answered, failed, cancelled).
    _workdir: tempfile::TempDir,
    pub(crate) archive: Arc<Archive>,
    pub(crate) config: BuildConfig,
    /// What the policy decided: frontend attributes and the tenant.
    pub(crate) decision: Decision,
    /// Opened build secrets by id, for `RUN --mount=type=secret`.
    pub(crate) secrets: HashMap<String, Bytes>,
    pub(crate) bytes_in: u64,
    /// `sha256:…` of the signed body.
    pub(crate) request_digest: String,
    /// Attestations and reproducibility, the config's over the builder's defaults.
    pub(crate) asked: Asked,
}

/// Verifies, spools and indexes a request.
///
/// # Errors
/// The signature, size, archive or config error, naming what is wrong.
pub(crate) async fn prepare(builder: &Builder, req: Request) -> Result<Prepared, BuildError> {
    let settings = &builder.settings;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > settings.max_request_bytes {
            return Err(BuildError::TooLarge {
                limit: settings.max_request_bytes,
            });
        }
    }
    let signature = req
        .headers()
        .get("x-build-signature")
        .map(|v| v.as_bytes().to_vec());
    let tenant_header = settings
        .policy
        .tenant
        .header()
        .and_then(|name| req.headers().get(name))
        .map(|v| v.as_bytes().to_vec());
    let secret = builder.payload_secret().await?;
    // The temp dir is made only for a body that outgrows memory, or once it is verified: a
    // small request with a bad signature never touches the disk.
    let work_dir = &settings.work_dir;
    let mut workdir = None;
    let verified = verify(
        req.into_body(),
        || {
            let dir = workdir::create(work_dir)?;
            let file = std::fs::File::create(dir.path().join(SPOOL_NAME));
            workdir = Some(dir);
            file
        },
        settings.max_request_bytes,
        signature.as_deref(),
        secret.as_deref(),
    )
    .await?;
    if verified.len == 0 {
        return Err(BuildError::Empty);
    }
    let workdir = match workdir {
        Some(dir) => dir,
        None => {
            let dir = workdir::create(work_dir)
                .map_err(|e| BuildError::internal("creating a work dir", e))?;
            let held = verified.memory.unwrap_or_default();
            tokio::fs::write(dir.path().join(SPOOL_NAME), held)
                .await
                .map_err(|e| BuildError::internal("writing the spool file", e))?;
            dir
        }
    };
    let spool = workdir.path().join(SPOOL_NAME);
    let limits = Limits {
        entries: settings.max_entries,
        bytes: settings.max_unpacked_bytes,
    };
    let archive = tokio::task::spawn_blocking(move || Archive::index(&spool, "Dockerfile", limits))
        .await
        .map_err(|e| BuildError::internal("the index task", e))??;
    let config = BuildConfig::parse(&archive.config)?;
    // The `# syntax=` line is in the first 64 KiB; remote sources, when restricted, are read
    // from the whole file (one byte over the limit tells the policy it is too large for that).
    let read = match settings.policy.remote_sources {
        buildkit::RemoteSources::Any => 64 * 1024,
        buildkit::RemoteSources::Only(_) => crate::dockerfile::MAX_CHECKED as u64 + 1,
    };
    let dockerfile = archive.head("Dockerfile", read).unwrap_or_default();
    let decision = settings
        .policy
        .check(&config, &dockerfile, tenant_header.as_deref())?;
    let asked = crate::attest::settle(
        &config,
        &settings.attest,
        &settings.policy,
        archive.newest_mtime(),
    )?;
    let secrets = open_secrets(settings.secrets_key.as_ref(), archive.secrets.as_deref())?;
    Ok(Prepared {
        _workdir: workdir,
        archive: Arc::new(archive),
        config,
        decision,
        secrets,
        bytes_in: verified.len,
        request_digest: format!("sha256:{}", hex::encode(verified.sha256)),
        asked,
    })
}

/// Opens the sealed secrets, if any were sent. Each value lives in one buffer that is zeroed
/// when its last user (the build's session) lets go of it.
fn open_secrets(
    key: Option<&OpeningKey>,
    sealed: Option<&[u8]>,
) -> Result<HashMap<String, Bytes>, BuildError> {
    let Some(sealed) = sealed else {
        return Ok(HashMap::new());
    };
    let key = key.ok_or(SealedError::NoKey)?;
    Ok(key
        .open(sealed)?
        .into_iter()
        .map(|(name, value)| (name, Bytes::from_owner(value)))
        .collect())
}
