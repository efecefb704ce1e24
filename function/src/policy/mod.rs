//! What a build may ask of a shared BuildKit: which frontend runs it, which `BUILDKIT_*` build
//! args it may set, which images it may name, and whose cache it shares.
//!
//! The frontend rule holds by construction: the built-in Dockerfile frontend is always told not
//! to forward (`cmdline` set), unless the builder itself names the one frontend image it checked
//! (`BUILDKIT_SYNTAX`, which BuildKit prefers over the Dockerfile's directive). However BuildKit
//! reads a `# syntax=` line, it can only ever forward to an image this module allowed.

use std::collections::BTreeMap;

use buildkit::{ImageRef, RemoteSources, RepoPrefix};
use sha2::{Digest, Sha256};

use crate::buildconfig::BuildConfig;
use crate::dockerfile::RemoteSource;

pub(crate) mod remote;

/// `BUILDKIT_*` build args a caller may set: they change what the image holds, not how or where
/// BuildKit runs the build.
const SAFE_BUILDKIT_ARGS: [&str; 2] = ["BUILDKIT_INLINE_CACHE", "BUILDKIT_MULTI_PLATFORM"];

/// The builder's policy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Frontend image repositories a `# syntax=` line may name, whatever its tag or digest
    /// (`allowed_frontends`); empty: only the built-in frontend.
    pub frontends: Vec<ImageRef>,
    /// Where images and cache refs may be (`allowed_image_prefixes`), by whole path components:
    /// `registry/acme` admits `registry/acme/fn`, never `registry/acme-evil/fn`; empty: anywhere.
    pub image_prefixes: Vec<RepoPrefix>,
    /// How a build's tenant is named (`tenant_from`).
    pub tenant: TenantRule,
    /// Which remote sources (`ADD <url>`, git) the daemon may fetch (`allowed_remote_sources`).
    pub remote_sources: RemoteSources,
    /// Repositories every tenant's build may pull with the builder's registry credentials, by
    /// whole path components (`base_image_prefixes`), besides its own repositories and the
    /// allowed frontends; `None`: reads are not restricted (a single-tenant builder).
    pub base_images: Option<Vec<RepoPrefix>>,
    /// With `tenant_from=header:<name>`: the namespace each tenant owns, `{tenant}` standing
    /// for the header's value (`tenant_namespace`, e.g. `registry.example.com/{tenant}`). Its
    /// images and cache refs must lie in it, and its builds read it as their own.
    pub tenant_namespace: Option<String>,
}

/// Whose build a request is (`tenant_from`): the tenant scopes `RUN --mount=type=cache` and the
/// session shared key, so no two tenants share either.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TenantRule {
    /// `repository`: the image repository without its tag, `registry.example.com/acme/fn`.
    #[default]
    Repository,
    /// `namespace`: the registry and the repository's first path component,
    /// `registry.example.com/acme` (Docker Hub's `acme/fn`: `acme`), so a customer's functions
    /// share their caches.
    Namespace,
    /// `header:<name>`: a header the platform sets, e.g. `X-Tenant`, for providers who name
    /// tenants themselves. The signature does not cover headers: only for a builder that the
    /// platform alone can call.
    Header(String),
}

impl TenantRule {
    /// Parses `repository`, `namespace` or `header:<name>`.
    ///
    /// # Errors
    /// [`TenantRuleError`] quoting the value.
    pub fn parse(value: &str) -> Result<Self, TenantRuleError> {
        match value.trim() {
            "repository" => Ok(Self::Repository),
            "namespace" => Ok(Self::Namespace),
            other => match other.strip_prefix("header:") {
                Some(name)
                    if openfaas_runtime::http::HeaderName::from_bytes(name.as_bytes()).is_ok() =>
                {
                    Ok(Self::Header(name.to_owned()))
                }
                _ => Err(TenantRuleError {
                    value: other.to_owned(),
                }),
            },
        }
    }

    /// The header this rule reads, if it reads one.
    pub(crate) fn header(&self) -> Option<&str> {
        match self {
            Self::Header(name) => Some(name),
            _ => None,
        }
    }
}

/// A `tenant_from` value that is none of the rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{value:?} is not `repository`, `namespace` or `header:<name>` (e.g. header:X-Tenant)")]
pub struct TenantRuleError {
    value: String,
}

/// Longest tenant a header may name.
const MAX_TENANT_LEN: usize = 128;

impl Default for Policy {
    fn default() -> Self {
        Self {
            frontends: vec!["docker.io/docker/dockerfile"
                .parse()
                .expect("a valid reference")],
            image_prefixes: Vec::new(),
            tenant: TenantRule::Repository,
            remote_sources: RemoteSources::Any,
            base_images: None,
            tenant_namespace: None,
        }
    }
}

/// Why the policy refuses a build (403: well-formed, but not allowed here).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PolicyError {
    /// The Dockerfile's `# syntax=` names a frontend image not allowed.
    #[error("frontend {image:?} (# syntax= in the Dockerfile) is not allowed by allowed_frontends ({allowed})")]
    Frontend {
        /// The image named.
        image: String,
        /// The setting's value, for the message.
        allowed: String,
    },
    /// The config's SBOM generator is not an allowed frontend repository.
    #[error("sbom generator {image:?} is not allowed by allowed_frontends ({allowed}) nor sbom_generator")]
    SbomGenerator {
        /// The image named.
        image: String,
        /// The setting's value, for the message.
        allowed: String,
    },
    /// A `BUILDKIT_*` build arg that changes how BuildKit runs the build.
    #[error("buildArgs.{name}: BUILDKIT_* build args are set by the builder, not the caller (allowed: {})", SAFE_BUILDKIT_ARGS.join(", "))]
    ReservedArg {
        /// The arg.
        name: String,
    },
    /// The image is outside `allowed_image_prefixes`.
    #[error("image {image:?} is outside allowed_image_prefixes ({allowed})")]
    Image {
        /// The image (or `(none)` for a skipPush build without one).
        image: String,
        /// The setting's value.
        allowed: String,
    },
    /// A cache ref is outside `allowed_image_prefixes`.
    #[error("cache ref {reference:?} is outside allowed_image_prefixes ({allowed})")]
    CacheRef {
        /// The ref.
        reference: String,
        /// The setting's value.
        allowed: String,
    },
    /// A cache ref outside the build's own repository (or namespace).
    #[error("cache ref {reference:?} is outside {scope:?}: a build's cache refs name its image's repository or one below it")]
    CacheScope {
        /// The ref.
        reference: String,
        /// The repository (or namespace) it had to be in.
        scope: String,
    },
    /// An `ADD` names a remote source outside `allowed_remote_sources`.
    #[error("ADD {named} (Dockerfile line {line}): remote sources are fetched only under allowed_remote_sources ({allowed})")]
    RemoteSource {
        /// The instruction's line.
        line: usize,
        /// The source as written.
        named: String,
        /// The setting's value.
        allowed: String,
    },
    /// An `ADD` source only the daemon can resolve, on a daemon that cannot check it first.
    #[error("ADD {named} (Dockerfile line {line}): its source depends on a variable, quotes or escapes that only the daemon resolves, and this daemon has no source policy (BuildKit before v0.11) to check it before fetching, so allowed_remote_sources refuses it; name the URL literally")]
    UncheckedSource {
        /// The instruction's line (0: the whole Dockerfile).
        line: usize,
        /// The source as written.
        named: String,
    },
    /// The image or a cache ref lies outside the header-named tenant's namespace.
    #[error("{what} {reference:?} is outside tenant {tenant:?}'s namespace {namespace} (tenant_namespace)")]
    TenantNamespace {
        /// `image` or `cache ref`.
        what: &'static str,
        /// The reference.
        reference: String,
        /// The tenant.
        tenant: String,
        /// Its namespace.
        namespace: String,
    },
    /// `tenant_from=header:<name>` and the request's header is missing or unusable (400).
    #[error("tenant_from=header:{header}: {why}")]
    TenantHeader {
        /// The header's name.
        header: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// What the policy decided for one build: the frontend attributes to add, and its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Frontend attributes the builder sets (never the caller).
    pub(crate) attrs: BTreeMap<String, String>,
    /// Whose build this is: scopes cache mounts and the session shared key.
    pub(crate) tenant: String,
    /// Remote sources only the daemon's source policy can check (variables): a daemon without
    /// one must not run the build.
    pub(crate) unproven: Vec<RemoteSource>,
    /// The tenant's own repositories: what its builds read and write as their own.
    pub(crate) own: Vec<RepoPrefix>,
}

impl Policy {
    /// Checks a build's config and Dockerfile against the policy.
    ///
    /// `tenant_header` is the value of the header [`TenantRule::Header`] names, if the request
    /// has it.
    ///
    /// # Errors
    /// [`PolicyError`] naming the rule and its setting.
    pub(crate) fn check(
        &self,
        config: &BuildConfig,
        dockerfile: &[u8],
        tenant_header: Option<&[u8]>,
    ) -> Result<Decision, PolicyError> {
        if let Some(name) = config
            .build_args
            .keys()
            .find(|k| k.starts_with("BUILDKIT_") && !SAFE_BUILDKIT_ARGS.contains(&k.as_str()))
        {
            return Err(PolicyError::ReservedArg { name: name.clone() });
        }
        if !self.image_prefixes.is_empty() {
            let allowed = |r: &ImageRef| self.image_prefixes.iter().any(|p| r.is_within(p));
            match &config.image {
                Some(image) if allowed(image) => {}
                image => {
                    return Err(PolicyError::Image {
                        image: image.as_ref().map_or("(none)", ImageRef::given).to_owned(),
                        allowed: list(&self.image_prefixes),
                    })
                }
            }
            // A cache ref reads or writes layers: it stays where images may go.
            if let Some(reference) = config.cache_refs().find(|r| !allowed(r)) {
                return Err(PolicyError::CacheRef {
                    reference: reference.given().to_owned(),
                    allowed: list(&self.image_prefixes),
                });
            }
        }
        let mut attrs = BTreeMap::new();
        match syntax(dockerfile) {
            Some(image) if image.parse().is_ok_and(|i| self.allows_frontend(&i)) => {
                attrs.insert("build-arg:BUILDKIT_SYNTAX".to_owned(), image);
            }
            Some(image) => {
                return Err(PolicyError::Frontend {
                    image,
                    allowed: self.frontends_named(),
                })
            }
            // Whatever BuildKit's own parser finds, the built-in frontend does not forward.
            None => {
                attrs.insert("cmdline".to_owned(), String::new());
            }
        }
        let unproven = remote::check(&self.remote_sources, dockerfile)?;
        self.check_cache_scope(config)?;
        let tenant = self.tenant(config, tenant_header)?;
        let own = self.own(config, &tenant)?;
        let ns = Sha256::digest(tenant.as_bytes());
        attrs.insert(
            "build-arg:BUILDKIT_CACHE_MOUNT_NS".to_owned(),
            format!("fb-{}", hex::encode(&ns[..12])),
        );
        Ok(Decision {
            attrs,
            tenant,
            unproven,
            own,
        })
    }
}

impl Policy {
    /// A cache ref the caller names stays inside its own image's repository (with `namespace`
    /// tenants, its namespace): the builder pushes with its own credentials, so a ref of another
    /// tenant's would let one tenant write the cache another imports.
    fn check_cache_scope(&self, config: &BuildConfig) -> Result<(), PolicyError> {
        let Some(first) = config.cache_refs().next() else {
            return Ok(());
        };
        let scope = match (&self.tenant, &config.image) {
            (TenantRule::Namespace, Some(image)) => image.namespace(),
            (_, Some(image)) => image.as_prefix(),
            (_, None) => {
                return Err(PolicyError::CacheScope {
                    reference: first.given().to_owned(),
                    scope: "(none: a build without an image names no cache)".to_owned(),
                })
            }
        };
        match config.cache_refs().find(|r| !r.is_within(&scope)) {
            Some(reference) => Err(PolicyError::CacheScope {
                reference: reference.given().to_owned(),
                scope: scope.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Whether `image` (a `# syntax=` value, an SBOM generator) is of an allowed frontend
    /// repository, whatever its tag or digest.
    pub(crate) fn allows_frontend(&self, image: &ImageRef) -> bool {
        self.frontends
            .iter()
            .any(|allowed| allowed.repository() == image.repository())
    }

    /// `allowed_frontends`, for messages.
    pub(crate) fn frontends_named(&self) -> String {
        if self.frontends.is_empty() {
            return "empty: the built-in frontend only".to_owned();
        }
        let names: Vec<String> = self.frontends.iter().map(ImageRef::repository).collect();
        names.join(",")
    }

    /// The tenant's own repositories, as `tenant_from` defines the tenant: the image's
    /// repository, its namespace, or (header tenants) the configured namespace, in which the
    /// image and cache refs must then lie; else the image's repository.
    fn own(&self, config: &BuildConfig, tenant: &str) -> Result<Vec<RepoPrefix>, PolicyError> {
        let Some(image) = &config.image else {
            return Ok(Vec::new());
        };
        let namespace = match (&self.tenant, &self.tenant_namespace) {
            (TenantRule::Repository, _) | (TenantRule::Header(_), None) => {
                return Ok(vec![image.as_prefix()])
            }
            (TenantRule::Namespace, _) => return Ok(vec![image.namespace()]),
            (TenantRule::Header(header), Some(template)) => {
                namespace_of(template, tenant).ok_or_else(|| PolicyError::TenantHeader {
                    header: header.clone(),
                    why: "its value makes no repository namespace of tenant_namespace (lower-case letters, digits and . _ - only)",
                })?
            }
        };
        let outside = std::iter::once(("image", image))
            .chain(config.cache_refs().map(|r| ("cache ref", r)))
            .find(|(_, r)| !r.is_within(&namespace));
        if let Some((what, reference)) = outside {
            return Err(PolicyError::TenantNamespace {
                what,
                reference: reference.given().to_owned(),
                tenant: tenant.to_owned(),
                namespace: namespace.to_string(),
            });
        }
        Ok(vec![namespace])
    }

    fn tenant(
        &self,
        config: &BuildConfig,
        tenant_header: Option<&[u8]>,
    ) -> Result<String, PolicyError> {
        let from_image = |name: fn(&ImageRef) -> RepoPrefix| match &config.image {
            Some(image) => name(image).to_string(),
            // No image, no owner to share with: a tenant of its own.
            None => format!("anonymous-{}", crate::id::unique()),
        };
        match &self.tenant {
            TenantRule::Repository => Ok(from_image(ImageRef::as_prefix)),
            TenantRule::Namespace => Ok(from_image(ImageRef::namespace)),
            TenantRule::Header(header) => {
                let refuse = |why| PolicyError::TenantHeader {
                    header: header.clone(),
                    why,
                };
                let value =
                    tenant_header.ok_or_else(|| refuse("the request has no such header"))?;
                if value.is_empty()
                    || value.len() > MAX_TENANT_LEN
                    || !value.iter().all(u8::is_ascii_graphic)
                {
                    return Err(refuse(
                        "the header must be 1 to 128 visible ASCII characters",
                    ));
                }
                Ok(String::from_utf8_lossy(value).into_owned())
            }
        }
    }
}

/// `template` with `{tenant}` replaced by `tenant`, when that is a valid repository namespace:
/// a tenant that is no path component (upper case, `/`, `..`) makes none.
pub(crate) fn namespace_of(template: &str, tenant: &str) -> Option<RepoPrefix> {
    let component = tenant
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && tenant
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !component {
        return None;
    }
    template.replace("{tenant}", tenant).parse().ok()
}

/// A setting's list, normalised, for messages.
fn list(prefixes: &[RepoPrefix]) -> String {
    let names: Vec<String> = prefixes.iter().map(RepoPrefix::to_string).collect();
    names.join(",")
}

/// The image a `# syntax=` directive names (its first word), if the Dockerfile opens with one:
/// directives are `# key=value` lines before anything else; a first line `#!` is skipped.
fn syntax(dockerfile: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&dockerfile[..dockerfile.len().min(64 * 1024)]);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if i == 0 && line.starts_with("#!") {
            continue;
        }
        let rest = line.strip_prefix('#')?;
        let (key, value) = rest.split_once('=')?;
        let key = key.trim();
        if !key.chars().all(|c| c.is_ascii_alphanumeric()) || key.is_empty() {
            return None;
        }
        if key.eq_ignore_ascii_case("syntax") {
            return value.split_whitespace().next().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests;
