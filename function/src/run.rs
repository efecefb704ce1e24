//! Run: the indexed context and config become a BuildKit build; its progress becomes log lines,
//! handed on in batches as they come.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use buildkit::{
    BuildRequest, Built, DockerConfig, ImageRef, Output, ReadPolicy, RemoteSources, SourceTree,
    Steps,
};
use openfaas_runtime::http::StatusCode;
use tokio::sync::mpsc;

use crate::builder::Builder;
use crate::error::BuildError;
use crate::intake::Prepared;
use crate::metrics::Finished;
use crate::pool::Lease;

/// Progress events and log lines queued between the build and the response; a slow reader holds
/// the build's status stream back rather than growing a queue.
const QUEUE: usize = 256;

/// What a build came to: its outcome, and its steps and daemon once it reached BuildKit.
pub(crate) struct Ran {
    pub(crate) result: Result<Built, BuildError>,
    pub(crate) steps: Option<Steps>,
    /// The daemon's stable name.
    pub(crate) daemon: Option<String>,
}

/// Runs the build of `prepared`, handing each batch of new log lines to `sink` while it runs.
/// Returns `None` when `sink` says the reader went away: the build is then dropped, which
/// cancels it on the daemon.
pub(crate) async fn run<S, F>(builder: &Builder, prepared: Prepared, mut sink: S) -> Option<Ran>
where
    S: FnMut(Vec<String>) -> F,
    F: Future<Output = bool>,
{
    let (lines_tx, mut lines_rx) = mpsc::channel(QUEUE);
    let build = build(builder, prepared, lines_tx);
    tokio::pin!(build);
    let result = loop {
        tokio::select! {
            result = &mut build => break result,
            Some(first) = lines_rx.recv() => {
                let mut batch = vec![first];
                batch.extend(drain(&mut lines_rx));
                if !sink(batch).await {
                    return None;
                }
            }
        }
    };
    let rest = drain(&mut lines_rx);
    if !rest.is_empty() && !sink(rest).await {
        return None;
    }
    Some(result)
}

/// The lines already queued, without waiting for more.
fn drain(lines: &mut mpsc::Receiver<String>) -> Vec<String> {
    std::iter::from_fn(|| lines.try_recv().ok()).collect()
}

async fn build(builder: &Builder, prepared: Prepared, lines: mpsc::Sender<String>) -> Ran {
    let (lease, request) = match request(builder, &prepared, &lines).await {
        Ok(ready) => ready,
        Err(err) => {
            builder.metrics.refused(err.status());
            return Ran {
                result: Err(err),
                steps: None,
                daemon: None,
            };
        }
    };
    let (events, mut events_rx) = mpsc::channel(QUEUE);
    let rendered = lines.clone();
    let forward = tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            if let Some(text) = buildkit::render(&event) {
                if rendered.send(text).await.is_err() {
                    break;
                }
            }
        }
    });
    // Counted as it ends, or as the client's going away if this future is dropped first.
    let tally = builder.metrics.tally(&lease.member.name);
    let solving = Instant::now();
    let outcome = lease.client.build(request, events).await;
    let took = solving.elapsed();
    if let Err(buildkit::BuildkitError::Unavailable { .. }) = &outcome.result {
        // The daemon went at the transport: the retry goes to the next one.
        lease.member.mark_down();
    }
    let _ = forward.await;
    let (files, bytes) = prepared.archive.sent();
    let _ = lines
        .send(note(&format!("context: sent {files} files, {bytes} bytes")))
        .await;
    drop(prepared);
    let result = outcome.result.map_err(BuildError::from);
    tally.finish(&Finished {
        code: result
            .as_ref()
            .map_or_else(BuildError::status, |_| StatusCode::OK),
        took,
        push: outcome.push,
        steps: outcome.steps,
        context_bytes: bytes,
    });
    Ran {
        result,
        steps: Some(outcome.steps),
        daemon: Some(lease.member.name.clone()),
    }
}

/// What the build may read with the builder's registry credentials: its tenant's own
/// repositories and cache refs (pull and push); `base_image_prefixes`, the allowed frontends
/// (pull), and the SBOM generator it runs.
fn read_policy(builder: &Builder, prepared: &Prepared, cache: &buildkit::Cache) -> ReadPolicy {
    let policy = &builder.settings.policy;
    let Some(base) = &policy.base_images else {
        return ReadPolicy::Any;
    };
    let cache_refs = cache.import.iter().chain(&cache.export);
    ReadPolicy::Only {
        own: (prepared.decision.own.iter().cloned())
            .chain(cache_refs.map(ImageRef::as_prefix))
            .collect(),
        shared: (base.iter().cloned())
            .chain(policy.frontends.iter().map(ImageRef::as_prefix))
            .chain(
                prepared
                    .asked
                    .attestations
                    .sbom
                    .iter()
                    .map(ImageRef::as_prefix),
            )
            .collect(),
    }
}

/// A log line of the builder's own, shaped as BuildKit's.
fn note(text: &str) -> String {
    buildkit::log_line(SystemTime::now(), text)
}

/// The daemon and the BuildKit request for `prepared`.
async fn request(
    builder: &Builder,
    prepared: &Prepared,
    lines: &mpsc::Sender<String>,
) -> Result<(Lease, BuildRequest), BuildError> {
    let config = &prepared.config;
    if !config.unknown_fields.is_empty() {
        let _ = lines
            .send(note(&format!(
                "ignoring unknown config fields: {}",
                config.unknown_fields.join(", ")
            )))
            .await;
    }
    // The tenant and the image's repository, never the tag: a function's rebuilds land where
    // its cache is.
    let key = format!(
        "{}\n{}",
        prepared.decision.tenant,
        config
            .image
            .as_ref()
            .map(ImageRef::repository)
            .unwrap_or_default()
    );
    let lease = builder.daemon(&key).await?;
    let client = &lease.client;
    let path = builder.settings.docker_config.clone();
    let registry_auth = tokio::task::spawn_blocking(move || DockerConfig::load(&path))
        .await
        .map_err(|e| BuildError::internal("the docker config task", e))?
        .map_err(|e| BuildError::internal("loading registry credentials", e))?;
    let output = match (&config.image, config.skip_push) {
        (Some(image), false) => Output::Push(image.clone()),
        (Some(image), true) => Output::Tag(image.clone()),
        (None, _) => Output::Discard,
    };
    let context: Arc<dyn SourceTree> = prepared.archive.clone();
    let mut request = BuildRequest::new(context, output);
    request.build_args = config.build_args.clone();
    request.platforms = config.platforms.clone();
    request.network = builder.settings.network;
    request.registry_auth = Arc::new(registry_auth);
    request.frontend_attrs = prepared.decision.attrs.clone();
    request.secrets = prepared.secrets.clone();
    request.cache = crate::cache::plan(
        config,
        &prepared.decision.tenant,
        builder.settings.cache_repository.as_deref(),
    );
    request.insecure_registries = builder.settings.insecure_registries.clone();
    request.read_policy = read_policy(builder, prepared, &request.cache);
    request.timeout = Some(builder.settings.build_timeout);
    let asked = &prepared.asked;
    let restricted = match &builder.settings.policy.remote_sources {
        RemoteSources::Only(prefixes) => Some(prefixes),
        RemoteSources::Any => None,
    };
    // Asked once, for every check that needs it (the read policy's in the build too).
    let needs_version = restricted.is_some()
        || request.read_policy != ReadPolicy::Any
        || asked.attestations.any()
        || asked.source_date_epoch.is_some();
    let version = if needs_version {
        Some(client.version().await?)
    } else {
        None
    };
    if let (Some(prefixes), Some(version)) = (restricted, &version) {
        // BuildKit v0.11+ (which answers Info) applies a source policy to every source, after
        // ARG expansion; an older daemon would fetch what the builder could not check.
        match version {
            Some(_) => request.remote_sources = RemoteSources::Only(prefixes.clone()),
            None => {
                if let Some(source) = prepared.decision.unproven.first() {
                    return Err(crate::policy::remote::unchecked(source).into());
                }
            }
        }
    }
    if let Some(version) = &version {
        if let Some((what, needs)) = crate::attest::lacking(asked, version.as_deref()) {
            return Err(BuildError::DaemonCannot {
                daemon: lease.member.name.clone(),
                version: version.clone().unwrap_or_else(|| {
                    "a Docker Engine's BuildKit or one before v0.11: it answers no Info".to_owned()
                }),
                what,
                needs,
            });
        }
    }
    request.daemon_version = version;
    request.attestations = asked.attestations.clone();
    request.source_date_epoch = asked.source_date_epoch;
    request.annotations.insert(
        crate::attest::REQUEST_ANNOTATION.to_owned(),
        prepared.request_digest.clone(),
    );
    if asked.attestations.provenance.is_some() {
        // Provenance records the frontend's options (of every mode, build args and labels only
        // in `max`); the Dockerfile frontend ignores this one.
        request.frontend_attrs.insert(
            crate::attest::REQUEST_ANNOTATION.to_owned(),
            prepared.request_digest.clone(),
        );
    }
    if let Some(to) = request.cache.export.as_ref() {
        if matches!(lease.member.address(), buildkit::Address::Docker(_)) {
            let _ = lines
                .send(note(&format!(
                    "cache: a Docker Engine exports only the inline cache, so the cache travels in the pushed image, not in {}",
                    to.given()
                )))
                .await;
        }
    }
    // One key per tenant (by default the image repository): a rebuild of a function sends only
    // what changed, and no two tenants share a base. Safe because the index derives each file's
    // mtime nanoseconds from its content.
    request.shared_key = format!("function-builder:{}", prepared.decision.tenant);
    Ok((lease, request))
}
