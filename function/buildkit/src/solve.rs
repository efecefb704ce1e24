//! A Dockerfile build: session, Solve and Status run together; dropping the future cancels the
//! solve and ends the session on every path.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dockerconfig::DockerConfig;
use crate::failure::{registry_fault, Details};
use crate::progress::{Event, Tracker};
use crate::proto::control::{
    CacheOptions, CacheOptionsEntry, Exporter, SolveRequest, StatusRequest,
};
use crate::session::{self, Services};
use crate::{Address, BuildkitError, Client, SourceTree};

/// How long Status may stay silent after Solve returned before we stop reading it (Go's 5 s).
const STATUS_DRAIN: Duration = Duration::from_secs(5);
/// Log lines kept per step, for the error of a failing step.
const FAILED_STEP_LINES: usize = 20;

/// The network `RUN` steps get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// BuildKit's default (the worker's network; on a dockerd without a bridge, `RUN` fails with
    /// "network bridge not found").
    #[default]
    Default,
    /// No network at all: for untrusted code, and on a dockerd without a bridge.
    None,
}

/// What happens to the built image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Push to its registry under this reference.
    Push(String),
    /// Build and tag it, but do not push (buildkitd keeps it only in its cache; a Docker Engine
    /// stores it in its image store).
    Tag(String),
    /// Build only.
    Discard,
}

/// A Dockerfile build.
pub struct BuildRequest {
    /// The build context; also where the Dockerfile is read from.
    pub context: Arc<dyn SourceTree>,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// Target platforms (`linux/amd64`); empty for the daemon's own.
    pub platforms: Vec<String>,
    /// Stage to build; `None` for the last.
    pub target: Option<String>,
    /// Network of `RUN` steps.
    pub network: NetworkMode,
    /// What to do with the image.
    pub output: Output,
    /// The session's shared key: the daemon sends only what changed since the last build under
    /// the same key, judged by size, mode and mtime, never content.
    pub shared_key: String,
    /// Registry credentials for pulls and the push.
    pub registry_auth: Arc<DockerConfig>,
    /// Secrets for `RUN --mount=type=secret,id=…`.
    pub secrets: HashMap<String, Bytes>,
    /// Frontend attributes set as given, last (over build args of the same name): e.g.
    /// `cmdline`, which stops the Dockerfile frontend from forwarding to a `# syntax=` image.
    pub frontend_attrs: BTreeMap<String, String>,
    /// The registry layer cache to import and export.
    pub cache: Cache,
    /// Registries (`host[:port]`) reached over plain HTTP or unverified TLS by buildkitd's
    /// image exporter and cache (`registry.insecure=true`); a Docker Engine goes by its own
    /// `insecure-registries`.
    pub insecure_registries: Vec<String>,
}

/// A build's registry layer cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// Cache refs to import (`type=registry`), on every daemon.
    pub import: Vec<String>,
    /// The ref to export the cache to. On buildkitd: `type=registry` with `mode=max` (every
    /// stage's layers) and `ignore-error=true` (a failed cache export never fails the build).
    /// A Docker Engine's BuildKit exports only the `inline` cache: there the cache travels in
    /// the pushed image, so the image itself is imported too.
    pub export: Option<String>,
}

impl BuildRequest {
    /// A build of `context/Dockerfile` with defaults everywhere else.
    pub fn new(context: Arc<dyn SourceTree>, output: Output) -> Self {
        Self {
            context,
            dockerfile: "Dockerfile".to_owned(),
            build_args: BTreeMap::new(),
            platforms: Vec::new(),
            target: None,
            network: NetworkMode::Default,
            output,
            shared_key: String::new(),
            registry_auth: Arc::new(DockerConfig::default()),
            secrets: HashMap::new(),
            frontend_attrs: BTreeMap::new(),
            cache: Cache::default(),
            insecure_registries: Vec::new(),
        }
    }
}

/// What a successful build produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOutcome {
    /// The pushed manifest's digest (`sha256:…`) when the image was pushed.
    pub digest: Option<String>,
    /// The daemon's exporter response (e.g. `containerimage.digest`, `image.name`).
    pub exporter_response: HashMap<String, String>,
}

/// Aborts a spawned task when dropped, so no path leaves it running.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// Runs `req` and streams its progress to `events` as it happens. Dropping the returned
    /// future cancels the build: the Solve call is reset and the session closed.
    ///
    /// # Errors
    /// [`BuildkitError::Build`] when the build itself fails (with the failing step's output),
    /// [`BuildkitError::Registry`] when a registry could not be reached or refused the push (or a
    /// pull), others when the daemon misbehaves or is gone.
    pub async fn build(
        &self,
        req: BuildRequest,
        events: mpsc::Sender<Event>,
    ) -> Result<BuildOutcome, BuildkitError> {
        let is_docker = matches!(self.address, Address::Docker(_));
        let mut sources: HashMap<String, Arc<dyn SourceTree>> = HashMap::new();
        sources.insert("context".to_owned(), Arc::clone(&req.context));
        sources.insert("dockerfile".to_owned(), Arc::clone(&req.context));
        let services = Services {
            sources,
            auth: Arc::clone(&req.registry_auth),
            secrets: req.secrets.clone(),
        };
        let session = session::start(self.control.clone(), &req.shared_key, services);

        let build_ref = crate::id::new();
        let solve_request = solve_request(&req, &build_ref, session.id(), is_docker);
        let failures = Arc::new(std::sync::Mutex::new(FailedSteps::default()));
        let push_events = events.clone();
        let mut status = AbortOnDrop(tokio::spawn(follow_status(
            self.clone(),
            build_ref.clone(),
            events,
            Arc::clone(&failures),
        )));

        let solved = self.control.clone().solve(solve_request).await;
        // Let the status stream deliver the last updates (the failing step's log among them).
        let _ = tokio::time::timeout(STATUS_DRAIN, &mut status.0).await;
        drop(status);

        let response = match solved {
            Ok(response) => response.into_inner(),
            Err(status) => {
                drop(session);
                return Err(solve_error(self, status, &failures));
            }
        };
        let exporter_response: HashMap<String, String> =
            response.exporter_response.into_iter().collect();
        let digest = match (&req.output, &self.address) {
            (Output::Push(image), Address::Docker(socket)) => {
                drop(session);
                // The Engine's push is not part of the solve, so it has no step of its own in
                // the status stream: it gets one here, so logs show where the time went.
                let step = PushStep::start(push_events, image).await;
                let pushed = crate::push::push(socket, image, Arc::clone(&req.registry_auth)).await;
                step.end(pushed.as_ref().err()).await;
                Some(pushed?)
            }
            (Output::Push(_), _) => exporter_response.get("containerimage.digest").cloned(),
            _ => None,
        };
        Ok(BuildOutcome {
            digest,
            exporter_response,
        })
    }
}

fn solve_request(
    req: &BuildRequest,
    build_ref: &str,
    session_id: &str,
    is_docker: bool,
) -> SolveRequest {
    let mut attrs = HashMap::new();
    attrs.insert("filename".to_owned(), req.dockerfile.clone());
    for (name, value) in &req.build_args {
        attrs.insert(format!("build-arg:{name}"), value.clone());
    }
    if !req.platforms.is_empty() {
        attrs.insert("platform".to_owned(), req.platforms.join(","));
    }
    if let Some(target) = &req.target {
        attrs.insert("target".to_owned(), target.clone());
    }
    if req.network == NetworkMode::None {
        attrs.insert("force-network-mode".to_owned(), "none".to_owned());
    }
    for (name, value) in &req.frontend_attrs {
        attrs.insert(name.clone(), value.clone());
    }
    let exporter = match (&req.output, is_docker) {
        // A Docker Engine's own image store; its push goes through the Engine API afterwards.
        (Output::Push(image) | Output::Tag(image), true) => Some(Exporter {
            r#type: "moby".to_owned(),
            attrs: HashMap::from([("name".to_owned(), image.clone())]),
        }),
        (Output::Push(image), false) => Some(Exporter {
            r#type: "image".to_owned(),
            attrs: registry_attrs(req, image, &[("name", image), ("push", "true")]),
        }),
        (Output::Tag(image), false) => Some(Exporter {
            r#type: "image".to_owned(),
            attrs: HashMap::from([
                ("name".to_owned(), image.clone()),
                ("push".to_owned(), "false".to_owned()),
            ]),
        }),
        (Output::Discard, _) => None,
    };
    let cache = cache_options(req, is_docker);
    if !cache.imports.is_empty() {
        // The Dockerfile frontend reads its imports from this attribute, as BuildKit's own
        // client sets it: `[{"Type":"registry","Attrs":{"ref":…}}]`.
        let json: Vec<serde_json::Value> = cache
            .imports
            .iter()
            .map(|i| serde_json::json!({ "Type": i.r#type, "Attrs": i.attrs }))
            .collect();
        attrs.insert(
            "cache-imports".to_owned(),
            serde_json::Value::Array(json).to_string(),
        );
    }
    SolveRequest {
        r#ref: build_ref.to_owned(),
        session: session_id.to_owned(),
        frontend: "dockerfile.v0".to_owned(),
        frontend_attrs: attrs,
        // Old daemons read only the deprecated fields, new ones prefer the list: send both.
        exporter_deprecated: exporter
            .as_ref()
            .map(|e| e.r#type.clone())
            .unwrap_or_default(),
        exporter_attrs_deprecated: exporter
            .as_ref()
            .map(|e| e.attrs.clone())
            .unwrap_or_default(),
        exporters: exporter.into_iter().collect(),
        cache: (!cache.exports.is_empty() || !cache.imports.is_empty()).then_some(cache),
        ..SolveRequest::default()
    }
}

/// `pairs` as exporter or cache attributes, with `registry.insecure=true` when `reference`'s
/// registry is one of the request's insecure ones.
fn registry_attrs(
    req: &BuildRequest,
    reference: &str,
    pairs: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut attrs: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let host = crate::push::registry_host(reference);
    if req.insecure_registries.iter().any(|h| h == host) {
        attrs.insert("registry.insecure".to_owned(), "true".to_owned());
    }
    attrs
}

/// The request's cache as BuildKit's cache options, for the daemon at hand (see [`Cache`]).
fn cache_options(req: &BuildRequest, is_docker: bool) -> CacheOptions {
    let registry = |reference: &str, extra: &[(&str, &str)]| CacheOptionsEntry {
        r#type: "registry".to_owned(),
        attrs: registry_attrs(req, reference, &[&[("ref", reference)], extra].concat()),
    };
    let mut options = CacheOptions::default();
    match (&req.cache.export, is_docker) {
        (None, _) => {}
        (Some(_), true) => {
            options.exports.push(CacheOptionsEntry {
                r#type: "inline".to_owned(),
                attrs: HashMap::new(),
            });
            if let Output::Push(image) = &req.output {
                options.imports.push(registry(image, &[]));
            }
        }
        (Some(reference), false) => options.exports.push(registry(
            reference,
            &[("mode", "max"), ("ignore-error", "true")],
        )),
    }
    // On a Docker Engine nothing is ever exported to the export ref: importing it only costs a
    // registry round trip.
    let never_written = req.cache.export.as_ref().filter(|_| is_docker);
    for reference in &req.cache.import {
        let known = options
            .imports
            .iter()
            .any(|i| i.attrs.get("ref") == Some(reference));
        if Some(reference) != never_written && !known {
            options.imports.push(registry(reference, &[]));
        }
    }
    options
}

/// A step of our own for the Engine push, shaped like the daemon's steps.
struct PushStep {
    events: mpsc::Sender<Event>,
    name: String,
    started: std::time::Instant,
}

impl PushStep {
    async fn start(events: mpsc::Sender<Event>, image: &str) -> Self {
        let name = format!("pushing {image}");
        let _ = events
            .send(Event::VertexStarted {
                digest: "push".to_owned(),
                name: name.clone(),
                at: std::time::SystemTime::now(),
            })
            .await;
        Self {
            events,
            name,
            started: std::time::Instant::now(),
        }
    }

    async fn end(self, error: Option<&BuildkitError>) {
        let (digest, name, at) = ("push".to_owned(), self.name, std::time::SystemTime::now());
        let event = match error {
            None => Event::VertexCompleted {
                digest,
                name,
                at,
                duration: self.started.elapsed(),
            },
            Some(err) => Event::VertexFailed {
                digest,
                name,
                at,
                error: err.to_string(),
                canceled: false,
            },
        };
        let _ = self.events.send(event).await;
    }
}

/// Reads the build's status stream into `events`, remembering the output of steps that fail.
async fn follow_status(
    client: Client,
    build_ref: String,
    events: mpsc::Sender<Event>,
    failures: Arc<std::sync::Mutex<FailedSteps>>,
) {
    let mut stream = match client
        .control
        .clone()
        .status(StatusRequest { r#ref: build_ref })
        .await
    {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            tracing::warn!(
                message = status.message(),
                "could not follow the build's status"
            );
            return;
        }
    };
    let mut tracker = Tracker::new();
    // Bounded: a slow reader holds the status stream back instead of queueing without limit.
    let deliver = |batch: Vec<Event>| {
        let (events, failures) = (&events, &failures);
        async move {
            for event in batch {
                failures
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .observe(&event);
                // A reader that went away still lets the build finish.
                let _ = events.send(event).await;
            }
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(update)) => deliver(tracker.update(update.into())).await,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(
                    message = status.message(),
                    "status stream ended with an error"
                );
                break;
            }
        }
    }
    deliver(tracker.finish()).await;
}

/// The last lines of output of each step, and the steps that failed.
#[derive(Default)]
struct FailedSteps {
    output: HashMap<String, VecDeque<String>>,
    failed: Option<(String, Vec<String>)>,
}

impl FailedSteps {
    fn observe(&mut self, event: &Event) {
        match event {
            Event::Log { vertex, line, .. } => {
                let lines = self.output.entry(vertex.clone()).or_default();
                if lines.len() == FAILED_STEP_LINES {
                    lines.pop_front();
                }
                lines.push_back(line.clone());
            }
            Event::VertexFailed {
                digest,
                name,
                canceled: false,
                ..
            } if self.failed.is_none() => {
                let lines = self
                    .output
                    .remove(digest)
                    .map(Vec::from)
                    .unwrap_or_default();
                self.failed = Some((name.clone(), lines));
            }
            _ => {}
        }
    }
}

/// What a failed Solve means: the daemon gone, a registry's fault, or the build's own failure.
fn solve_error(
    client: &Client,
    status: tonic::Status,
    failures: &std::sync::Mutex<FailedSteps>,
) -> BuildkitError {
    let unavailable = |message: String| BuildkitError::Unavailable {
        address: client.address.to_string(),
        message,
    };
    // A status the transport made, whatever its code (the daemon gone mid-build gives `Unknown:
    // transport error`), has the transport error as its source: the daemon did not answer.
    if let Some(source) = std::error::Error::source(&status) {
        // tonic's message is often the source's own text: say it once.
        let chain = crate::error::error_chain(source);
        let message = if chain.starts_with(status.message()) {
            chain
        } else {
            format!("{}: {chain}", status.message())
        };
        return unavailable(message);
    }
    let details = Details::of(&status);
    if !details.step_failed(status.message()) {
        if let Some(fault) = registry_fault(status.message()) {
            return BuildkitError::Registry {
                fault,
                message: status.message().to_owned(),
            };
        }
    }
    if status.code() == tonic::Code::Unavailable {
        return unavailable(status.message().to_owned());
    }
    let failed = failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .failed
        .take();
    let (step, output) = failed.map_or((None, Vec::new()), |(name, lines)| (Some(name), lines));
    BuildkitError::Build {
        message: status.message().to_owned(),
        step,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(output: Output, cache: Cache, insecure: &[&str]) -> BuildRequest {
        let mut req = BuildRequest::new(Arc::new(crate::DirTree::new("/nonexistent")), output);
        req.cache = cache;
        req.insecure_registries = insecure.iter().map(|s| (*s).to_owned()).collect();
        req
    }

    fn entry(kind: &str, attrs: &[(&str, &str)]) -> CacheOptionsEntry {
        CacheOptionsEntry {
            r#type: kind.to_owned(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn buildkitd_exports_a_max_registry_cache_that_cannot_fail_the_build() {
        let cache = Cache {
            import: vec!["edge:5000/c/app:1".into()],
            export: Some("edge:5000/c/app:1".into()),
        };
        let req = request(
            Output::Push("edge:5000/app:1".into()),
            cache,
            &["edge:5000"],
        );
        let solve = solve_request(&req, "ref", "session", false);
        let cache = solve.cache.unwrap();
        let insecure = ("registry.insecure", "true");
        assert_eq!(
            cache.exports,
            [entry(
                "registry",
                &[
                    ("ref", "edge:5000/c/app:1"),
                    ("mode", "max"),
                    ("ignore-error", "true"),
                    insecure
                ]
            )]
        );
        assert_eq!(
            cache.imports,
            [entry("registry", &[("ref", "edge:5000/c/app:1"), insecure])]
        );
        assert_eq!(solve.exporter_attrs_deprecated["registry.insecure"], "true");
        let imports: serde_json::Value =
            serde_json::from_str(&solve.frontend_attrs["cache-imports"]).unwrap();
        assert_eq!(imports[0]["Type"], "registry");
        assert_eq!(imports[0]["Attrs"]["ref"], "edge:5000/c/app:1");
    }

    #[test]
    fn a_docker_engine_exports_inline_and_imports_the_image_itself() {
        let cache = Cache {
            import: vec!["r.example/c/app:1".into(), "r.example/other:1".into()],
            export: Some("r.example/c/app:1".into()),
        };
        let req = request(Output::Push("r.example/app:1".into()), cache, &[]);
        let cache = solve_request(&req, "ref", "session", true).cache.unwrap();
        assert_eq!(cache.exports, [entry("inline", &[])]);
        assert_eq!(
            cache.imports,
            [
                entry("registry", &[("ref", "r.example/app:1")]),
                entry("registry", &[("ref", "r.example/other:1")])
            ]
        );
        let none = request(Output::Discard, Cache::default(), &[]);
        let solve = solve_request(&none, "ref", "session", true);
        assert_eq!(solve.cache, None);
        assert!(!solve.frontend_attrs.contains_key("cache-imports"));
    }
}
