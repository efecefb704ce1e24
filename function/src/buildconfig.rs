//! `com.openfaas.docker.config`: what to build, checked before BuildKit is called.

use std::collections::BTreeMap;

use crate::wire::{Config, CONFIG_NAME};
use crate::BuildError;

/// The request's build config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildConfig {
    /// Image reference to push (or only tag, with `skip_push`).
    pub(crate) image: Option<String>,
    /// Dockerfile `ARG`s.
    pub(crate) build_args: BTreeMap<String, String>,
    /// Target platforms; empty for the daemon's own.
    pub(crate) platforms: Vec<String>,
    /// Build without pushing.
    pub(crate) skip_push: bool,
    /// Cache refs to import (`cache.from`).
    pub(crate) cache_from: Vec<String>,
    /// The cache ref to export to (`cache.to`).
    pub(crate) cache_to: Option<String>,
    /// Fields this builder does not know, listed in the log (forward compatibility).
    pub(crate) unknown_fields: Vec<String>,
}

impl BuildConfig {
    /// Parses and checks the config.
    ///
    /// # Errors
    /// [`BuildError::BadRequest`] naming the field, e.g. `buildArgs.FOO: invalid type: integer
    /// 1, expected a string`, or `image: invalid reference "Foo//bar"`.
    pub(crate) fn parse(json: &[u8]) -> Result<Self, BuildError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let raw: Config = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match path.as_str() {
                "." | "?" | "" => BuildError::bad_request(format!("{CONFIG_NAME}: {inner}")),
                _ => BuildError::bad_request(format!("{path}: {inner}")),
            }
        })?;
        let cache = raw.cache.unwrap_or_default();
        let config = Self {
            cache_from: cache.from,
            cache_to: cache.to.filter(|to| !to.is_empty()),
            image: raw.image.filter(|image| !image.is_empty()),
            build_args: raw.build_args.unwrap_or_default(),
            platforms: raw.platforms.unwrap_or_default(),
            skip_push: raw.skip_push.unwrap_or(false),
            unknown_fields: raw.unknown.into_keys().collect(),
        };
        match &config.image {
            Some(image) if !valid_reference(image) => {
                return Err(BuildError::bad_request(format!(
                    "image: invalid reference {image:?}"
                )))
            }
            None if !config.skip_push => {
                return Err(BuildError::bad_request(
                    "image: required unless skipPush is true",
                ))
            }
            _ => {}
        }
        for (i, platform) in config.platforms.iter().enumerate() {
            if !valid_platform(platform) {
                return Err(BuildError::bad_request(format!(
                    "platforms[{i}]: invalid platform {platform:?}, expected os/arch[/variant] such as linux/arm64"
                )));
            }
        }
        let cache_refs = config
            .cache_from
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("cache.from[{i}]"), r))
            .chain(config.cache_to.iter().map(|r| ("cache.to".to_owned(), r)));
        for (field, reference) in cache_refs {
            if !valid_reference(reference) {
                return Err(BuildError::bad_request(format!(
                    "{field}: invalid reference {reference:?}"
                )));
            }
        }
        for name in config.build_args.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(BuildError::bad_request(format!(
                    "buildArgs: invalid name {name:?}"
                )));
            }
        }
        Ok(config)
    }

    /// Every cache ref the config names.
    pub(crate) fn cache_refs(&self) -> impl Iterator<Item = &str> {
        self.cache_from
            .iter()
            .chain(self.cache_to.iter())
            .map(String::as_str)
    }

    /// The repository of the image, without tag: the session shared key's scope.
    pub(crate) fn repository(&self) -> Option<&str> {
        self.image.as_deref().map(repository_of)
    }
}

/// A reference without its tag or digest: `reg:5000/acme/fn:1` → `reg:5000/acme/fn`.
pub(crate) fn repository_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].rfind(':') {
        Some(colon) => &name[..last + colon],
        None => name,
    }
}

/// Docker's reference grammar, as far as a push needs it: `[host[:port]/]path[:tag]`, path
/// components lowercase alphanumerics with single separators, tag up to 128 word chars.
pub(crate) fn valid_reference(image: &str) -> bool {
    if image.len() > 255 || image.contains('@') {
        return false;
    }
    let (name, tag) = {
        let last = image.rfind('/').map_or(0, |i| i + 1);
        match image[last..].rfind(':') {
            Some(colon) => (&image[..last + colon], Some(&image[last + colon + 1..])),
            None => (image, None),
        }
    };
    if let Some(tag) = tag {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-';
        if tag.is_empty()
            || tag.len() > 128
            || !tag.chars().all(ok_char)
            || tag.starts_with(['.', '-'])
        {
            return false;
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (hostname, port) = host
            .split_once(':')
            .map_or((host, None), |(h, p)| (h, Some(p)));
        let host_ok = !hostname.is_empty()
            && hostname
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return false;
        }
    }
    !parts.is_empty() && parts.iter().all(|part| valid_path_component(part))
}

fn valid_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    // Separators: `.`, `_`, `__`, or runs of `-`, each between alphanumerics.
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let sep_len = match c {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|b| **b == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        if !bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return false;
        }
    }
    true
}

fn valid_platform(platform: &str) -> bool {
    let parts: Vec<&str> = platform.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
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
            br#"{"image":"127.0.0.1:5000/fn/hello:1.0","buildArgs":{"A":"1"},"platforms":["linux/amd64","linux/arm/v7"],"skipPush":false,"frontend":"x","ref":"y"}"#,
        )
        .unwrap();
        assert_eq!(config.image.as_deref(), Some("127.0.0.1:5000/fn/hello:1.0"));
        assert_eq!(config.build_args["A"], "1");
        assert_eq!(config.platforms, ["linux/amd64", "linux/arm/v7"]);
        assert_eq!(config.unknown_fields, ["frontend", "ref"]);
        assert_eq!(config.repository(), Some("127.0.0.1:5000/fn/hello"));
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
    fn references_follow_docker_grammar() {
        for good in [
            "alpine",
            "a/b",
            "ghcr.io/org/fn:1.2.3",
            "127.0.0.1:5000/fn/hello",
            "localhost/x_y",
            "reg.io/a--b/c__d:v_1",
        ] {
            assert!(valid_reference(good), "{good}");
        }
        for bad in [
            "",
            "Foo",
            "a//b",
            "a/b:",
            "a/-b",
            "a/b@sha256:abc",
            "reg.io:99999/a",
            "a/b:.x",
            "a b",
            "/a",
        ] {
            assert!(!valid_reference(bad), "{bad}");
        }
    }
}
