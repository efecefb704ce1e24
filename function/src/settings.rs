//! The builder's settings, from environment variables set in stack.yml.

use std::path::PathBuf;
use std::time::Duration;

use buildkit::{NetworkMode, RemoteSources, TlsFiles};

use crate::policy::{Policy, TenantRule};
use crate::sealed::OpeningKey;

/// Where OpenFaaS Pro's chart mounts the build secrets key.
const DEFAULT_SECRETS_KEY: &str = "/var/secrets/buildkit/key";
/// The metrics' port: of-watchdog serves the function on 8080 and its own metrics on 8081.
const DEFAULT_METRICS_PORT: u16 = 8082;

/// Everything the builder reads once at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// File holding the HMAC key (`payload_secret_path`); whitespace around it is ignored.
    pub payload_secret_path: PathBuf,
    /// `disable_hmac=true`: accept unsigned requests. For local development only.
    pub disable_hmac: bool,
    /// Largest request body accepted (`max_request_bytes`).
    pub max_request_bytes: u64,
    /// Largest total of file bytes a request may unpack to (`max_unpacked_bytes`).
    pub max_unpacked_bytes: u64,
    /// Most tar entries a request may hold (`max_entries`).
    pub max_entries: u64,
    /// The daemons (`buildkit_url`): `unix://`, `tcp://` or `docker://`, comma-separated, or
    /// `dns+srv://<name>` for the SRV records of a headless Service.
    pub buildkit: crate::pool::Daemons,
    /// TLS for `tcp://` daemons, every one (`buildkit_tls_ca`, `_cert`, `_key`,
    /// `_server_name`).
    pub buildkit_tls: Option<TlsFiles>,
    /// `c` of the bounded loads (`buildkit_load_factor`): a daemon already running more than
    /// ⌈c × mean⌉ of this builder's builds passes a build to the next in its key's order.
    pub buildkit_load_factor: f64,
    /// How often every daemon is probed and SRV records resolved again
    /// (`buildkit_probe_interval`).
    pub buildkit_probe_interval: Duration,
    /// Registry credentials (`docker_config`), default the pro-builder mount.
    pub docker_config: PathBuf,
    /// Network of `RUN` steps (`build_network`: `default` or `none`).
    pub network: NetworkMode,
    /// Longest a build may take (`build_timeout`), below of-watchdog's `exec_timeout`.
    pub build_timeout: Duration,
    /// What builds may ask of BuildKit (`allowed_frontends`, `allowed_image_prefixes`) and whose
    /// build each is (`tenant_from`).
    pub policy: Policy,
    /// The key that opens sealed build secrets (`build_secrets_private_key_path`; by default
    /// `/var/secrets/buildkit/key`, where OpenFaaS Pro's chart mounts it, when that file exists).
    /// Read once at start: a rotated key needs a restart.
    pub secrets_key: Option<OpeningKey>,
    /// The registry cache every build with an image imports and exports when its config names
    /// none (`cache_repository`, e.g. `registry.example.com/cache/{repository}`; `{tenant}`
    /// too). Unset: no default cache.
    pub cache_repository: Option<String>,
    /// Registries (`host[:port]`) buildkitd reaches over plain HTTP or unverified TLS for the
    /// push and the cache (`insecure_registries`).
    pub insecure_registries: Vec<String>,
    /// Where each request's body and context are unpacked (`work_dir`), default the system's
    /// temp dir; each request's dir is removed when it ends.
    pub work_dir: PathBuf,
    /// Attestations and reproducibility for builds whose config does not say (`provenance`,
    /// `sbom`, `sbom_generator`, `reproducible`).
    pub attest: crate::attest::Defaults,
    /// The port Prometheus scrapes `GET /metrics` on, on every interface (`metrics_port`,
    /// default 8082); `None` (`0` or `off`): no metrics server.
    pub metrics_port: Option<u16>,
}

/// A setting that could not be understood; names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct SettingsError {
    var: &'static str,
    message: String,
}

impl Settings {
    /// Reads the settings from the environment.
    ///
    /// # Errors
    /// When a variable is set to something unusable.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let err = |var: &'static str, message: String| SettingsError { var, message };
        let number = |var: &'static str, default: u64| match get(var) {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| err(var, format!("{v:?} is not a whole number"))),
            None => Ok(default),
        };
        let buildkit =
            get("buildkit_url").unwrap_or_else(|| "unix:///run/buildkit/buildkitd.sock".to_owned());
        let buildkit = buildkit
            .parse()
            .map_err(|e: crate::pool::DaemonsError| err("buildkit_url", e.to_string()))?;
        let buildkit_load_factor = match get("buildkit_load_factor") {
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite() && *c >= 1.0)
                .ok_or_else(|| {
                    err(
                        "buildkit_load_factor",
                        format!("{v:?} is not a number of 1 or more, such as 1.25"),
                    )
                })?,
            None => 1.25,
        };
        let metrics_port = match get("metrics_port") {
            None => Some(DEFAULT_METRICS_PORT),
            Some(v) if matches!(v.trim(), "0" | "off") => None,
            Some(v) => Some(v.trim().parse::<u16>().map_err(|_| {
                err(
                    "metrics_port",
                    format!("{v:?} is not a port (1-65535), or 0 or off for none"),
                )
            })?),
        };
        let buildkit_probe_interval = match get("buildkit_probe_interval") {
            Some(v) => openfaas_runtime::parse_duration(&v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    err(
                        "buildkit_probe_interval",
                        format!("{v:?} is not a duration such as 5 or 5s"),
                    )
                })?,
            None => Duration::from_secs(5),
        };
        let buildkit_tls = get("buildkit_tls_ca").map(|ca| TlsFiles {
            ca: ca.into(),
            cert: get("buildkit_tls_cert").map(Into::into),
            key: get("buildkit_tls_key").map(Into::into),
            server_name: get("buildkit_tls_server_name"),
        });
        let network = match get("build_network").as_deref() {
            None | Some("default") => NetworkMode::Default,
            Some("none") => NetworkMode::None,
            Some(other) => {
                return Err(err(
                    "build_network",
                    format!("{other:?} is not `default` or `none`"),
                ))
            }
        };
        let build_timeout = match get("build_timeout") {
            Some(v) => openfaas_runtime::parse_duration(&v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    err(
                        "build_timeout",
                        format!("{v:?} is not a duration such as 540 or 9m"),
                    )
                })?,
            None => Duration::from_secs(9 * 60),
        };
        let secrets_key = match get("build_secrets_private_key_path") {
            Some(path) if !path.trim().is_empty() => Some(
                OpeningKey::load(path.trim().as_ref())
                    .map_err(|e| err("build_secrets_private_key_path", e.to_string()))?,
            ),
            _ if std::path::Path::new(DEFAULT_SECRETS_KEY).is_file() => Some(
                OpeningKey::load(DEFAULT_SECRETS_KEY.as_ref())
                    .map_err(|e| err("build_secrets_private_key_path", e.to_string()))?,
            ),
            _ => None,
        };
        let cache_repository = get("cache_repository").filter(|v| !v.trim().is_empty());
        if let Some(template) = &cache_repository {
            let sample = crate::cache::expand(template.trim(), "acme/fn", "acme");
            if sample.parse::<buildkit::ImageRef>().is_err() {
                return Err(err(
                    "cache_repository",
                    format!("{template:?} does not make a valid image reference (e.g. {sample:?})"),
                ));
            }
        }
        // Unset: none where a build may be a stranger's (RUN steps without network, tenants or
        // image prefixes configured), any on a single-tenant setup.
        let shared = network == NetworkMode::None
            || get("tenant_from").is_some()
            || get("allowed_image_prefixes").is_some();
        let remote_sources = match get("allowed_remote_sources") {
            None if shared => RemoteSources::Only(Vec::new()),
            None => RemoteSources::Any,
            Some(v) if v.trim() == "*" => RemoteSources::Any,
            Some(v) => {
                let prefixes = list(&v);
                if let Some(bad) = prefixes.iter().find(|p| !remote_prefix(p)) {
                    return Err(err(
                        "allowed_remote_sources",
                        format!("{bad:?} is not an http://, https:// or git:// prefix with a host and a path, such as https://files.example.com/ (or * for any)"),
                    ));
                }
                RemoteSources::Only(prefixes)
            }
        };
        // Unset: the builder's credentials read only a tenant's own repositories where tenants
        // are configured, anything on a single-tenant setup; `*`: anything.
        let tenancy = get("tenant_from").is_some() || get("allowed_image_prefixes").is_some();
        let base_images = match get("base_image_prefixes") {
            None if tenancy => Some(Vec::new()),
            None => None,
            Some(v) if v.trim() == "*" => None,
            Some(v) => Some(
                parsed::<buildkit::RepoPrefix>(&v)
                    .map_err(|e| err("base_image_prefixes", e.to_string()))?,
            ),
        };
        let flag = |var: &'static str| match get(var).as_deref().map(str::trim) {
            None | Some("" | "false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(err(var, format!("{other:?} is not true or false"))),
        };
        let attest = crate::attest::Defaults {
            provenance: match get("provenance").as_deref().map(str::trim) {
                None | Some("" | "none") => None,
                Some("min") => Some(buildkit::Provenance::Min),
                Some("max") => Some(buildkit::Provenance::Max),
                Some(other) => {
                    return Err(err(
                        "provenance",
                        format!("{other:?} is not min, max or none"),
                    ))
                }
            },
            sbom: flag("sbom")?,
            sbom_generator: match get("sbom_generator").filter(|v| !v.trim().is_empty()) {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|e: buildkit::ReferenceError| err("sbom_generator", e.to_string()))?,
                None => crate::attest::Defaults::default().sbom_generator,
            },
            reproducible: flag("reproducible")?,
        };
        let tenant_namespace = get("tenant_namespace").filter(|v| !v.trim().is_empty());
        if let Some(template) = &tenant_namespace {
            if !template.contains("{tenant}")
                || crate::policy::namespace_of(template.trim(), "acme").is_none()
            {
                return Err(err(
                    "tenant_namespace",
                    format!("{template:?} is not a repository prefix holding {{tenant}}, such as registry.example.com/{{tenant}}"),
                ));
            }
        }
        Ok(Self {
            secrets_key,
            cache_repository: cache_repository.map(|v| v.trim().to_owned()),
            insecure_registries: get("insecure_registries")
                .map(|v| list(&v))
                .unwrap_or_default(),
            payload_secret_path: get("payload_secret_path")
                .unwrap_or_else(|| "/var/openfaas/secrets/payload-secret".to_owned())
                .into(),
            disable_hmac: get("disable_hmac").is_some_and(|v| v.trim() == "true"),
            max_request_bytes: number("max_request_bytes", 256 << 20)?,
            max_unpacked_bytes: number("max_unpacked_bytes", 1 << 30)?,
            max_entries: number("max_entries", 100_000)?,
            buildkit,
            buildkit_tls,
            buildkit_load_factor,
            buildkit_probe_interval,
            docker_config: get("docker_config")
                .unwrap_or_else(|| "/home/app/.docker/config.json".to_owned())
                .into(),
            network,
            build_timeout,
            work_dir: get("work_dir").map_or_else(std::env::temp_dir, PathBuf::from),
            metrics_port,
            attest,
            policy: Policy {
                frontends: match get("allowed_frontends") {
                    Some(v) => parsed::<buildkit::ImageRef>(&v)
                        .map_err(|e| err("allowed_frontends", e.to_string()))?,
                    None => Policy::default().frontends,
                },
                image_prefixes: match get("allowed_image_prefixes") {
                    Some(v) => parsed::<buildkit::RepoPrefix>(&v)
                        .map_err(|e| err("allowed_image_prefixes", e.to_string()))?,
                    None => Vec::new(),
                },
                tenant: get("tenant_from")
                    .map(|v| TenantRule::parse(&v))
                    .transpose()
                    .map_err(|e| err("tenant_from", e.to_string()))?
                    .unwrap_or_default(),
                remote_sources,
                base_images,
                tenant_namespace: tenant_namespace.map(|t| t.trim().to_owned()),
            },
        })
    }
}

/// Whether `prefix` is `scheme://host[:port]/…`: a host that later text cannot extend
/// (`https://files.example` would admit `https://files.example.evil.com/`) and no userinfo,
/// escapes or encoding in it, nor a path that climbs.
fn remote_prefix(prefix: &str) -> bool {
    let Some(rest) = ["http://", "https://", "git://"]
        .iter()
        .find_map(|scheme| prefix.strip_prefix(scheme))
    else {
        return false;
    };
    let Some((host, _)) = rest.split_once('/') else {
        return false;
    };
    !host.is_empty()
        && !host.contains(['@', '\\', '%', '?', '#'])
        && !crate::policy::remote::climbs(prefix)
}

/// A comma-separated setting of references or prefixes; blanks ignored.
fn parsed<T: std::str::FromStr>(value: &str) -> Result<Vec<T>, T::Err> {
    list(value).iter().map(|item| item.parse()).collect()
}

/// A comma-separated setting; blanks ignored.
fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(vars: &[(&str, &str)]) -> Result<RemoteSources, String> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
            .map(|s| s.policy.remote_sources)
            .map_err(|e| e.to_string())
    }

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned()).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_are_restricted_where_tenants_are_configured() {
        let base = |vars: &[(&str, &str)]| settings(vars).map(|s| s.policy.base_images);
        assert_eq!(base(&[]), Ok(None));
        assert_eq!(base(&[("build_network", "none")]), Ok(None));
        assert_eq!(base(&[("tenant_from", "namespace")]), Ok(Some(Vec::new())));
        assert_eq!(
            base(&[("allowed_image_prefixes", "r.example/acme")]),
            Ok(Some(Vec::new()))
        );
        assert_eq!(
            base(&[("tenant_from", "namespace"), ("base_image_prefixes", "*")]),
            Ok(None)
        );
        assert_eq!(
            base(&[("base_image_prefixes", "r.example/base, docker.io/library")]),
            Ok(Some(vec![
                "r.example/base".parse().unwrap(),
                "docker.io/library".parse().unwrap()
            ]))
        );
        assert_eq!(
            base(&[("base_image_prefixes", "r.example/Base")]),
            Err("base_image_prefixes: invalid reference \"r.example/Base\"".to_owned())
        );
        let namespace = |v: &str| {
            settings(&[("tenant_from", "header:X-Tenant"), ("tenant_namespace", v)])
                .map(|s| s.policy.tenant_namespace)
        };
        assert_eq!(
            namespace("r.example/c/{tenant}"),
            Ok(Some("r.example/c/{tenant}".to_owned()))
        );
        for bad in ["r.example/c", "r.example/C/{tenant}"] {
            assert_eq!(
                namespace(bad),
                Err(format!("tenant_namespace: {bad:?} is not a repository prefix holding {{tenant}}, such as registry.example.com/{{tenant}}"))
            );
        }
    }

    #[test]
    fn remote_sources_default_to_none_where_builds_may_be_strangers() {
        let none = Ok(RemoteSources::Only(Vec::new()));
        assert_eq!(remote(&[]), Ok(RemoteSources::Any));
        assert_eq!(remote(&[("build_network", "none")]), none);
        assert_eq!(remote(&[("tenant_from", "namespace")]), none);
        assert_eq!(
            remote(&[("allowed_image_prefixes", "r.example/acme")]),
            none
        );
        assert_eq!(
            remote(&[("build_network", "none"), ("allowed_remote_sources", "*")]),
            Ok(RemoteSources::Any)
        );
        assert_eq!(
            remote(&[(
                "allowed_remote_sources",
                "https://files.example/a/, git://git.example/"
            )]),
            Ok(RemoteSources::Only(vec![
                "https://files.example/a/".into(),
                "git://git.example/".into()
            ]))
        );
        for bad in [
            "files.example",
            "https://files.example",
            "http://127.0.0.1:80",
            "https://user@files.example/",
            "https://files.example/a/../b/",
        ] {
            assert_eq!(
                remote(&[("allowed_remote_sources", bad)]),
                Err(format!("allowed_remote_sources: {bad:?} is not an http://, https:// or git:// prefix with a host and a path, such as https://files.example.com/ (or * for any)")),
            );
        }
    }

    #[test]
    fn metrics_are_served_on_8082_unless_turned_off() {
        let port = |vars: &[(&str, &str)]| settings(vars).map(|s| s.metrics_port);
        assert_eq!(port(&[]), Ok(Some(8082)));
        assert_eq!(port(&[("metrics_port", " 9100 ")]), Ok(Some(9100)));
        assert_eq!(port(&[("metrics_port", "0")]), Ok(None));
        assert_eq!(port(&[("metrics_port", "off")]), Ok(None));
        assert_eq!(
            port(&[("metrics_port", "65536")]),
            Err("metrics_port: \"65536\" is not a port (1-65535), or 0 or off for none".to_owned())
        );
    }
}
