//! A real token-auth registry on loopback: Debian's `docker-registry` (distribution 2.8) with
//! `auth: token`, and an in-process token issuer of the test's own that signs its JWTs.
//!
//! Issuer policy, for one account (`builder`, a random password per start):
//! - `GET /token?service=…&scope=…` (`scope` may repeat, one value may hold several
//!   space-separated scopes; `account=` is accepted and ignored, the identity comes from
//!   `Authorization`). With `Authorization: Basic` of the account, every requested action of every
//!   `repository:<name>:<actions>` scope is granted; with a wrong user or password the answer is
//!   401. Without `Authorization` (anonymous) only `pull` of repositories under `public/` is
//!   granted: the token's access list lacks the rest, and the registry refuses it.
//! - `POST /token` with a form body: `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token` = the password, as an identity token); the same
//!   policy.
//! - The answer: `{"token", "access_token", "expires_in": 300, "issued_at"}`, an ES256 JWT with
//!   `x5c` = the issuer's self-signed certificate, which is the registry's `rootcertbundle`.
//!
//! Only answered token requests are recorded ([`TokenRegistry::requests`]); refused ones (401)
//! are not.
//!
//! ```no_run
//! # async fn example(bed: &function_builder_tests::bed::Bed) {
//! use function_builder_tests::token_registry::{DockerCli, TokenRegistry};
//! let registry = TokenRegistry::start().await;
//! registry.push(bed, &bed.base_image, "tenant-b/private:1");
//! let anonymous = DockerCli::new(bed, "{}");
//! let image = format!("{}/tenant-b/private:1", registry.addr());
//! assert!(!anonymous.run(&["pull", &image]).0);
//! # }
//! ```

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::rand::{self, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::bed::Bed;

/// The registry's service name: the `aud` of the tokens.
const SERVICE: &str = "fb-test-registry";
/// The tokens' `iss`, which the registry trusts.
const ISSUER: &str = "fb-test-issuer";
const USER: &str = "builder";
/// Token lifetime; the registry allows 60 s of clock skew on top.
const TOKEN_SECONDS: u64 = 300;
/// How long the registry may take to listen: it starts in well under a second, but the bed may be
/// busy with builds on 2 cores.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A docker-registry (Debian's `docker-registry`, distribution 2.8) configured with `auth: token`,
/// and an in-process token issuer signing its own JWTs: a real token-auth registry on loopback.
/// Dropping it kills the registry and stops the issuer.
pub struct TokenRegistry {
    addr: String,
    issuer: Arc<Issuer>,
    registry: Child,
    stop: Option<oneshot::Sender<()>>,
    issuer_thread: Option<std::thread::JoinHandle<()>>,
    dir: TempDir,
}

/// One request the issuer answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The authenticated account; `None`: anonymous (no `Authorization` header).
    pub account: Option<String>,
    /// The `scope` values as sent (each may hold several space-separated scopes).
    pub scopes: Vec<String>,
    /// What the token granted, as `repository:<name>:<actions comma-joined>`.
    pub granted: Vec<String>,
}

impl TokenRegistry {
    /// Starts the issuer and the registry on free loopback ports, and waits until the registry
    /// listens. Its files live in a temp dir under the bed's (`FB_BED_DIR`) when there is one, so
    /// the bed's cleanup finds a registry a killed test left behind.
    ///
    /// # Panics
    /// When a port, the temp dir or the key cannot be had, or the registry does not listen within
    /// 30 s (with its log).
    pub async fn start() -> Self {
        let dir = match std::env::var_os("FB_BED_DIR") {
            Some(bed_dir) => tempfile::Builder::new()
                .prefix("token-registry.")
                .tempdir_in(bed_dir),
            None => tempfile::Builder::new().prefix("token-registry.").tempdir(),
        }
        .expect("temp dir for the token registry");
        let rng = SystemRandom::new();
        let password = hex::encode(random::<12>(&rng));
        let (issuer, cert_pem) = Issuer::new(password, rng);
        let issuer = Arc::new(issuer);
        let cert_path = dir.path().join("issuer.pem");
        std::fs::write(&cert_path, cert_pem).expect("write the issuer's certificate");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the issuer");
        listener.set_nonblocking(true).unwrap();
        let issuer_port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel();
        // A thread and runtime of its own: tests call the Docker CLI synchronously, which would
        // starve an issuer on the test's own (current-thread) runtime while dockerd waits on it.
        let issuer_thread = std::thread::Builder::new()
            .name("token-issuer".to_owned())
            .spawn({
                let issuer = Arc::clone(&issuer);
                move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("issuer runtime")
                        .block_on(serve(listener, issuer, stopped));
                }
            })
            .expect("start the issuer thread");

        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = registry_config(dir.path(), &addr, issuer_port, &cert_path, &issuer.rng);
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write the registry's config");
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (Debian package docker-registry)");
        let mut started = Self {
            addr,
            issuer,
            registry,
            stop: Some(stop),
            issuer_thread: Some(issuer_thread),
            dir,
        };
        started.wait_until_listening().await;
        started
    }

    /// `127.0.0.1:<port>` of the registry.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The one account: `builder`.
    pub fn user(&self) -> &str {
        USER
    }

    /// The account's password, random per start.
    pub fn password(&self) -> &str {
        &self.issuer.password
    }

    /// Every token request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.issuer.requests.lock().unwrap().clone()
    }

    /// A Docker CLI `config.json` holding the account's credentials for this registry.
    pub fn docker_config_json(&self) -> String {
        let auth = STANDARD.encode(format!("{USER}:{}", self.password()));
        json!({ "auths": { &self.addr: { "auth": auth } } }).to_string()
    }

    /// Pushes `source` (an image in the bed's dockerd, e.g. the bed's base image) as
    /// `<addr>/<path>`, logged in as the account with `docker login` in a DOCKER_CONFIG of its
    /// own; the new tag is removed from the Engine afterwards, so a later pull fetches it.
    ///
    /// # Panics
    /// When login, tag or push fail, with the CLI's stderr and the registry's log.
    pub fn push(&self, bed: &Bed, source: &str, path: &str) {
        let target = format!("{}/{path}", self.addr);
        let cli = DockerCli::new(bed, "{}");
        let login = ["login", "--username", USER, "--password-stdin", &self.addr];
        let (ok, _, stderr) = cli.run_with_stdin(&login, self.password());
        assert!(ok, "docker login {}: {stderr}{}", self.addr, self.log());
        let (ok, _, stderr) = cli.run(&["tag", source, &target]);
        assert!(ok, "docker tag {source} {target}: {stderr}");
        let (pushed, _, push_stderr) = cli.run(&["push", "-q", &target]);
        let (ok, _, stderr) = cli.run(&["rmi", &target]);
        assert!(pushed, "docker push {target}: {push_stderr}{}", self.log());
        assert!(ok, "docker rmi {target}: {stderr}");
    }

    /// The registry's log so far, for failure messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        format!("\n--- docker-registry log ---\n{log}")
    }

    async fn wait_until_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                return;
            }
            if let Some(status) = self.registry.try_wait().unwrap() {
                panic!("docker-registry exited: {status}{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "docker-registry did not listen on {} within {START_TIMEOUT:?}{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        let _ = self.registry.kill();
        let _ = self.registry.wait();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.issuer_thread.take() {
            let _ = thread.join();
        }
    }
}

/// The Docker CLI against the bed's Engine with a DOCKER_CONFIG of its own (a temp dir holding
/// `config.json`), so a test chooses which registry credentials it holds.
pub struct DockerCli {
    socket: PathBuf,
    config: TempDir,
}

impl DockerCli {
    /// A CLI whose `config.json` is `config_json` (`"{}"`: no credentials).
    ///
    /// # Panics
    /// When the temp dir cannot be written.
    pub fn new(bed: &Bed, config_json: &str) -> Self {
        let config = tempfile::tempdir().expect("temp dir for DOCKER_CONFIG");
        std::fs::write(config.path().join("config.json"), config_json).unwrap();
        Self {
            socket: bed.docker_socket.clone(),
            config,
        }
    }

    /// Runs the CLI; returns (success, stdout, stderr).
    ///
    /// # Panics
    /// When the CLI cannot be started.
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        let mut child = Command::new("/usr/bin/docker")
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.config.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run /usr/bin/docker");
        // A failed write (the CLI did not read) shows in its exit status and stderr.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().expect("wait for /usr/bin/docker");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The registry's config: token auth against the issuer, storage in `dir`.
fn registry_config(
    dir: &Path,
    addr: &str,
    issuer_port: u16,
    cert: &Path,
    rng: &SystemRandom,
) -> String {
    let storage = dir.join("storage");
    let secret = hex::encode(random::<16>(rng));
    format!(
        "version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {addr}
  secret: {secret}
auth:
  token:
    realm: http://127.0.0.1:{issuer_port}/token
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {cert}
",
        storage = storage.display(),
        cert = cert.display(),
    )
}

/// A loopback port free now (the registry binds it a moment later; nothing else here races).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

fn random<const N: usize>(rng: &SystemRandom) -> [u8; N] {
    rand::generate(rng).expect("random bytes").expose()
}

/// The token issuer: its signing key and certificate, the account, what it answered.
struct Issuer {
    key: EcdsaKeyPair,
    /// The certificate's DER, standard base64, for the JWT header's `x5c`.
    cert_b64: String,
    password: String,
    rng: SystemRandom,
    requests: Mutex<Vec<TokenRequest>>,
}

/// Who asks for a token.
enum Identity {
    Anonymous,
    Account,
    Refused,
}

impl Issuer {
    /// An issuer with a fresh P-256 key and a self-signed certificate of it; returns the
    /// certificate's PEM too (the registry's `rootcertbundle`).
    fn new(password: String, rng: SystemRandom) -> (Self, String) {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, ISSUER);
        let cert = params.self_signed(&key_pair).expect("self-sign the issuer");
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            key_pair.serialized_der(),
            &rng,
        )
        .expect("ring reads rcgen's PKCS#8 key");
        let issuer = Self {
            key,
            cert_b64: STANDARD.encode(cert.der()),
            password,
            rng,
            requests: Mutex::new(Vec::new()),
        };
        (issuer, cert.pem())
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/token" {
            return plain(StatusCode::NOT_FOUND, "not found");
        }
        let (parts, body) = req.into_parts();
        let (identity, scopes) = match parts.method {
            Method::GET => {
                let params = form_pairs(parts.uri.query().unwrap_or(""));
                let authorization = parts.headers.get(http::header::AUTHORIZATION);
                (self.identify_basic(authorization), values(&params, "scope"))
            }
            Method::POST => {
                let Ok(body) = body.collect().await else {
                    return plain(StatusCode::BAD_REQUEST, "unreadable body");
                };
                let params = form_pairs(&String::from_utf8_lossy(&body.to_bytes()));
                (self.identify_form(&params), values(&params, "scope"))
            }
            _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST"),
        };
        let account = match identity {
            Identity::Refused => return plain(StatusCode::UNAUTHORIZED, "wrong credentials"),
            Identity::Anonymous => None,
            Identity::Account => Some(USER),
        };
        let access = grant(account.is_some(), &scopes);
        let token = self.sign(account.unwrap_or(""), &access);
        self.requests.lock().unwrap().push(TokenRequest {
            account: account.map(str::to_owned),
            scopes,
            granted: access
                .iter()
                .map(|(name, actions)| format!("repository:{name}:{}", actions.join(",")))
                .collect(),
        });
        let issued_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let answer = json!({
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_SECONDS,
            "issued_at": issued_at,
        });
        Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(answer.to_string())))
            .unwrap()
    }

    fn identify_basic(&self, authorization: Option<&http::HeaderValue>) -> Identity {
        let Some(value) = authorization else {
            return Identity::Anonymous;
        };
        let credentials = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
            .and_then(|decoded| String::from_utf8(decoded).ok());
        match credentials.as_deref().and_then(|c| c.split_once(':')) {
            Some((user, password)) => self.check(user, password),
            None => Identity::Refused,
        }
    }

    fn identify_form(&self, params: &[(String, String)]) -> Identity {
        let value = |key: &str| values(params, key).pop().unwrap_or_default();
        match value("grant_type").as_str() {
            "password" => self.check(&value("username"), &value("password")),
            "refresh_token" => self.check(USER, &value("refresh_token")),
            _ => Identity::Refused,
        }
    }

    fn check(&self, user: &str, password: &str) -> Identity {
        if user == USER && password == self.password {
            Identity::Account
        } else {
            Identity::Refused
        }
    }

    /// A compact ES256 JWT as distribution 2.8 verifies it: `x5c` chained to its
    /// `rootcertbundle`, `aud` a single string, the signature JOSE's R||S.
    fn sign(&self, subject: &str, access: &[(String, Vec<String>)]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": [self.cert_b64] });
        let access: Vec<_> = access
            .iter()
            .map(
                |(name, actions)| json!({ "type": "repository", "name": name, "actions": actions }),
            )
            .collect();
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + TOKEN_SECONDS,
            "nbf": now,
            "iat": now,
            "jti": hex::encode(random::<16>(&self.rng)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("sign the token");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// The policy: the account gets every requested action of every `repository:` scope; anonymous
/// only `pull` under `public/`. Returns (name, actions) pairs, none with no actions.
fn grant(account: bool, scopes: &[String]) -> Vec<(String, Vec<String>)> {
    scopes
        .iter()
        .flat_map(|value| value.split_whitespace())
        .filter_map(|scope| {
            // repository:<name>:<actions>; a name holds no ':' but a class-typed scope's type may
            // (`repository(plugin)`), which is not granted.
            let rest = scope.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<String> = actions
                .split(',')
                .filter(|action| account || (*action == "pull" && name.starts_with("public/")))
                .map(str::to_owned)
                .collect();
            (!actions.is_empty()).then(|| (name.to_owned(), actions))
        })
        .collect()
}

/// Serves the issuer on `listener` until `stopped`; every connection is dropped then.
async fn serve(
    listener: std::net::TcpListener,
    issuer: Arc<Issuer>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("issuer listener");
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        while connections.try_join_next().is_some() {}
        let issuer = Arc::clone(&issuer);
        let service = hyper::service::service_fn(move |req| {
            let issuer = Arc::clone(&issuer);
            async move { Ok::<_, Infallible>(issuer.answer(req).await) }
        });
        connections.spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

fn plain(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(message.as_bytes())))
        .unwrap()
}

fn values(params: &[(String, String)], key: &str) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

/// `application/x-www-form-urlencoded` pairs (a query string or a form body).
fn form_pairs(encoded: &str) -> Vec<(String, String)> {
    encoded
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key), form_decode(value))
        })
        .collect()
}

fn form_decode(encoded: &str) -> String {
    percent_encoding::percent_decode_str(&encoded.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
