//! The Builder API's wire format, the one definition the builder and the CLI share: the names in
//! the request tar, the request config, and the answer (one JSON object, or each NDJSON line).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The request config's name at the root of the tar.
pub const CONFIG_NAME: &str = "com.openfaas.docker.config";
/// Sealed build secrets' name at the root of the tar (faas-cli `build_secrets`).
pub const SECRETS_NAME: &str = "com.openfaas.secrets";
/// The folder of the tar that holds the build context.
pub const CONTEXT_DIR: &str = "context";
/// The `Accept` value that asks for NDJSON progress.
pub const NDJSON: &str = "application/x-ndjson";

/// `com.openfaas.docker.config` as sent. Fields are in the order serde_json writes a map's keys
/// (sorted), so a config serialises to the same bytes as the official clients' maps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Dockerfile `ARG`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_args: Option<BTreeMap<String, String>>,
    /// The registry layer cache: refs to import from, and one to export to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    /// The image reference to push (or only tag, with `skip_push`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Target platforms, e.g. `linux/arm64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    /// SLSA provenance to attach: `min`, `max` or `none`; absent: the builder's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    /// Whether the build is reproducible (`SOURCE_DATE_EPOCH`, layer timestamps rewritten);
    /// absent: the builder's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproducible: Option<bool>,
    /// An SBOM to attach: `true` (the builder's generator), `false`, or a generator image;
    /// absent: the builder's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<Sbom>,
    /// Build without pushing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_push: Option<bool>,
    /// The reproducible build's `SOURCE_DATE_EPOCH` (seconds); absent: the newest mtime of the
    /// context. Implies `reproducible`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<u64>,
    /// Fields this version does not know: kept, so the builder can list them in the log.
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// `"sbom"` of a config: whether to attach one, or the generator image that makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected true, false or a generator image reference"
)]
pub enum Sbom {
    /// With the builder's generator, or none.
    Enabled(bool),
    /// With this generator image (BuildKit's SBOM scanning protocol).
    Generator(String),
}

/// `"cache": {"from": ["ref", …], "to": "ref"}` of a config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache refs to import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// The cache ref to export to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Where a build stands, in an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// An NDJSON line with more log; more lines follow.
    #[default]
    InProgress,
    /// Built (and pushed).
    Success,
    /// Refused or failed; `error` says why.
    Failed,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

/// The answer: the whole JSON object, or one NDJSON line. Every error body of the builder is one
/// too (`{"status":"failed","error":...}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Log lines, `<RFC3339> <text>`: all of them (JSON), or the new ones (an NDJSON line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<String>>,
    /// The image built.
    #[serde(default)]
    pub image: String,
    /// Where the build stands.
    pub status: Status,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds since the request arrived.
    #[serde(default)]
    pub duration: f64,
    /// The pushed manifest's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How many Dockerfile steps the build had and how many came from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Steps>,
    /// The BuildKit daemon that ran the build, by its stable name (`buildkitd-0`), once one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<String>,
    /// `sha256:…` of the signed request body: the pushed image's `com.openfaas.build.request`
    /// annotation, where the daemon writes annotations.
    #[serde(
        rename = "requestDigest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_digest: Option<String>,
    /// Digests of the attestation manifests pushed in the image's index, one per platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<String>,
}

/// A build's Dockerfile steps (`[2/3] RUN …`), not BuildKit's own (`[internal] …`, exporting,
/// pushing): how many there were and how many came from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    /// Steps the build had.
    pub total: u32,
    /// Of those, steps whose result came from the cache.
    pub cached: u32,
}

impl From<buildkit::Steps> for Steps {
    fn from(steps: buildkit::Steps) -> Self {
        Self {
            total: steps.total,
            cached: steps.cached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_serialises_as_the_clients_maps_do() {
        let config = Config {
            image: Some("r/a:1".into()),
            build_args: Some(BTreeMap::from([("K".into(), "v".into())])),
            ..Config::default()
        };
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"buildArgs":{"K":"v"},"image":"r/a:1"}"#
        );
        let back: Config = serde_json::from_str(r#"{"image":"x","later":1}"#).unwrap();
        assert_eq!(back.unknown.keys().collect::<Vec<_>>(), ["later"]);
    }

    #[test]
    fn reports_read_back_including_error_bodies_and_unknown_statuses() {
        let line: Report = serde_json::from_str(
            r#"{"status":"in_progress","log":["a"],"image":"i","duration":1.5}"#,
        )
        .unwrap();
        assert_eq!(line.status, Status::InProgress);
        let err: Report =
            serde_json::from_str(r#"{"status":"failed","error":"no route for GET /x"}"#).unwrap();
        assert_eq!(err.error.as_deref(), Some("no route for GET /x"));
        let odd: Report = serde_json::from_str(r#"{"status":"queued"}"#).unwrap();
        assert_eq!(odd.status, Status::Unknown);
        let report = Report {
            status: Status::Success,
            digest: Some("sha256:00".into()),
            ..Report::default()
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"image":"","status":"success","duration":0.0,"digest":"sha256:00"}"#
        );
    }
}
