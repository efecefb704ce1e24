//! A Dockerfile build request, and its Solve request: frontend attributes, the exporter, and the
//! registry cache as the daemon at hand takes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::access::{Access, ReadPolicy};
use crate::dockerconfig::DockerConfig;
use crate::proto::control::{CacheOptions, CacheOptionsEntry, Exporter, SolveRequest};
use crate::sourcepolicy::RemoteSources;
use crate::{ImageRef, SourceTree};

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
    Push(ImageRef),
    /// Build and tag it, but do not push (buildkitd keeps it only in its cache; a Docker Engine
    /// stores it in its image store).
    Tag(ImageRef),
    /// Build only.
    Discard,
}

/// SLSA provenance attached to the image (BuildKit's `attest:provenance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// The build's inputs and frontend options, without build args, labels or secrets' ids.
    Min,
    /// All of `Min`, with the build args, the LLB definition and each step's sources.
    Max,
}

impl Provenance {
    /// Its `mode=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// In-toto attestations of the image: BuildKit v0.11+ exports them in the image's index, one
/// attestation manifest per platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attestations {
    /// SLSA provenance, if asked for.
    pub provenance: Option<Provenance>,
    /// The SBOM generator image (BuildKit's SBOM scanning protocol), if an SBOM is asked for.
    pub sbom: Option<ImageRef>,
}

impl Attestations {
    /// Whether any is asked for.
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom.is_some()
    }
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
    /// Longest the build may take; on expiry it is canceled and answers
    /// [`BuildkitError::Timeout`] naming the steps that were running.
    pub timeout: Option<Duration>,
    /// Which remote sources (`ADD <url>`, git) the daemon may fetch.
    pub remote_sources: RemoteSources,
    /// Which images the build may pull and push with `registry_auth`'s credentials.
    pub read_policy: ReadPolicy,
    /// Attestations to attach to the pushed image (buildkitd v0.11+ only).
    pub attestations: Attestations,
    /// `SOURCE_DATE_EPOCH` (seconds) of a reproducible build: the image's creation time, its
    /// history's, and every layer file's mtime clamped to it (`rewrite-timestamp`, buildkitd
    /// v0.13+).
    pub source_date_epoch: Option<u64>,
    /// The daemon's BuildKit version as the caller already asked it ([`Client::version`]:
    /// `Some(None)` for a daemon without `Info`), so the build does not ask again; `None`: the
    /// build asks where it needs to.
    ///
    /// [`Client::version`]: crate::Client::version
    pub daemon_version: Option<Option<String>>,
    /// OCI annotations of the pushed image's manifests (and of its index, when there is one), on
    /// buildkitd: a Docker Engine's moby exporter writes none.
    pub annotations: BTreeMap<String, String>,
}

/// A build's registry layer cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// Cache refs to import (`type=registry`), on every daemon.
    pub import: Vec<ImageRef>,
    /// The ref to export the cache to. On buildkitd: `type=registry` with `mode=max` (every
    /// stage's layers) and `ignore-error=true` (a failed cache export never fails the build).
    /// A Docker Engine's BuildKit exports only the `inline` cache: there the cache travels in
    /// the pushed image, so the image itself is imported too.
    pub export: Option<ImageRef>,
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
            timeout: None,
            remote_sources: RemoteSources::Any,
            read_policy: ReadPolicy::Any,
            attestations: Attestations::default(),
            source_date_epoch: None,
            daemon_version: None,
            annotations: BTreeMap::new(),
        }
    }
}

pub(crate) fn solve_request(
    req: &BuildRequest,
    build_ref: &str,
    session_id: &str,
    is_docker: bool,
    access: &Access,
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
    if let Some(mode) = req.attestations.provenance {
        attrs.insert(
            "attest:provenance".to_owned(),
            format!("mode={}", mode.as_str()),
        );
    }
    if let Some(generator) = &req.attestations.sbom {
        attrs.insert("attest:sbom".to_owned(), format!("generator={generator}"));
    }
    if let Some(epoch) = req.source_date_epoch {
        attrs.insert("build-arg:SOURCE_DATE_EPOCH".to_owned(), epoch.to_string());
    }
    for (name, value) in &req.frontend_attrs {
        attrs.insert(name.clone(), value.clone());
    }
    let exporter = match (&req.output, is_docker) {
        // A Docker Engine's own image store; its push goes through the Engine API afterwards.
        (Output::Push(image) | Output::Tag(image), true) => Some(Exporter {
            r#type: "moby".to_owned(),
            attrs: HashMap::from([("name".to_owned(), image.to_string())]),
        }),
        (Output::Push(image), false) => Some(Exporter {
            r#type: "image".to_owned(),
            attrs: image_attrs(
                req,
                registry_attrs(
                    req,
                    image,
                    &[("name", &image.to_string()), ("push", "true")],
                ),
            ),
        }),
        (Output::Tag(image), false) => Some(Exporter {
            r#type: "image".to_owned(),
            attrs: image_attrs(
                req,
                HashMap::from([
                    ("name".to_owned(), image.to_string()),
                    ("push".to_owned(), "false".to_owned()),
                ]),
            ),
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
        source_policy: crate::sourcepolicy::build(&req.remote_sources, access),
        ..SolveRequest::default()
    }
}

/// buildkitd's image exporter attributes: `attrs`, with the request's annotations and, for a
/// reproducible build, `rewrite-timestamp`.
fn image_attrs(req: &BuildRequest, mut attrs: HashMap<String, String>) -> HashMap<String, String> {
    // The index too where attestations make one (an OCI index then, whatever the platforms).
    // Not a plain multi-platform list: an index annotation makes BuildKit write OCI media types
    // where it would write Docker's list, and it refuses one on a lone manifest.
    let index = req.attestations.any();
    for (key, value) in &req.annotations {
        attrs.insert(format!("annotation.{key}"), value.clone());
        if index {
            attrs.insert(format!("annotation-index.{key}"), value.clone());
        }
    }
    if req.source_date_epoch.is_some() {
        attrs.insert("rewrite-timestamp".to_owned(), "true".to_owned());
    }
    attrs
}

/// `pairs` as exporter or cache attributes, with `registry.insecure=true` when `reference`'s
/// registry is one of the request's insecure ones.
fn registry_attrs(
    req: &BuildRequest,
    reference: &ImageRef,
    pairs: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut attrs: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let host = reference.registry();
    if req
        .insecure_registries
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
    {
        attrs.insert("registry.insecure".to_owned(), "true".to_owned());
    }
    attrs
}

/// The request's cache as BuildKit's cache options, for the daemon at hand (see [`Cache`]).
fn cache_options(req: &BuildRequest, is_docker: bool) -> CacheOptions {
    let registry = |reference: &ImageRef, extra: &[(&str, &str)]| CacheOptionsEntry {
        r#type: "registry".to_owned(),
        attrs: registry_attrs(
            req,
            reference,
            &[&[("ref", reference.to_string().as_str())], extra].concat(),
        ),
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
            .any(|i| i.attrs.get("ref") == Some(&reference.to_string()));
        if Some(reference) != never_written && !known {
            options.imports.push(registry(reference, &[]));
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> ImageRef {
        text.parse().unwrap()
    }

    fn open() -> Access {
        Access::new(ReadPolicy::Any, Arc::default(), false, &[])
    }

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
            import: vec![r("edge:5000/c/app:1")],
            export: Some(r("edge:5000/c/app:1")),
        };
        let req = request(Output::Push(r("edge:5000/app:1")), cache, &["edge:5000"]);
        let solve = solve_request(&req, "ref", "session", false, &open());
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
            import: vec![r("r.example/c/app:1"), r("r.example/other:1")],
            export: Some(r("r.example/c/app:1")),
        };
        let req = request(Output::Push(r("r.example/app:1")), cache, &[]);
        let cache = solve_request(&req, "ref", "session", true, &open())
            .cache
            .unwrap();
        assert_eq!(cache.exports, [entry("inline", &[])]);
        assert_eq!(
            cache.imports,
            [
                entry("registry", &[("ref", "r.example/app:1")]),
                entry("registry", &[("ref", "r.example/other:1")])
            ]
        );
        let none = request(Output::Discard, Cache::default(), &[]);
        let solve = solve_request(&none, "ref", "session", true, &open());
        assert_eq!(solve.cache, None);
        assert!(!solve.frontend_attrs.contains_key("cache-imports"));
    }
}
