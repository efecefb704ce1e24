//! Registry credentials from a Docker `config.json` (the OpenFaaS secret `registry-secret`), for
//! BuildKit's session call `Auth.Credentials` and for the Engine's `X-Registry-Auth` push header.
//!
//! A host's credentials come from where docker/cli takes them (`ConfigFile.GetCredentialsStore`,
//! `nativeStore.Get`): the `credHelpers` entry for the host, else the `credsStore` helper, else
//! `auths`. With a helper configured, `auths` is not consulted for secrets and the helper's "not
//! found" means anonymous, so a file behaves here as it does for `docker push`.

mod credhelper;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::error::Category;

use credhelper::{HelperAnswer, HelperRunner};

/// The key `docker login` writes for Docker Hub, and the server address its helpers know it by.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Docker Hub's names: BuildKit asks for `registry-1.docker.io`, image references say `docker.io`.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// The username under which a helper keeps an identity token.
const HELPER_TOKEN_USERNAME: &str = "<token>";
/// Base64 of `{}`: the Engine's "no credentials".
const ANONYMOUS_HEADER: &str = "e30=";
/// `auth` is standard base64; tools disagree on padding, so either form is taken.
const AUTH_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials for one registry host, shaped as BuildKit's `Auth.Credentials` answers them: an
/// identity token has an empty username, and no credentials at all (both empty) means anonymous.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The registry username; empty for an identity token or anonymous access.
    pub username: String,
    /// The password or token.
    pub secret: String,
}

impl Credentials {
    /// Whether these are no credentials: the daemon then pulls and pushes anonymously.
    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty() && self.secret.is_empty()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.secret.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &format_args!("{secret}"))
            .finish()
    }
}

/// Why registry credentials could not be had. No variant carries a secret or the file's content.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read docker config {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file is not a docker config. Only where and what kind: serde_json's own message can
    /// quote the offending value, which may be a password.
    #[error("invalid docker config {}: {kind} at line {line} column {column}", .path.display())]
    Parse {
        path: PathBuf,
        /// `syntax error`, `unexpected value` or `unexpected end`; line and column are 1-based.
        kind: &'static str,
        line: usize,
        column: usize,
    },
    /// An `auths` entry's `auth` is not base64 of `user:password`.
    #[error("docker config {}: auth for {host} is not base64 of user:password", .path.display())]
    BadAuth { path: PathBuf, host: String },
    /// A credential helper could not be run or failed.
    #[error("credential helper {helper} for {host}: {message}")]
    Helper {
        /// The program, e.g. `docker-credential-ecr-login`; `host` is the server address asked about.
        helper: String,
        host: String,
        message: String,
    },
}

/// A parsed `config.json`: `auths` decoded, helpers named. Cheap to clone and share; looking a
/// host up may run a credential helper, a child process that dropping the lookup kills.
#[derive(Clone, Default)]
pub struct DockerConfig {
    auths: BTreeMap<String, Entry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
    helpers: HelperRunner,
}

/// One `auths` entry. Once [`DockerConfig::from_json`] has decoded `auth` into `username` and
/// `password` (which it overrides, as in docker/cli), `auth` is empty.
#[derive(Clone, Default, Deserialize)]
#[serde(default)]
struct Entry {
    auth: String,
    username: String,
    password: String,
    #[serde(rename = "identitytoken")]
    identity_token: String,
    #[serde(rename = "registrytoken")]
    registry_token: String,
}

/// The part of `config.json` used here; a null section or entry is taken as absent, as in Go.
#[derive(Deserialize)]
struct ConfigFile {
    auths: Option<BTreeMap<String, Option<Entry>>>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers")]
    cred_helpers: Option<BTreeMap<String, String>>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .finish_non_exhaustive()
    }
}

impl DockerConfig {
    /// Reads `path`. A missing file is an empty config (anonymous everywhere): a function deployed
    /// without `registry-secret` can still build and push to an open registry.
    ///
    /// # Errors
    /// The file exists but cannot be read, or [`DockerConfig::from_json`] rejects it.
    pub fn load(path: &Path) -> Result<Self, DockerConfigError> {
        match std::fs::read(path) {
            Ok(json) => Self::from_json(&json, path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(DockerConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses a `config.json`; `origin` only names it in errors. An empty file is an empty config.
    ///
    /// # Errors
    /// Not JSON of a docker config, or an `auth` that is not base64 of `user:password`.
    pub fn from_json(json: &[u8], origin: &Path) -> Result<Self, DockerConfigError> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let file: ConfigFile = serde_json::from_slice(json).map_err(|err| {
            let (kind, line, column) = json_problem(&err);
            DockerConfigError::Parse {
                path: origin.to_owned(),
                kind,
                line,
                column,
            }
        })?;
        let mut auths = BTreeMap::new();
        for (key, entry) in file.auths.unwrap_or_default() {
            let mut entry = entry.unwrap_or_default();
            if !entry.decode_auth() {
                return Err(DockerConfigError::BadAuth {
                    path: origin.to_owned(),
                    host: key,
                });
            }
            auths.insert(key, entry);
        }
        Ok(Self {
            auths,
            creds_store: file.creds_store.filter(|name| !name.is_empty()),
            cred_helpers: file.cred_helpers.unwrap_or_default(),
            ..Self::default()
        })
    }

    /// Credentials for `host` as BuildKit names it (`registry-1.docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`). Runs the credential helper for `host` if there is one; dropping the
    /// future kills it.
    ///
    /// # Errors
    /// The credential helper for `host` is missing, fails, answers nonsense or gives no answer
    /// in time.
    pub async fn credentials(&self, host: &str) -> Result<Credentials, DockerConfigError> {
        let (_, entry) = self.lookup(host).await?;
        Ok(if !entry.identity_token.is_empty() {
            Credentials {
                username: String::new(),
                secret: entry.identity_token,
            }
        } else if entry.username.is_empty() && entry.password.is_empty() {
            Credentials {
                username: String::new(),
                secret: entry.registry_token,
            }
        } else {
            Credentials {
                username: entry.username,
                secret: entry.password,
            }
        })
    }

    /// The `X-Registry-Auth` value for a push to `host`: base64url of the Engine's `AuthConfig`
    /// JSON, or `e30=` (`{}`) when there are no credentials. May run a helper, as
    /// [`Self::credentials`] does.
    ///
    /// # Errors
    /// As [`DockerConfig::credentials`].
    pub async fn registry_auth_header(&self, host: &str) -> Result<String, DockerConfigError> {
        let (server, entry) = self.lookup(host).await?;
        if entry.is_empty() {
            return Ok(ANONYMOUS_HEADER.to_owned());
        }
        // The Engine's `AuthConfig` JSON, empty fields left out as the docker CLI leaves them out.
        let fields = [
            ("username", entry.username.as_str()),
            ("password", &entry.password),
            ("serveraddress", &server),
            ("identitytoken", &entry.identity_token),
            ("registrytoken", &entry.registry_token),
        ];
        let fields = fields.into_iter().filter(|(_, value)| !value.is_empty());
        let json: serde_json::Map<_, _> = fields
            .map(|(key, value)| (key.to_owned(), value.into()))
            .collect();
        Ok(URL_SAFE.encode(serde_json::Value::Object(json).to_string()))
    }

    /// The registries this config holds credentials for, normalised (`docker.io` for Docker
    /// Hub): the `auths` keys (where `docker login` records every host, helper or not) and the
    /// `credHelpers` keys. A host only the `credsStore` knows is not among them.
    pub(crate) fn registries(&self) -> std::collections::BTreeSet<String> {
        self.auths
            .keys()
            .chain(self.cred_helpers.keys())
            .map(|key| registry_host(key))
            .collect()
    }

    /// Runs helpers with `helpers` (tests point it at fakes and shorten its timeout).
    #[cfg(test)]
    fn with_helpers(mut self, helpers: HelperRunner) -> Self {
        self.helpers = helpers;
        self
    }

    /// The server address naming `host` (Docker Hub's config key for Docker Hub) and what is
    /// stored for it, in docker/cli's order: per-host helper, default helper, `auths`. A
    /// per-host helper named `""` sends the host to `auths`, as in docker/cli.
    async fn lookup(&self, host: &str) -> Result<(String, Entry), DockerConfigError> {
        let wanted = registry_host(host);
        let server = if wanted == "docker.io" {
            DOCKER_HUB_KEY.to_owned()
        } else {
            host.to_owned()
        };
        let helper = find(&self.cred_helpers, &server, &wanted).or(self.creds_store.as_ref());
        let entry = match helper.filter(|name| !name.is_empty()) {
            Some(name) => match self.helpers.get(name, &server).await? {
                Some(answer) => Entry::from_helper(answer),
                // As in docker/cli, the helper's "not found" is anonymous, whatever `auths` says.
                None => Entry::default(),
            },
            None => find(&self.auths, &server, &wanted)
                .cloned()
                .unwrap_or_default(),
        };
        Ok((server, entry))
    }
}

#[cfg(any(test, feature = "internals"))]
impl DockerConfig {
    /// Whether looking a host up may run a credential helper.
    pub(crate) fn has_helpers(&self) -> bool {
        self.creds_store.is_some() || self.cred_helpers.values().any(|name| !name.is_empty())
    }

    /// The keys of `auths`.
    pub(crate) fn hosts(&self) -> Vec<String> {
        self.auths.keys().cloned().collect()
    }
}

impl Entry {
    /// A helper's answer; `<token>` as the username marks an identity token.
    fn from_helper(answer: HelperAnswer) -> Self {
        if answer.username == HELPER_TOKEN_USERNAME {
            Self {
                identity_token: answer.secret,
                ..Self::default()
            }
        } else {
            Self {
                username: answer.username,
                password: answer.secret,
                ..Self::default()
            }
        }
    }

    /// Moves `auth` into `username` and `password`; false when it is not base64 of
    /// `user:password` with a non-empty user.
    fn decode_auth(&mut self) -> bool {
        let auth = std::mem::take(&mut self.auth);
        if auth.trim().is_empty() {
            return true;
        }
        let decoded = AUTH_BASE64
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        match decoded
            .as_deref()
            .and_then(|decoded| decoded.split_once(':'))
        {
            Some((username, password)) if !username.is_empty() => {
                self.username = username.to_owned();
                self.password = password.trim_matches('\0').to_owned();
                true
            }
            _ => false,
        }
    }

    fn is_empty(&self) -> bool {
        [
            &self.username,
            &self.password,
            &self.identity_token,
            &self.registry_token,
        ]
        .iter()
        .all(|s| s.is_empty())
    }
}

/// The value under `server` exactly, else under the first key naming the same registry host.
fn find<'a, V>(map: &'a BTreeMap<String, V>, server: &str, wanted: &str) -> Option<&'a V> {
    map.get(server).or_else(|| {
        map.iter()
            .find(|(key, _)| registry_host(key) == wanted)
            .map(|(_, value)| value)
    })
}

/// The host a config key or a BuildKit host names, like docker/cli's `ConvertToHostname`: scheme
/// and path dropped; also lowercased and with Docker Hub's names folded into `docker.io`.
pub(crate) fn registry_host(name: &str) -> String {
    let rest = name.split_once("://").map_or(name, |(_, rest)| rest);
    let host = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_owned()
    } else {
        host
    }
}

/// Where and what kind of JSON problem, without serde_json's message (it can quote values).
fn json_problem(err: &serde_json::Error) -> (&'static str, usize, usize) {
    let kind = match err.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected value",
        Category::Eof => "unexpected end",
    };
    (kind, err.line(), err.column())
}
