//! Reads: which images a build may pull with the builder's registry credentials, and how the
//! daemon is held to it.
//!
//! The builder holds one set of registry credentials for all its tenants. A [`ReadPolicy`] names
//! the repositories one build may use them for; every other image is pulled without them, so a
//! public image still builds and another tenant's private one is refused by the registry itself.
//! What can be enforced depends on how the daemon asks:
//! - `Auth.FetchToken(host, realm, service, scopes)`, a token-auth registry's scopes, once the
//!   session is the daemon's token authority for the host: the scopes name repositories and
//!   actions, so the builder fetches the token itself, with its credentials for the allowed
//!   scopes only (anonymously when none is allowed).
//! - `Auth.Credentials(host)`, for Basic auth: it names a host only. Answered where the daemon
//!   applies the build's source policy (BuildKit v0.11+), which denies every image outside the
//!   policy on each host the config holds credentials for; withheld where it does not (Docker
//!   Engine 20.10) for a host the policy splits between tenants, and the build's error says so.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ring::signature::Ed25519KeyPair;

use crate::dockerconfig::{registry_host, Credentials, DockerConfig, DockerConfigError};
use crate::error::BuildkitError;
use crate::token::{Token, TokenError, TokenRequest};
use crate::RepoPrefix;

/// Which images a build may pull (and push) with the builder's registry credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReadPolicy {
    /// Any image: a builder with a single tenant.
    #[default]
    Any,
    /// Only these repositories, by whole path components.
    Only {
        /// The build's own: pulled and pushed (its tenant's repositories and cache refs).
        own: Vec<RepoPrefix>,
        /// Pulled only (base images every tenant may use, allowed frontends). A whole registry
        /// here (`registry.example.com/`) is one the policy does not split between tenants.
        shared: Vec<RepoPrefix>,
    },
}

impl ReadPolicy {
    /// Whether the credentials may serve `action` (`pull`, `push`) on repository `path` of
    /// `registry` (normalised: `docker.io`, lower case).
    pub(crate) fn allows(&self, registry: &str, path: &str, action: &str) -> bool {
        let Self::Only { own, shared } = self else {
            return true;
        };
        let covered = |list: &[RepoPrefix]| list.iter().any(|p| p.covers(registry, path));
        match action {
            "pull" => covered(own) || covered(shared),
            "push" => covered(own),
            _ => false,
        }
    }

    /// Whether every repository of `registry` may be pulled: the policy does not split it.
    pub(crate) fn shares_whole(&self, registry: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only { shared, .. } => shared
                .iter()
                .any(|p| p.registry() == registry && p.path().is_empty()),
        }
    }

    /// Every prefix, as the source policy allows them.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &RepoPrefix> {
        let (own, shared): (&[RepoPrefix], &[RepoPrefix]) = match self {
            Self::Any => (&[], &[]),
            Self::Only { own, shared } => (own, shared),
        };
        own.iter().chain(shared)
    }

    /// The policy as one canonical text: builds whose texts match may share the daemon's
    /// cached registry tokens.
    fn fingerprint(&self) -> String {
        let sorted = |list: &[RepoPrefix]| {
            let set: BTreeSet<String> = list.iter().map(RepoPrefix::to_string).collect();
            set.into_iter().collect::<Vec<_>>().join(",")
        };
        match self {
            Self::Any => "any".to_owned(),
            Self::Only { own, shared } => format!("own={};shared={}", sorted(own), sorted(shared)),
        }
    }
}

/// What the builder kept from a build, to explain its error if a registry then refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Withheld {
    /// Basic credentials for a registry the policy splits, on a daemon without source policies.
    Registry(String),
    /// Credentials for a repository outside the policy, `registry/path`.
    Repository(String),
}

/// Why a token was not fetched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    #[error(transparent)]
    Config(#[from] DockerConfigError),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The realm is plain HTTP for a registry that is neither loopback nor insecure.
    #[error("registry {registry}: its token service {realm} is plain http, and credentials go only over https (or to a registry in insecure_registries)")]
    PlainRealm { registry: String, realm: String },
}

/// One build's registry access: its read policy, the builder's credentials, and what the daemon
/// enforces.
pub(crate) struct Access {
    policy: ReadPolicy,
    config: Arc<DockerConfig>,
    /// The daemon applies the build's source policy, which denies images outside the policy on
    /// every registry in `credentialed`.
    daemon_enforces: bool,
    /// Registries the config holds credentials for (`docker.io` for Docker Hub); under a
    /// restricted policy no other registry gets any.
    credentialed: BTreeSet<String>,
    /// Registries reached over plain HTTP (`insecure_registries`).
    insecure: Vec<String>,
    withheld: Mutex<Vec<Withheld>>,
}

impl Access {
    pub(crate) fn new(
        policy: ReadPolicy,
        config: Arc<DockerConfig>,
        daemon_enforces: bool,
        insecure: &[String],
    ) -> Self {
        Self {
            credentialed: config.registries(),
            policy,
            config,
            daemon_enforces,
            insecure: insecure.iter().map(|h| h.to_ascii_lowercase()).collect(),
            withheld: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn policy(&self) -> &ReadPolicy {
        &self.policy
    }

    /// Whether the policy restricts reads at all.
    pub(crate) fn restricted(&self) -> bool {
        self.policy != ReadPolicy::Any
    }

    /// Registries the source policy must guard: those with credentials the policy splits. A
    /// token registry too, though the builder holds its tokens to the policy scope by scope: an
    /// image pinned by a digest whose content the daemon already holds (another tenant's build
    /// pulled it) is served without asking the registry.
    pub(crate) fn guarded(&self) -> impl Iterator<Item = &String> {
        self.credentialed
            .iter()
            .filter(|r| self.restricted() && !self.policy.shares_whole(r))
    }

    /// The answer to `Auth.Credentials(host)`.
    pub(crate) async fn credentials(&self, host: &str) -> Result<Credentials, DockerConfigError> {
        let registry = registry_host(host);
        if !self.restricted() || self.policy.shares_whole(&registry) {
            return self.config.credentials(host).await;
        }
        if !self.credentialed.contains(&registry) {
            return Ok(Credentials::default());
        }
        if self.daemon_enforces {
            // The source policy guards the registry.
            return self.config.credentials(host).await;
        }
        self.withhold(Withheld::Registry(registry));
        Ok(Credentials::default())
    }

    /// The key the session signs with as the daemon's token authority for `host`, when the
    /// builder fetches that host's tokens itself (a restricted policy, credentials for the host).
    /// Derived from the policy and the daemon's salt: only builds under the same policy share
    /// the tokens the daemon caches.
    pub(crate) fn authority(&self, host: &str, salt: &[u8]) -> Option<Ed25519KeyPair> {
        let registry = registry_host(host);
        if !self.restricted() || !self.credentialed.contains(&registry) {
            return None;
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, process_secret());
        let mut ctx = ring::hmac::Context::with_key(&key);
        for part in [
            b"function-builder token authority".as_slice(),
            self.policy.fingerprint().as_bytes(),
            registry.as_bytes(),
            salt,
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        Ed25519KeyPair::from_seed_unchecked(ctx.sign().as_ref()).ok()
    }

    /// The answer to `Auth.FetchToken`: the builder's credentials for the scopes the policy
    /// allows, and only for those; anonymous when it allows none.
    pub(crate) async fn token(
        &self,
        host: &str,
        realm: &str,
        service: &str,
        scopes: &[String],
    ) -> Result<Token, AccessError> {
        let registry = registry_host(host);
        let plain = realm
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
        if plain && !is_loopback(&registry) && !self.insecure.contains(&registry) {
            return Err(AccessError::PlainRealm {
                registry,
                realm: realm.to_owned(),
            });
        }
        let (allowed, denied) = split_scopes(&self.policy, &registry, scopes);
        for repository in denied {
            self.withhold(Withheld::Repository(format!("{registry}/{repository}")));
        }
        let credentials;
        let (scopes, credentials) = if allowed.is_empty() {
            (scopes.to_vec(), None)
        } else {
            credentials = self.config.credentials(host).await?;
            (allowed, Some(&credentials))
        };
        let token = crate::token::fetch(&TokenRequest {
            realm,
            service,
            scopes: &scopes,
            credentials,
        })
        .await?;
        Ok(token)
    }

    fn withhold(&self, what: Withheld) {
        let mut withheld = self.withheld.lock().unwrap_or_else(PoisonError::into_inner);
        if !withheld.contains(&what) {
            tracing::info!(?what, "registry credentials withheld by the read policy");
            withheld.push(what);
        }
    }

    /// `err`, said again in the policy's terms when it is a registry refusing what the builder
    /// withheld: the image outside the policy, or the registry whose credentials were kept.
    /// A refusal that names no image (Docker's `pull access denied`) is the withheld images'.
    pub(crate) fn explain(&self, err: BuildkitError) -> BuildkitError {
        let (message, refused) = match &err {
            BuildkitError::Registry { message, fault, .. } => {
                (message.clone(), *fault == crate::RegistryFault::Refused)
            }
            BuildkitError::Build { message, .. } => (message.clone(), false),
            _ => return err,
        };
        // A push names its own image, which is never withheld.
        if message.starts_with("push ") || message.contains("failed to push") {
            return err;
        }
        let withheld = self.withheld.lock().unwrap_or_else(PoisonError::into_inner);
        let lower = message.to_ascii_lowercase();
        for what in withheld.iter() {
            match what {
                Withheld::Repository(image) if names(&message, image) => {
                    return BuildkitError::ImageDenied {
                        image: image.clone(),
                        message,
                    }
                }
                Withheld::Registry(registry) if refused || lower.contains(registry.as_str()) => {
                    return BuildkitError::CredentialsWithheld {
                        registry: registry.clone(),
                        message,
                    }
                }
                _ => {}
            }
        }
        let images: Vec<&str> = withheld
            .iter()
            .filter_map(|what| match what {
                Withheld::Repository(image) => Some(image.as_str()),
                Withheld::Registry(_) => None,
            })
            .collect();
        if refused && !images.is_empty() {
            return BuildkitError::ImageDenied {
                image: images.join(", "),
                message,
            };
        }
        err
    }
}

/// Whether `message` names `image` (`registry/path`), or its path on its registry.
fn names(message: &str, image: &str) -> bool {
    let path = image.split_once('/').map_or(image, |(_, path)| path);
    message.contains(image)
        || message.contains(&format!("{path}:"))
        || message.contains(&format!("/{path}/"))
}

/// `scopes` (each `repository:<name>:<actions>`, several to a string) split into what the
/// policy allows, with only the allowed actions, and the repositories it refuses a pull of.
fn split_scopes(
    policy: &ReadPolicy,
    registry: &str,
    scopes: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let kept: Vec<&str> = actions
            .split(',')
            .filter(|action| policy.allows(registry, name, action))
            .collect();
        if !policy.allows(registry, name, "pull") {
            denied.push(name.to_owned());
        }
        if !kept.is_empty() {
            allowed.push(format!("repository:{name}:{}", kept.join(",")));
        }
    }
    (allowed, denied)
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port: where BuildKit itself speaks
/// plain HTTP.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A random secret of this process, from which every token authority key is derived.
fn process_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("the system's random source");
        secret
    })
}

#[cfg(test)]
mod tests;
