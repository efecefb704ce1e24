//! Registry credentials from a Docker `config.json` (the OpenFaaS secret `registry-secret`), for
//! BuildKit's session call `Auth.Credentials` and for the Engine's `X-Registry-Auth` push header.
//!
//! A host's credentials come from where docker/cli takes them (`ConfigFile.GetCredentialsStore`,
//! `nativeStore.Get`): the `credHelpers` entry for the host, else the `credsStore` helper, else
//! `auths`. With a helper configured, `auths` is not consulted for secrets and the helper's "not
//! found" means anonymous, so a file behaves here as it does for `docker push`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::error::Category;

/// The key `docker login` writes for Docker Hub, and the server address its helpers know it by.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Docker Hub's names: BuildKit asks for `registry-1.docker.io`, image references say `docker.io`.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// What every docker-credential-helpers helper prints when it holds nothing for a host.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";
/// The username under which a helper keeps an identity token.
const HELPER_TOKEN_USERNAME: &str = "<token>";
/// A helper waiting on a prompt or a locked keychain would otherwise hold the build forever.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// A failing helper's output is quoted in the error only this far (in characters).
const HELPER_MESSAGE_LIMIT: usize = 300;
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
/// host up may run a credential helper, which blocks, so async callers use `spawn_blocking`.
#[derive(Clone, Default)]
pub struct DockerConfig {
    auths: BTreeMap<String, Entry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
    /// `PATH` for helpers; `None` for the process's own (tests point it at fakes).
    helper_path: Option<OsString>,
    /// `None` for [`HELPER_TIMEOUT`] (tests shorten it).
    helper_timeout: Option<Duration>,
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

/// A helper's answer to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
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
    /// `127.0.0.1:5000`). Blocking when a credential helper is configured.
    ///
    /// # Errors
    /// The credential helper for `host` is missing, fails or answers nonsense.
    pub fn credentials(&self, host: &str) -> Result<Credentials, DockerConfigError> {
        let (_, entry) = self.lookup(host)?;
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
    /// JSON, or `e30=` (`{}`) when there are no credentials. Blocking like [`Self::credentials`].
    ///
    /// # Errors
    /// As [`DockerConfig::credentials`].
    pub fn registry_auth_header(&self, host: &str) -> Result<String, DockerConfigError> {
        let (server, entry) = self.lookup(host)?;
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

    /// Runs helpers with `path` as their `PATH` and gives up on them after `timeout`.
    #[cfg(test)]
    fn with_helpers(mut self, path: OsString, timeout: Duration) -> Self {
        self.helper_path = Some(path);
        self.helper_timeout = Some(timeout);
        self
    }

    /// The server address naming `host` (Docker Hub's config key for Docker Hub) and what is
    /// stored for it, in docker/cli's order: per-host helper, default helper, `auths`. A
    /// per-host helper named `""` sends the host to `auths`, as in docker/cli.
    fn lookup(&self, host: &str) -> Result<(String, Entry), DockerConfigError> {
        let wanted = registry_host(host);
        let server = if wanted == "docker.io" {
            DOCKER_HUB_KEY.to_owned()
        } else {
            host.to_owned()
        };
        let helper = find(&self.cred_helpers, &server, &wanted).or(self.creds_store.as_ref());
        let entry = match helper.filter(|name| !name.is_empty()) {
            Some(name) => self.ask_helper(name, &server)?,
            None => find(&self.auths, &server, &wanted)
                .cloned()
                .unwrap_or_default(),
        };
        Ok((server, entry))
    }

    /// `docker-credential-<name> get` with `server` on stdin, as docker-credential-helpers'
    /// client runs it; its "not found" is anonymous.
    fn ask_helper(&self, name: &str, server: &str) -> Result<Entry, DockerConfigError> {
        let program = format!("docker-credential-{name}");
        let fail = |message: String| DockerConfigError::Helper {
            helper: program.clone(),
            host: server.to_owned(),
            message,
        };
        let mut command = Command::new(&program);
        command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.helper_path {
            command.env("PATH", path);
        }
        let mut child = command
            .spawn()
            .map_err(|err| fail(format!("cannot run it: {err}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading closes the pipe; its exit status says the rest.
            let _ = stdin.write_all(server.as_bytes());
        }
        let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
        let timeout = self.helper_timeout.unwrap_or(HELPER_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("no answer within {timeout:?}")));
                }
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        if !status.success() {
            let (out, err) = (
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr),
            );
            if out.contains(HELPER_NOT_FOUND) || err.contains(HELPER_NOT_FOUND) {
                return Ok(Entry::default());
            }
            let said = [out.trim(), err.trim()]
                .into_iter()
                .find(|said| !said.is_empty())
                .unwrap_or("no message");
            return Err(fail(format!(
                "{status}: {}",
                said.chars().take(HELPER_MESSAGE_LIMIT).collect::<String>()
            )));
        }
        let answer: HelperAnswer = serde_json::from_slice(&stdout).map_err(|err| {
            let (kind, line, column) = json_problem(&err);
            fail(format!(
                "unreadable answer: {kind} at line {line} column {column}"
            ))
        })?;
        Ok(if answer.username == HELPER_TOKEN_USERNAME {
            Entry {
                identity_token: answer.secret,
                ..Entry::default()
            }
        } else {
            Entry {
                username: answer.username,
                password: answer.secret,
                ..Entry::default()
            }
        })
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
fn registry_host(name: &str) -> String {
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

/// Reads a child's pipe on a thread of its own, so a chatty helper never stalls on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    const ORIGIN: &str = "/secrets/config.json";

    fn config(json: &str) -> DockerConfig {
        DockerConfig::from_json(json.as_bytes(), Path::new(ORIGIN)).unwrap()
    }

    fn creds(username: &str, secret: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            secret: secret.to_owned(),
        }
    }

    fn header_json(header: Result<String, DockerConfigError>) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE.decode(header.unwrap()).unwrap()).unwrap()
    }

    /// The error `json` gives, and its Display and Debug together (to look for leaks in).
    fn rejected(json: &str) -> (DockerConfigError, String) {
        let err = DockerConfig::from_json(json.as_bytes(), Path::new(ORIGIN)).unwrap_err();
        let shown = format!("{err} {err:?}");
        (err, shown)
    }

    #[test]
    fn reads_each_entry_shape() {
        let c = config(
            r#"{"auths": {"a.example": {"auth": "dXNlcjpwYTpzcw=="}, "a2.example": {"auth": "aHViOnB3"},
                "b.example": {"username": "bob", "password": "pw"}, "c.example": {"identitytoken": "idt"},
                "d.example": {"registrytoken": "rt"}, "e.example": {}, "f.example": null}}"#,
        );
        assert_eq!(c.credentials("a.example").unwrap(), creds("user", "pa:ss"));
        assert_eq!(c.credentials("a2.example").unwrap(), creds("hub", "pw"));
        assert_eq!(c.credentials("b.example").unwrap(), creds("bob", "pw"));
        assert_eq!(c.credentials("c.example").unwrap(), creds("", "idt"));
        assert_eq!(c.credentials("d.example").unwrap(), creds("", "rt"));
        for host in ["e.example", "f.example", "unknown.example"] {
            assert!(c.credentials(host).unwrap().is_anonymous(), "{host}");
        }
        assert!(config(" \n").credentials("ghcr.io").unwrap().is_anonymous());
    }

    #[test]
    fn matches_keys_by_host_and_docker_hub_by_its_login_key() {
        let c = config(
            r#"{"auths": {"https://ghcr.io": {"username": "g", "password": "1"},
                "http://Local.example:5000/v2/": {"username": "l", "password": "2"},
                "127.0.0.1:5000": {"username": "i", "password": "3"}, "https://index.docker.io/v1/": {"auth": "aHViOnB3"}}}"#,
        );
        assert_eq!(c.credentials("ghcr.io").unwrap(), creds("g", "1"));
        assert_eq!(
            c.credentials("local.example:5000").unwrap(),
            creds("l", "2")
        );
        assert_eq!(c.credentials("127.0.0.1:5000").unwrap(), creds("i", "3"));
        assert!(c.credentials("127.0.0.1").unwrap().is_anonymous());
        for host in ["registry-1.docker.io", "docker.io", "index.docker.io"] {
            assert_eq!(c.credentials(host).unwrap(), creds("hub", "pw"), "{host}");
        }
        let expected = json!({"username": "hub", "password": "pw", "serveraddress": "https://index.docker.io/v1/"});
        assert_eq!(header_json(c.registry_auth_header("docker.io")), expected);
    }

    #[test]
    fn a_missing_file_is_an_empty_config_and_a_directory_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert!(DockerConfig::load(&path)
            .unwrap()
            .credentials("ghcr.io")
            .unwrap()
            .is_anonymous());
        std::fs::write(&path, r#"{"auths": {"ghcr.io": {"auth": "aHViOnB3"}}}"#).unwrap();
        assert_eq!(
            DockerConfig::load(&path)
                .unwrap()
                .credentials("ghcr.io")
                .unwrap(),
            creds("hub", "pw")
        );
        let err = DockerConfig::load(dir.path()).unwrap_err();
        assert!(matches!(err, DockerConfigError::Read { .. }), "{err:?}");
    }

    #[test]
    fn invalid_json_names_the_file_and_not_its_content() {
        for json in [
            r#"{"auths": {"x": {"password": "hunter2"#,
            r#"{"auths": "hunter2"}"#,
            "hunter2",
        ] {
            let (err, shown) = rejected(json);
            assert!(matches!(err, DockerConfigError::Parse { .. }), "{shown}");
            assert!(
                shown.contains(ORIGIN) && !shown.contains("hunter2"),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_bad_auth_names_the_host_only() {
        // Not base64; base64 of "hunter2" (no colon); base64 of ":hunter2" (no user).
        for auth in ["hunter2!", "aHVudGVyMg==", "Omh1bnRlcjI="] {
            let (err, shown) = rejected(&format!(
                r#"{{"auths": {{"ghcr.io": {{"auth": "{auth}"}}}}}}"#
            ));
            assert!(
                matches!(&err, DockerConfigError::BadAuth { host, .. } if host == "ghcr.io"),
                "{shown}"
            );
            assert!(
                shown.contains(ORIGIN) && !shown.contains(auth) && !shown.contains("hunter2"),
                "{shown}"
            );
        }
    }

    #[test]
    fn the_header_carries_the_engine_auth_config() {
        let c = config(
            r#"{"auths": {"127.0.0.1:5000": {"username": "bob", "password": "pw"}, "ghcr.io": {"identitytoken": "idt"},
                "r.example": {"registrytoken": "rt"}, "e.example": {}}}"#,
        );
        let expected =
            json!({"username": "bob", "password": "pw", "serveraddress": "127.0.0.1:5000"});
        assert_eq!(
            header_json(c.registry_auth_header("127.0.0.1:5000")),
            expected
        );
        assert_eq!(
            header_json(c.registry_auth_header("ghcr.io")),
            json!({"identitytoken": "idt", "serveraddress": "ghcr.io"})
        );
        let expected = json!({"registrytoken": "rt", "serveraddress": "r.example"});
        assert_eq!(header_json(c.registry_auth_header("r.example")), expected);
        assert_eq!(c.registry_auth_header("e.example").unwrap(), "e30=");
        assert_eq!(c.registry_auth_header("nowhere.example").unwrap(), "e30=");
        assert_eq!(header_json(Ok("e30=".to_owned())), json!({}));
    }

    const FAKE_HELPER: &str = r#"#!/bin/sh
[ "$1" = get ] || exit 2
case "$(cat)" in
  ghcr.io) echo '{"ServerURL": "ghcr.io", "Username": "helper-user", "Secret": "helper-pass"}' ;;
  https://index.docker.io/v1/) echo '{"Username": "<token>", "Secret": "hub-token"}' ;;
  broken.example) echo 'keychain is locked' >&2; exit 1 ;;
  garbled.example) echo '{"Username": "u", "Secret": "hunter2' ;;
  slow.example) exec sleep 10 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;

    /// The config in `json`, running helpers from a temp dir that holds a fake `docker-credential-test`.
    fn with_fake_helper(json: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-test");
        std::fs::write(&script, FAKE_HELPER).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let system = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(dir.path().to_owned()).chain(std::env::split_paths(&system)),
        );
        let config = config(json).with_helpers(path.unwrap(), Duration::from_secs(2));
        (dir, config)
    }

    #[test]
    fn a_store_helper_answers_for_every_host_before_auths() {
        let (_dir, c) = with_fake_helper(
            r#"{"credsStore": "test", "auths": {"ghcr.io": {"auth": "aHViOnB3"}, "o.example": {"auth": "aHViOnB3"}}}"#,
        );
        assert_eq!(
            c.credentials("ghcr.io").unwrap(),
            creds("helper-user", "helper-pass")
        );
        // As in docker/cli, the store's "not found" is anonymous even beside an `auths` entry.
        assert!(c.credentials("o.example").unwrap().is_anonymous());
        assert_eq!(c.registry_auth_header("o.example").unwrap(), "e30=");
        // Docker Hub is asked for by its login key, and `<token>` marks an identity token.
        assert_eq!(
            c.credentials("registry-1.docker.io").unwrap(),
            creds("", "hub-token")
        );
        let expected =
            json!({"identitytoken": "hub-token", "serveraddress": "https://index.docker.io/v1/"});
        assert_eq!(header_json(c.registry_auth_header("docker.io")), expected);
    }

    #[test]
    fn a_host_helper_wins_and_an_empty_one_sends_the_host_to_auths() {
        let (_dir, c) = with_fake_helper(
            r#"{"credsStore": "absent", "credHelpers": {"https://ghcr.io": "test", "q.example": ""},
                "auths": {"ghcr.io": {"auth": "aHViOnB3"}, "q.example": {"auth": "aHViOnB3"}}}"#,
        );
        assert_eq!(
            c.credentials("ghcr.io").unwrap(),
            creds("helper-user", "helper-pass")
        );
        assert_eq!(c.credentials("q.example").unwrap(), creds("hub", "pw"));
        let err = c.credentials("o.example").unwrap_err();
        let absent = matches!(&err, DockerConfigError::Helper { helper, .. } if helper == "docker-credential-absent");
        assert!(absent && err.to_string().contains("cannot run"), "{err}");
    }

    #[test]
    fn helper_failures_are_errors_without_secrets() {
        let (_dir, c) = with_fake_helper(r#"{"credsStore": "test"}"#);
        let failures = [
            ("broken.example", "keychain is locked"),
            ("garbled.example", "unreadable"),
            ("slow.example", "no answer"),
        ];
        for (host, says) in failures {
            let err = c.credentials(host).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                matches!(&err, DockerConfigError::Helper { host: asked, .. } if asked == host),
                "{shown}"
            );
            assert!(
                shown.contains(says)
                    && shown.contains("docker-credential-test")
                    && !shown.contains("hunter2"),
                "{shown}"
            );
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = config(
            r#"{"auths": {"a.example": {"auth": "dXNlcjpwYTpzcw=="}, "b.example": {"username": "bob", "password": "hunter2"},
                "c.example": {"identitytoken": "tok-hunter2"}}, "credHelpers": {"gcr.io": "gcloud"}}"#,
        );
        let (a, b) = (
            c.credentials("a.example").unwrap(),
            c.credentials("b.example").unwrap(),
        );
        let shown = format!("{c:?} {a:?} {b:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("dXNl") && !shown.contains("pa:ss"),
            "{shown}"
        );
        assert!(
            shown.contains("b.example") && shown.contains("gcloud") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert_eq!(
            format!("{:?}", Credentials::default()),
            r#"Credentials { username: "", secret: <empty> }"#
        );
    }
}
