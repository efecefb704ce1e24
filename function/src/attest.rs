//! What a build attests, and whether it is reproducible: the config's asks over the builder's
//! defaults, settled at intake (a 400 or 403 before any daemon is called), then held against the
//! daemon that runs the build (a 422 where it cannot).

use buildkit::{Attestations, ImageRef, Provenance};

use crate::buildconfig::{BuildConfig, ConfigError, SbomAsk};
use crate::policy::{Policy, PolicyError};

/// BuildKit's own default SBOM generator (`frontend/attestations/parse.go`).
pub(crate) const DEFAULT_SBOM_GENERATOR: &str = "docker.io/docker/buildkit-syft-scanner:stable-1";
/// The image annotation naming the signed request body a build came from.
pub(crate) const REQUEST_ANNOTATION: &str = "com.openfaas.build.request";

/// The builder-wide defaults a config may override (`provenance`, `sbom`, `sbom_generator`,
/// `reproducible`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Provenance for every build whose config does not say.
    pub provenance: Option<Provenance>,
    /// An SBOM for every build whose config does not say.
    pub sbom: bool,
    /// The generator of an SBOM asked for without one: the operator's choice, allowed as the
    /// frontends of `allowed_frontends` are.
    pub sbom_generator: ImageRef,
    /// Reproducible builds for every config that does not say.
    pub reproducible: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            provenance: None,
            sbom: false,
            sbom_generator: DEFAULT_SBOM_GENERATOR.parse().expect("a valid reference"),
            reproducible: false,
        }
    }
}

/// What one build asks of the daemon besides the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) attestations: Attestations,
    /// `SOURCE_DATE_EPOCH` of a reproducible build.
    pub(crate) source_date_epoch: Option<u64>,
}

/// Why a settled ask cannot be asked here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AttestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Settles `config`'s asks over `defaults`. A reproducible build's date is, in order: the
/// config's `sourceDateEpoch`, its `SOURCE_DATE_EPOCH` build arg, the newest mtime of the
/// context (`newest_mtime`, seconds).
///
/// # Errors
/// [`ConfigError`] for a `SOURCE_DATE_EPOCH` build arg that is no date or contradicts
/// `sourceDateEpoch`; [`PolicyError::SbomGenerator`] for a generator outside `allowed_frontends`.
pub(crate) fn settle(
    config: &BuildConfig,
    defaults: &Defaults,
    policy: &Policy,
    newest_mtime: u64,
) -> Result<Asked, AttestError> {
    let provenance = config.provenance.unwrap_or(defaults.provenance);
    let sbom = match config.sbom.as_ref() {
        None if defaults.sbom => Some(defaults.sbom_generator.clone()),
        None | Some(SbomAsk::Off) => None,
        Some(SbomAsk::Default) => Some(defaults.sbom_generator.clone()),
        Some(SbomAsk::Generator(image)) => {
            let ours = image.repository() == defaults.sbom_generator.repository();
            if !ours && !policy.allows_frontend(image) {
                return Err(PolicyError::SbomGenerator {
                    image: image.given().to_owned(),
                    allowed: policy.frontends_named(),
                }
                .into());
            }
            Some(image.clone())
        }
    };
    let reproducible =
        config.source_date_epoch.is_some() || config.reproducible.unwrap_or(defaults.reproducible);
    let source_date_epoch = if reproducible {
        Some(epoch(config, newest_mtime)?)
    } else {
        None
    };
    Ok(Asked {
        attestations: Attestations { provenance, sbom },
        source_date_epoch,
    })
}

fn epoch(config: &BuildConfig, newest_mtime: u64) -> Result<u64, ConfigError> {
    let arg = match config.build_args.get("SOURCE_DATE_EPOCH") {
        Some(text) => Some(text.trim().parse::<u64>().map_err(|_| ConfigError::Epoch {
            value: text.clone(),
        })?),
        None => None,
    };
    match (config.source_date_epoch, arg) {
        (Some(given), Some(arg)) if given != arg => Err(ConfigError::EpochConflict { given, arg }),
        (Some(given), _) => Ok(given),
        (None, Some(arg)) => Ok(arg),
        (None, None) => Ok(newest_mtime),
    }
}

/// What `asked` needs that the daemon, of BuildKit `version` (`None`: it answers no Info, as a
/// Docker Engine 20.10's does not), lacks: each feature with the release that brought it.
pub(crate) fn lacking(
    asked: &Asked,
    version: Option<&str>,
) -> Option<(&'static str, &'static str)> {
    let release = version.and_then(release);
    let below = |needed: (u64, u64)| match (version, release) {
        (None, _) => true,
        // A version we cannot read (a development build): let the daemon say.
        (Some(_), None) => false,
        (Some(_), Some(have)) => have < needed,
    };
    if asked.attestations.any() && below((0, 11)) {
        return Some(("attach attestations (provenance, sbom)", "v0.11"));
    }
    if asked.source_date_epoch.is_some() && below((0, 13)) {
        return Some((
            "rewrite layer timestamps for a reproducible build (reproducible, sourceDateEpoch)",
            "v0.13",
        ));
    }
    None
}

/// `v0.24.0` → `(0, 24)`.
fn release(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> BuildConfig {
        BuildConfig::parse(json.as_bytes()).unwrap()
    }

    fn settled(json: &str, defaults: &Defaults) -> Result<Asked, String> {
        settle(&config(json), defaults, &Policy::default(), 1_600_000_000)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_config_overrides_the_builders_defaults_either_way() {
        let on = Defaults {
            provenance: Some(Provenance::Min),
            sbom: true,
            reproducible: true,
            ..Defaults::default()
        };
        let asked = settled(r#"{"image":"a/b"}"#, &on).unwrap();
        assert_eq!(asked.attestations.provenance, Some(Provenance::Min));
        assert_eq!(
            asked.attestations.sbom.unwrap().given(),
            DEFAULT_SBOM_GENERATOR
        );
        assert_eq!(asked.source_date_epoch, Some(1_600_000_000));
        let off = settled(
            r#"{"image":"a/b","provenance":"none","sbom":false,"reproducible":false}"#,
            &on,
        )
        .unwrap();
        assert_eq!(off, Asked::default());
        assert_eq!(
            settled(r#"{"image":"a/b"}"#, &Defaults::default()).unwrap(),
            Asked::default()
        );
    }

    #[test]
    fn a_reproducible_builds_date_is_the_configs_its_build_args_or_the_newest_mtime() {
        let d = Defaults::default();
        let at = |json: &str| settled(json, &d).map(|a| a.source_date_epoch);
        assert_eq!(at(r#"{"image":"a/b","sourceDateEpoch":5}"#), Ok(Some(5)));
        assert_eq!(
            at(r#"{"image":"a/b","reproducible":true,"buildArgs":{"SOURCE_DATE_EPOCH":"7"}}"#),
            Ok(Some(7))
        );
        assert_eq!(
            at(r#"{"image":"a/b","reproducible":true}"#),
            Ok(Some(1_600_000_000))
        );
        assert_eq!(
            at(r#"{"image":"a/b","sourceDateEpoch":5,"buildArgs":{"SOURCE_DATE_EPOCH":"5"}}"#),
            Ok(Some(5))
        );
        assert_eq!(
            at(r#"{"image":"a/b","sourceDateEpoch":5,"buildArgs":{"SOURCE_DATE_EPOCH":"6"}}"#),
            Err("buildArgs.SOURCE_DATE_EPOCH: 6 differs from sourceDateEpoch 5".to_owned())
        );
        assert_eq!(
            at(r#"{"image":"a/b","reproducible":true,"buildArgs":{"SOURCE_DATE_EPOCH":"soon"}}"#),
            Err(r#"buildArgs.SOURCE_DATE_EPOCH: "soon" is not a whole number of seconds since 1970"#.to_owned())
        );
        // Not reproducible: the build arg is the Dockerfile's business.
        assert_eq!(
            at(r#"{"image":"a/b","buildArgs":{"SOURCE_DATE_EPOCH":"soon"}}"#),
            Ok(None)
        );
    }

    #[test]
    fn a_callers_sbom_generator_is_allowed_as_frontends_are() {
        let d = Defaults::default();
        assert_eq!(
            settled(r#"{"image":"a/b","sbom":"evil.io/scanner:1"}"#, &d),
            Err(r#"sbom generator "evil.io/scanner:1" is not allowed by allowed_frontends (docker.io/docker/dockerfile) nor sbom_generator"#.to_owned())
        );
        let allowed = settled(r#"{"image":"a/b","sbom":"docker/dockerfile:1"}"#, &d).unwrap();
        assert_eq!(
            allowed.attestations.sbom.unwrap().given(),
            "docker/dockerfile:1"
        );
        let ours = settled(
            r#"{"image":"a/b","sbom":"docker/buildkit-syft-scanner:edge"}"#,
            &d,
        );
        assert!(ours.is_ok(), "{ours:?}");
    }

    #[test]
    fn a_daemon_lacks_what_its_release_did_not_bring() {
        let attest = Asked {
            attestations: Attestations {
                provenance: Some(Provenance::Max),
                sbom: None,
            },
            source_date_epoch: None,
        };
        let reproducible = Asked {
            source_date_epoch: Some(1),
            ..Asked::default()
        };
        assert_eq!(lacking(&attest, None).map(|l| l.1), Some("v0.11"));
        assert_eq!(
            lacking(&attest, Some("v0.10.6")).map(|l| l.1),
            Some("v0.11")
        );
        assert_eq!(lacking(&attest, Some("v0.11.0")), None);
        assert_eq!(
            lacking(&reproducible, Some("v0.12.5")).map(|l| l.1),
            Some("v0.13")
        );
        assert_eq!(lacking(&reproducible, Some("v0.24.0")), None);
        assert_eq!(lacking(&reproducible, Some("dev")), None);
        assert_eq!(lacking(&Asked::default(), None), None);
    }
}
