//! Run: the indexed context and config become a BuildKit build; its progress becomes log lines,
//! handed on in batches as they come.

use std::future::Future;
use std::sync::Arc;

use std::collections::HashSet;

use buildkit::{BuildOutcome, BuildRequest, DockerConfig, Event, Output, SourceTree};
use tokio::sync::mpsc;

use crate::intake::Prepared;
use crate::respond::line;
use crate::wire::Steps;
use crate::{BuildError, Builder};

/// Progress events and log lines queued between the build and the response; a slow reader holds
/// the build's status stream back rather than growing a queue.
const QUEUE: usize = 256;

/// How many running steps a `build_timeout` message names, and how much of each name.
const RUNNING_NAMED: usize = 3;
const STEP_NAME_CHARS: usize = 120;

/// What a build came to: its outcome, and its steps once it reached BuildKit.
pub(crate) struct Ran {
    pub(crate) result: Result<BuildOutcome, BuildError>,
    pub(crate) steps: Option<Steps>,
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

/// Counts the Dockerfile steps of a build as their events pass, and knows which steps are
/// running (for the message of a build stopped by `build_timeout`).
#[derive(Default)]
struct StepCounter {
    seen: HashSet<String>,
    cached: HashSet<String>,
    /// Digest and name of each step started and not yet ended, in the order they started.
    running: Vec<(String, String)>,
}

impl StepCounter {
    fn observe(&mut self, event: &Event) {
        let (digest, name, cached) = match event {
            Event::VertexStarted { digest, name, .. } => {
                if !self.running.iter().any(|(d, _)| d == digest) {
                    self.running.push((digest.clone(), name.clone()));
                }
                (digest, name, false)
            }
            Event::VertexCompleted { digest, name, .. }
            | Event::VertexFailed { digest, name, .. } => {
                self.running.retain(|(d, _)| d != digest);
                (digest, name, false)
            }
            Event::VertexCached { digest, name, .. } => {
                self.running.retain(|(d, _)| d != digest);
                (digest, name, true)
            }
            _ => return,
        };
        // The Dockerfile frontend names its steps `[2/3] RUN …` or `[stage 1/2] FROM …`.
        if !name.starts_with('[') || name.starts_with("[internal]") {
            return;
        }
        self.seen.insert(digest.clone());
        if cached {
            self.cached.insert(digest.clone());
        }
    }

    /// The names of the steps running now, each once (a multi-platform build runs a step per
    /// platform), at most [`RUNNING_NAMED`] of them, each cut to [`STEP_NAME_CHARS`]; `None`
    /// when none is.
    fn running(&self) -> Option<String> {
        let mut names: Vec<String> = Vec::new();
        for (_, name) in &self.running {
            let name: String = name.chars().take(STEP_NAME_CHARS).collect();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let more = names.len().saturating_sub(RUNNING_NAMED);
        names.truncate(RUNNING_NAMED);
        if more > 0 {
            names.push(format!("{more} more"));
        }
        (!names.is_empty()).then(|| names.join(", "))
    }

    fn steps(&self) -> Steps {
        let count = |set: &HashSet<String>| u32::try_from(set.len()).unwrap_or(u32::MAX);
        Steps {
            total: count(&self.seen),
            cached: count(&self.cached),
        }
    }
}

/// The lines already queued, without waiting for more.
fn drain(lines: &mut mpsc::Receiver<String>) -> Vec<String> {
    std::iter::from_fn(|| lines.try_recv().ok()).collect()
}

async fn build(builder: &Builder, prepared: Prepared, lines: mpsc::Sender<String>) -> Ran {
    let (client, request) = match request(builder, &prepared, &lines).await {
        Ok(ready) => ready,
        Err(err) => {
            return Ran {
                result: Err(err),
                steps: None,
            }
        }
    };
    let (events, mut events_rx) = mpsc::channel(QUEUE);
    let rendered = lines.clone();
    let forward = tokio::spawn(async move {
        let mut counter = StepCounter::default();
        while let Some(event) = events_rx.recv().await {
            counter.observe(&event);
            if let Some(text) = buildkit::render(&event) {
                if rendered.send(text).await.is_err() {
                    break;
                }
            }
        }
        (counter.steps(), counter.running())
    });
    let timeout = builder.settings.build_timeout;
    let result = tokio::time::timeout(timeout, client.build(request, events)).await;
    let (steps, running) = match forward.await {
        Ok((steps, running)) => (Some(steps), running),
        Err(_) => (None, None),
    };
    let (files, bytes) = prepared.archive.sent();
    let _ = lines
        .send(line(&format!("context: sent {files} files, {bytes} bytes")))
        .await;
    drop(prepared);
    let result = match result {
        Ok(result) => result.map_err(BuildError::from),
        Err(_) => Err(BuildError::Timeout {
            secs: timeout.as_secs(),
            running,
        }),
    };
    Ran { result, steps }
}

/// The client and the BuildKit request for `prepared`.
async fn request(
    builder: &Builder,
    prepared: &Prepared,
    lines: &mpsc::Sender<String>,
) -> Result<(buildkit::Client, BuildRequest), BuildError> {
    let config = &prepared.config;
    if !config.unknown_fields.is_empty() {
        let _ = lines
            .send(line(&format!(
                "ignoring unknown config fields: {}",
                config.unknown_fields.join(", ")
            )))
            .await;
    }
    let client = builder.client().await?;
    let path = builder.settings.docker_config.clone();
    let registry_auth = tokio::task::spawn_blocking(move || DockerConfig::load(&path))
        .await
        .map_err(|e| BuildError::Internal {
            message: e.to_string(),
        })?
        .map_err(|e| BuildError::Internal {
            message: e.to_string(),
        })?;
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
    if let Some(to) = request.cache.export.as_ref() {
        if matches!(builder.settings.buildkit, buildkit::Address::Docker(_)) {
            let _ = lines
                .send(line(&format!(
                    "cache: a Docker Engine exports only the inline cache, so the cache travels in the pushed image, not in {to}"
                )))
                .await;
        }
    }
    // One key per tenant (by default the image repository): a rebuild of a function sends only
    // what changed, and no two tenants share a base. Safe because the index derives each file's
    // mtime nanoseconds from its content.
    request.shared_key = format!("function-builder:{}", prepared.decision.tenant);
    Ok((client, request))
}
