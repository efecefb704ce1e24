//! Image references, parsed once by the distribution grammar (host, port, path components, tag,
//! digest) and normalised as Docker normalises them: Docker Hub's `docker.io` and `library/`, the
//! host in lower case. Every rule that compares references (tenants, allowed prefixes, cache
//! scopes, frontends) compares these, whole path component by whole path component.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;

/// An image reference such as `127.0.0.1:5000/acme/fn:1`, normalised: `fn` reads as
/// `docker.io/library/fn:latest`, `Reg.Example/a` as `reg.example/a:latest`.
#[derive(Clone, Debug)]
pub struct ImageRef {
    given: String,
    registry: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// A reference that does not follow the grammar.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {given:?}{}", why.map(|w| format!(": {w}")).unwrap_or_default())]
pub struct ReferenceError {
    /// The text as given.
    pub given: String,
    /// What is wrong, where more than "not a reference" can be said.
    pub why: Option<&'static str>,
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let refuse = |why| ReferenceError {
            given: given.to_owned(),
            why,
        };
        // The host in lower case before the grammar's Docker Hub rules see it (`DOCKER.IO/acme`
        // is `docker.io/library/acme`, where the push goes).
        let host_lowered = match given.split_once('/') {
            Some((host, path)) if host.contains(['.', ':']) => {
                format!("{}/{path}", host.to_ascii_lowercase())
            }
            _ => given.to_owned(),
        };
        let parsed = Reference::try_from(host_lowered.as_str()).map_err(|_| refuse(None))?;
        // The grammar takes an upper-case first component as a host, which the Docker Hub
        // rule then makes a path: Docker refuses that path, and so do we.
        if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(refuse(Some("repository name must be lowercase")));
        }
        let registry = parsed.registry().to_ascii_lowercase();
        if let Some((_, port)) = registry.rsplit_once(':') {
            if port.parse::<u16>().is_err() {
                return Err(refuse(Some("the port is not a number from 0 to 65535")));
            }
        }
        Ok(Self {
            given: given.to_owned(),
            registry,
            path: parsed.repository().to_owned(),
            tag: parsed.tag().map(str::to_owned),
            digest: parsed.digest().map(str::to_owned),
        })
    }
}

impl ImageRef {
    /// The registry, `host[:port]` in lower case: `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside its registry: `acme/fn`, `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The repository with its registry and without tag or digest: `docker.io/acme/fn`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    /// The tag; `latest` when neither a tag nor a digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, `sha256:…`, when one was given.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The text as the caller wrote it, for answers and messages.
    pub fn given(&self) -> &str {
        &self.given
    }

    /// The repository as a prefix: itself and every repository below it.
    pub fn as_prefix(&self) -> RepoPrefix {
        RepoPrefix {
            registry: self.registry.clone(),
            path: self.path.split('/').map(str::to_owned).collect(),
        }
    }

    /// The registry and the first path component: `reg.example/acme` for
    /// `reg.example/acme/team/fn`, `docker.io/library` for `busybox`.
    pub fn namespace(&self) -> RepoPrefix {
        RepoPrefix {
            registry: self.registry.clone(),
            path: self.path.split('/').take(1).map(str::to_owned).collect(),
        }
    }

    /// Whether this repository is `prefix` or lies below it, by whole path components.
    pub fn is_within(&self, prefix: &RepoPrefix) -> bool {
        prefix.covers(&self.registry, &self.path)
    }
}

/// The normalised form: `registry/path[:tag][@digest]`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Two references are the same when their normalised forms are.
impl PartialEq for ImageRef {
    fn eq(&self, other: &Self) -> bool {
        (&self.registry, &self.path, &self.tag, &self.digest)
            == (&other.registry, &other.path, &other.tag, &other.digest)
    }
}

impl Eq for ImageRef {}

/// A registry alone (`registry:5000`) or a registry and leading path components
/// (`registry/acme`): the repositories at or below it. A trailing `/` changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoPrefix {
    registry: String,
    path: Vec<String>,
}

impl FromStr for RepoPrefix {
    type Err = ReferenceError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let trimmed = given.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(ReferenceError {
                given: given.to_owned(),
                why: Some("empty"),
            });
        }
        // Parsed as a reference two components deeper, so that the grammar decides what is a
        // host and what a path, and a lone host or Docker Hub namespace is never completed with
        // `library/` (which the grammar adds only to one-component names).
        let probe: ImageRef = format!("{trimmed}/x/x")
            .parse()
            .map_err(|err: ReferenceError| ReferenceError {
                given: given.to_owned(),
                why: err.why,
            })?;
        let mut path: Vec<String> = probe.path.split('/').map(str::to_owned).collect();
        path.truncate(path.len() - 2);
        Ok(Self {
            registry: probe.registry,
            path,
        })
    }
}

impl RepoPrefix {
    /// Whether repository `path` of `registry` (both normalised, as [`ImageRef`] has them) is
    /// this prefix or lies below it, by whole path components.
    pub(crate) fn covers(&self, registry: &str, path: &str) -> bool {
        self.registry == registry && {
            let mut theirs = path.split('/');
            self.path.iter().all(|part| theirs.next() == Some(part))
        }
    }

    /// The registry, `host[:port]` in lower case.
    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// The path components after the registry, `/`-joined; empty for a whole registry.
    pub(crate) fn path(&self) -> String {
        self.path.join("/")
    }
}

/// `registry[/path]`, normalised.
impl fmt::Display for RepoPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.registry)?;
        for part in &self.path {
            write!(f, "/{part}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text: &str) -> ImageRef {
        text.parse().unwrap()
    }

    fn prefix(text: &str) -> RepoPrefix {
        text.parse().unwrap()
    }

    #[test]
    fn references_are_normalised_as_docker_normalises_them() {
        for (given, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("acme/fn:1", "docker.io/acme/fn:1"),
            ("docker.io/acme/fn:1", "docker.io/acme/fn:1"),
            ("index.docker.io/acme/fn", "docker.io/acme/fn:latest"),
            (
                "Reg.Example:5000/acme/fn",
                "reg.example:5000/acme/fn:latest",
            ),
            ("DOCKER.IO/acme", "docker.io/library/acme:latest"),
            ("localhost/x_y", "localhost/x_y:latest"),
            ("reg.io/a--b/c__d:v_1", "reg.io/a--b/c__d:v_1"),
        ] {
            assert_eq!(image(given).to_string(), want, "{given}");
            assert_eq!(image(given).given(), given);
        }
        assert_eq!(image("acme/fn"), image("docker.io/acme/fn:latest"));
        let digest = format!("r.io/a@sha256:{}", "ab".repeat(32));
        assert_eq!(
            image(&digest).digest(),
            Some(format!("sha256:{}", "ab".repeat(32)).as_str())
        );
        assert_eq!(image(&digest).tag(), None);
        let full = image("127.0.0.1:5000/acme/team/fn:2");
        assert_eq!(full.registry(), "127.0.0.1:5000");
        assert_eq!(full.path(), "acme/team/fn");
        assert_eq!(full.repository(), "127.0.0.1:5000/acme/team/fn");
        assert_eq!(full.namespace().to_string(), "127.0.0.1:5000/acme");
        assert_eq!(image("fn").namespace().to_string(), "docker.io/library");
    }

    #[test]
    fn what_breaks_the_grammar_is_refused() {
        for bad in [
            "",
            "Foo",
            "a//b",
            "a/b:",
            "a/-b",
            "a/b@sha256:abc",
            "a/b:.x",
            "a b",
            "/a",
            "a/B",
        ] {
            assert_eq!(
                bad.parse::<ImageRef>().unwrap_err().to_string(),
                format!("invalid reference {bad:?}"),
                "{bad}"
            );
        }
        assert_eq!(
            "reg.io:99999/a"
                .parse::<ImageRef>()
                .unwrap_err()
                .to_string(),
            "invalid reference \"reg.io:99999/a\": the port is not a number from 0 to 65535"
        );
    }

    #[test]
    fn prefixes_match_whole_path_components() {
        let acme = prefix("registry.example/acme");
        for inside in [
            "registry.example/acme",
            "registry.example/acme/fn:1",
            "Registry.Example/acme/team/fn",
        ] {
            assert!(image(inside).is_within(&acme), "{inside}");
        }
        for outside in [
            "registry.example/acme-evil/fn",
            "registry.example/acmex",
            "registry.example/acme.evil/fn",
            "registry.example:5000/acme/fn",
            "other.example/acme/fn",
        ] {
            assert!(!image(outside).is_within(&acme), "{outside}");
        }
        assert_eq!(prefix("registry.example/acme/"), acme);
        let host = prefix("registry:5000");
        assert!(image("registry:5000/anything/fn").is_within(&host));
        assert!(!image("registry:5001/anything/fn").is_within(&host));
        assert_eq!(prefix("registry:5000/"), host);
        assert!(image("acme/fn").is_within(&prefix("docker.io/acme")));
        assert!(image("busybox").is_within(&prefix("docker.io")));
        assert!(image("busybox").is_within(&prefix("docker.io/library")));
        assert!(image("localhost/a").is_within(&prefix("localhost")));
        assert_eq!(prefix("acme/team").to_string(), "docker.io/acme/team");
    }

    #[test]
    fn a_prefix_must_be_a_host_or_repository() {
        // `acme` alone is Docker Hub's namespace, as in `acme/fn`.
        assert_eq!(prefix("acme"), prefix("docker.io/acme/"));
        for bad in ["", "/", "Bad Host/x", "reg.io/A", "reg.io/a:1"] {
            assert!(bad.parse::<RepoPrefix>().is_err(), "{bad}");
        }
    }
}
