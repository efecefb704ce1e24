//! `com.openfaas.docker.config`: what to build, checked before BuildKit is called.

use std::collections::BTreeMap;

use buildkit::{ImageRef, Provenance, ReferenceError};

use crate::wire::{Config, Sbom, CONFIG_NAME};

/// The request's build config, its references parsed and normalised once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildConfig {
    /// Image reference to push (or only tag, with `skip_push`).
    pub(crate) image: Option<ImageRef>,
    /// Dockerfile `ARG`s.
    pub(crate) build_args: BTreeMap<String, String>,
    /// Target platforms in their normal form (`linux/arm64`), each once; empty for the daemon's
    /// own.
    pub(crate) platforms: Vec<String>,
    /// Build without pushing.
    pub(crate) skip_push: bool,
    /// Cache refs to import (`cache.from`).
    pub(crate) cache_from: Vec<ImageRef>,
    /// The cache ref to export to (`cache.to`).
    pub(crate) cache_to: Option<ImageRef>,
    /// SLSA provenance: `Some(None)` for `"none"`; `None`: the builder's default.
    pub(crate) provenance: Option<Option<Provenance>>,
    /// An SBOM; `None`: the builder's default.
    pub(crate) sbom: Option<SbomAsk>,
    /// A reproducible build; `None`: the builder's default.
    pub(crate) reproducible: Option<bool>,
    /// The reproducible build's `SOURCE_DATE_EPOCH`, if given.
    pub(crate) source_date_epoch: Option<u64>,
    /// Fields this builder does not know, listed in the log (forward compatibility).
    pub(crate) unknown_fields: Vec<String>,
}

/// What a config asks of the SBOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SbomAsk {
    /// None (`false`).
    Off,
    /// With the builder's generator (`true`).
    Default,
    /// With this generator image.
    Generator(ImageRef),
}

/// Why a config was refused (400); each names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// Not JSON of a config, or a field of the wrong type.
    #[error("{field}: {message}")]
    Json {
        /// The field's path, e.g. `buildArgs.FOO`, or the config's own name.
        field: String,
        /// serde's words.
        message: String,
    },
    /// A reference that breaks the grammar.
    #[error("{field}: {source}")]
    Reference {
        /// `image`, `cache.from[0]`, `cache.to`.
        field: String,
        source: ReferenceError,
    },
    /// A digest where the builder pushes: a digest names content, not a place to write.
    #[error("{field}: {reference:?} names a digest; name a tag to push to")]
    Digest {
        /// `image` or `cache.to`.
        field: &'static str,
        /// The reference as given.
        reference: String,
    },
    /// No image, and a push was asked for.
    #[error("image: required unless skipPush is true")]
    NoImage,
    /// A platform that is not `os/arch[/variant]`.
    #[error("platforms[{index}]: invalid platform {platform:?}, expected os/arch[/variant] such as linux/arm64")]
    Platform {
        /// Its index in the list.
        index: usize,
        /// As given.
        platform: String,
    },
    /// A provenance mode BuildKit does not have.
    #[error("provenance: {value:?} is not min, max or none")]
    Provenance {
        /// As given.
        value: String,
    },
    /// A `SOURCE_DATE_EPOCH` build arg of a reproducible build that is no date.
    #[error("buildArgs.SOURCE_DATE_EPOCH: {value:?} is not a whole number of seconds since 1970")]
    Epoch {
        /// As given.
        value: String,
    },
    /// A `SOURCE_DATE_EPOCH` build arg other than `sourceDateEpoch`.
    #[error("buildArgs.SOURCE_DATE_EPOCH: {arg} differs from sourceDateEpoch {given}")]
    EpochConflict {
        /// `sourceDateEpoch`.
        given: u64,
        /// The build arg.
        arg: u64,
    },
    /// `sourceDateEpoch` with `reproducible: false`.
    #[error("sourceDateEpoch: given, but reproducible is false; a source date makes a build reproducible")]
    NotReproducible,
    /// A platform the list already names, perhaps by another name (`linux/aarch64`).
    #[error(
        "platforms[{index}]: {platform:?} is {normal}, which platforms[{first}] names already"
    )]
    RepeatedPlatform {
        /// Its index in the list.
        index: usize,
        /// As given.
        platform: String,
        /// Its normal form.
        normal: String,
        /// The index that named it first.
        first: usize,
    },
    /// A build arg name BuildKit cannot take.
    #[error("buildArgs: invalid name {name:?}")]
    ArgName {
        /// As given.
        name: String,
    },
}

impl BuildConfig {
    /// Parses and checks the config.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field, e.g. `buildArgs.FOO: invalid type: integer 1, expected
    /// a string`, or `image: invalid reference "Foo//bar"`.
    pub(crate) fn parse(json: &[u8]) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let raw: Config = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            let field = match path.as_str() {
                "." | "?" | "" => CONFIG_NAME.to_owned(),
                _ => path,
            };
            ConfigError::Json {
                field,
                message: err.into_inner().to_string(),
            }
        })?;
        let reference = |field: String, text: &str| {
            text.parse::<ImageRef>()
                .map_err(|source| ConfigError::Reference { field, source })
        };
        let pushed = |field: &'static str, image: ImageRef| match image.digest() {
            Some(_) => Err(ConfigError::Digest {
                field,
                reference: image.given().to_owned(),
            }),
            None => Ok(image),
        };
        let cache = raw.cache.unwrap_or_default();
        let image = match raw.image.filter(|image| !image.is_empty()) {
            Some(text) => Some(pushed("image", reference("image".to_owned(), &text)?)?),
            None => None,
        };
        let skip_push = raw.skip_push.unwrap_or(false);
        if image.is_none() && !skip_push {
            return Err(ConfigError::NoImage);
        }
        let platforms = platforms(raw.platforms.unwrap_or_default())?;
        let cache_from = cache
            .from
            .iter()
            .enumerate()
            .map(|(i, text)| reference(format!("cache.from[{i}]"), text))
            .collect::<Result<_, _>>()?;
        let cache_to = match cache.to.filter(|to| !to.is_empty()) {
            Some(text) => Some(pushed(
                "cache.to",
                reference("cache.to".to_owned(), &text)?,
            )?),
            None => None,
        };
        let provenance = match raw.provenance.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some("min") => Some(Some(Provenance::Min)),
            Some("max") => Some(Some(Provenance::Max)),
            Some(other) => {
                return Err(ConfigError::Provenance {
                    value: other.to_owned(),
                })
            }
        };
        let sbom = match raw.sbom {
            None => None,
            Some(Sbom::Enabled(false)) => Some(SbomAsk::Off),
            Some(Sbom::Enabled(true)) => Some(SbomAsk::Default),
            Some(Sbom::Generator(text)) => {
                Some(SbomAsk::Generator(reference("sbom".to_owned(), &text)?))
            }
        };
        if raw.source_date_epoch.is_some() && raw.reproducible == Some(false) {
            return Err(ConfigError::NotReproducible);
        }
        let build_args = raw.build_args.unwrap_or_default();
        if let Some(name) = build_args
            .keys()
            .find(|name| name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(ConfigError::ArgName { name: name.clone() });
        }
        Ok(Self {
            image,
            build_args,
            platforms,
            skip_push,
            cache_from,
            cache_to,
            provenance,
            sbom,
            reproducible: raw.reproducible,
            source_date_epoch: raw.source_date_epoch,
            unknown_fields: raw.unknown.into_keys().collect(),
        })
    }

    /// Every cache ref the config names.
    pub(crate) fn cache_refs(&self) -> impl Iterator<Item = &ImageRef> {
        self.cache_from.iter().chain(self.cache_to.iter())
    }
}

/// The platforms in their normal form ([`crate::platform`]), each once.
fn platforms(given: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut normal: Vec<String> = Vec::with_capacity(given.len());
    for (index, platform) in given.into_iter().enumerate() {
        let Some(this) = crate::platform::normalize(&platform) else {
            return Err(ConfigError::Platform { index, platform });
        };
        if let Some(first) = normal.iter().position(|p| *p == this) {
            return Err(ConfigError::RepeatedPlatform {
                index,
                platform,
                normal: this,
                first,
            });
        }
        normal.push(this);
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        BuildConfig::parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_field_and_lists_unknown_ones() {
        let config = BuildConfig::parse(
            br#"{"image":"127.0.0.1:5000/fn/hello:1.0","buildArgs":{"A":"1"},"platforms":["linux/amd64","Linux/armhf"],"skipPush":false,"frontend":"x","ref":"y"}"#,
        )
        .unwrap();
        let image = config.image.as_ref().unwrap();
        assert_eq!(image.given(), "127.0.0.1:5000/fn/hello:1.0");
        assert_eq!(image.repository(), "127.0.0.1:5000/fn/hello");
        assert_eq!(config.build_args["A"], "1");
        assert_eq!(config.platforms, ["linux/amd64", "linux/arm/v7"]);
        assert_eq!(config.unknown_fields, ["frontend", "ref"]);
        assert!(BuildConfig::parse(br#"{"skipPush":true}"#)
            .unwrap()
            .image
            .is_none());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            error(r#"{"image":"x","buildArgs":{"FOO":1}}"#),
            "buildArgs.FOO: invalid type: integer `1`, expected a string at line 1 column 33"
        );
        assert_eq!(
            error(r#"{"image":"Foo//bar"}"#),
            r#"image: invalid reference "Foo//bar""#
        );
        assert_eq!(
            error(r#"{"buildArgs":{}}"#),
            "image: required unless skipPush is true"
        );
        assert_eq!(
            error(r#"{"image":"a/b","platforms":["linux"]}"#),
            r#"platforms[0]: invalid platform "linux", expected os/arch[/variant] such as linux/arm64"#
        );
        assert_eq!(
            error(r#"{"image":"a/b","platforms":["linux/arm64","linux/arm64/v8/x"]}"#),
            r#"platforms[1]: invalid platform "linux/arm64/v8/x", expected os/arch[/variant] such as linux/arm64"#
        );
        assert_eq!(
            error(r#"{"image":"a/b","platforms":["linux/arm64","linux/amd64","Linux/AArch64"]}"#),
            r#"platforms[2]: "Linux/AArch64" is linux/arm64, which platforms[0] names already"#
        );
        assert_eq!(
            error(r#"{"image":"a/b","skipPush":"yes"}"#),
            "skipPush: invalid type: string \"yes\", expected a boolean at line 1 column 31"
        );
        assert!(
            error("not json").starts_with("com.openfaas.docker.config: expected"),
            "{}",
            error("not json")
        );
    }

    #[test]
    fn references_are_checked_per_field_and_digests_are_not_pushed_to() {
        let digest = format!("r.io/a@sha256:{}", "ab".repeat(32));
        assert_eq!(
            error(r#"{"image":"a/b","cache":{"from":["ok/x","Bad"]}}"#),
            r#"cache.from[1]: invalid reference "Bad""#
        );
        assert_eq!(
            error(r#"{"image":"reg.io:99999/a"}"#),
            r#"image: invalid reference "reg.io:99999/a": the port is not a number from 0 to 65535"#
        );
        assert_eq!(
            error(&format!(r#"{{"image":"{digest}"}}"#)),
            format!("image: {digest:?} names a digest; name a tag to push to")
        );
        assert_eq!(
            error(&format!(r#"{{"image":"a/b","cache":{{"to":"{digest}"}}}}"#)),
            format!("cache.to: {digest:?} names a digest; name a tag to push to")
        );
        let config = BuildConfig::parse(
            format!(r#"{{"image":"a/b","cache":{{"from":["{digest}"]}}}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(config.cache_from[0].digest().map(str::len), Some(71));
        assert_eq!(
            error(r#"{"image":"a/b","buildArgs":{"A=B":"x"}}"#),
            r#"buildArgs: invalid name "A=B""#
        );
    }

    #[test]
    fn attestations_and_reproducibility_are_the_configs_or_left_to_the_builder() {
        let config = BuildConfig::parse(
            br#"{"image":"a/b","provenance":"max","sbom":"r.io/scan:1","sourceDateEpoch":1700000000}"#,
        )
        .unwrap();
        assert_eq!(config.provenance, Some(Some(Provenance::Max)));
        assert_eq!(
            config.sbom,
            Some(SbomAsk::Generator("r.io/scan:1".parse().unwrap()))
        );
        assert_eq!(config.source_date_epoch, Some(1_700_000_000));
        let config =
            BuildConfig::parse(br#"{"image":"a/b","provenance":"none","sbom":false}"#).unwrap();
        assert_eq!(
            (config.provenance, config.sbom, config.reproducible),
            (Some(None), Some(SbomAsk::Off), None)
        );
        let config = BuildConfig::parse(br#"{"image":"a/b","sbom":true}"#).unwrap();
        assert_eq!(
            (config.provenance, config.sbom),
            (None, Some(SbomAsk::Default))
        );
        assert_eq!(
            error(r#"{"image":"a/b","provenance":"full"}"#),
            r#"provenance: "full" is not min, max or none"#
        );
        assert_eq!(
            error(r#"{"image":"a/b","sbom":"Bad Ref"}"#),
            r#"sbom: invalid reference "Bad Ref""#
        );
        assert_eq!(
            error(r#"{"image":"a/b","sbom":1}"#),
            "sbom: expected true, false or a generator image reference at line 1 column 24"
        );
        assert_eq!(
            error(r#"{"image":"a/b","reproducible":false,"sourceDateEpoch":1}"#),
            "sourceDateEpoch: given, but reproducible is false; a source date makes a build reproducible"
        );
        assert!(error(r#"{"image":"a/b","sourceDateEpoch":-1}"#)
            .starts_with("sourceDateEpoch: invalid value: integer `-1`"));
    }
}
