//! The builder behind the template server on 127.0.0.1:0, and request tars shaped like the
//! official clients' (Python, Node, Go, PHP), signed like them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use buildkit::{Address, NetworkMode};
use handler::{Builder, Settings};
use hmac::{Hmac, Mac};
use openfaas_runtime::{handler_fn, serve_with, Config, Request};
use sha2::Sha256;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::bed::Bed;

/// The payload secret the test builders use.
pub const SECRET: &str = "test-payload-secret";

/// A builder served in-process; stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    builder: Arc<Builder>,
    _stop: oneshot::Sender<()>,
    dir: TempDir,
}

/// Settings for a builder against the bed's dockerd, with `RUN` steps on network none.
///
/// # Panics
/// When the temp dir cannot be written.
pub fn settings(bed: &Bed, dir: &Path) -> Settings {
    let secret = dir.join("payload-secret");
    std::fs::write(&secret, format!("  {SECRET}\n")).unwrap();
    Settings {
        payload_secret_path: secret,
        disable_hmac: false,
        max_request_bytes: 256 << 20,
        max_unpacked_bytes: 512 << 20,
        max_entries: 10_000,
        buildkit: Address::Docker(bed.docker_socket.clone()).into(),
        buildkit_load_factor: 1.25,
        buildkit_probe_interval: Duration::from_secs(5),
        buildkit_tls: None,
        docker_config: dir.join("no-config.json"),
        network: NetworkMode::None,
        build_timeout: Duration::from_secs(300),
        work_dir: dir.join("work"),
        // As `allowed_remote_sources` defaults with network none: no remote source.
        policy: handler::Policy {
            remote_sources: buildkit::RemoteSources::Only(Vec::new()),
            ..handler::Policy::default()
        },
        secrets_key: None,
        cache_repository: None,
        insecure_registries: Vec::new(),
        // Served only where a test asks ([`Server::serve_metrics`]).
        metrics_port: None,
        attest: handler::AttestDefaults::default(),
    }
}

impl Server {
    /// Starts a builder with settings from [`settings`], changed by `tweak`.
    ///
    /// # Panics
    /// When it cannot listen.
    pub async fn start(bed: &Bed, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::start_serving(bed, |_| {}, tweak).await
    }

    /// [`Server::start`], with the server's timeouts changed by `serving`.
    ///
    /// # Panics
    /// When it cannot listen.
    pub async fn start_serving(
        bed: &Bed,
        serving: impl FnOnce(&mut Config),
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(bed, dir.path());
        tweak(&mut settings);
        std::fs::create_dir_all(&settings.work_dir).unwrap();
        let builder = Builder::new(settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = Config {
            addr,
            read_timeout: Some(Duration::from_secs(300)),
            write_timeout: Some(Duration::from_secs(300)),
            ..Config::default()
        };
        serving(&mut config);
        let routed = Arc::clone(&builder);
        let handler = handler_fn(move |req: Request| {
            let builder = Arc::clone(&routed);
            async move { handler::route(&builder, req).await }
        });
        tokio::spawn(async move {
            let _ = serve_with(listener, config, handler, async move {
                let _ = stopped.await;
            })
            .await;
        });
        Self {
            addr,
            builder,
            _stop: stop,
            dir,
        }
    }
}

/// One builder per daemon of the bed ([`Bed::daemons`]: its dockerd, and a standalone buildkitd
/// when the bed names one), each named by its daemon's address for messages.
pub async fn servers(bed: &Bed, tweak: impl Fn(&mut Settings)) -> Vec<(String, Server)> {
    let mut out = Vec::new();
    for daemon in bed.daemons() {
        let server = Server::start(bed, |s| {
            s.buildkit = daemon.address.clone().into();
            s.buildkit_tls = daemon.tls.clone();
            tweak(s);
        })
        .await;
        out.push((daemon.address.to_string(), server));
    }
    out
}

impl Server {
    /// Serves the builder's metrics on a loopback port of their own; returns where.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn serve_metrics(&self) -> SocketAddr {
        self.builder
            .serve_metrics(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap()
    }

    /// What is left in the builder's `work_dir` (request temp dirs): nothing, between requests.
    ///
    /// # Panics
    /// When the dir cannot be read.
    pub fn work_dir_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("work"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// GETs `path`; returns the status and the JSON answer.
    ///
    /// # Panics
    /// When the exchange fails or the answer is not JSON.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let req = http::Request::get(path)
            .header("host", "builder")
            .body(crate::client::empty())
            .unwrap();
        let resp = crate::client::send_tcp(self.addr, req).await;
        let status = resp.status().as_u16();
        let body = crate::client::read_body(resp).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// POSTs `tar` to `/build`, signed with [`SECRET`], and returns the status and the JSON
    /// answer.
    ///
    /// # Panics
    /// When the exchange fails or the answer is not JSON.
    pub async fn post_signed(&self, tar: Vec<u8>) -> (u16, serde_json::Value) {
        let answer = self.post_signed_with(tar, &[]).await;
        (answer.status, answer.json)
    }

    /// POSTs `tar` to `/build` with extra `headers`, signed with [`SECRET`].
    ///
    /// # Panics
    /// When the exchange fails or the answer is not JSON.
    pub async fn post_signed_with(&self, tar: Vec<u8>, headers: &[(&str, &str)]) -> Answered {
        post_signed_to(self.addr, tar, headers).await
    }
}

/// POSTs `tar` to `/build` of the builder at `addr`, signed with [`SECRET`], with extra
/// `headers`.
///
/// # Panics
/// When the exchange fails or the answer is not JSON.
pub async fn post_signed_to(addr: SocketAddr, tar: Vec<u8>, headers: &[(&str, &str)]) -> Answered {
    let mut req = http::Request::post("/build")
        .header("host", "builder")
        .header("x-build-signature", sign(SECRET, &tar));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(crate::client::full(tar)).unwrap();
    let resp = crate::client::send_tcp(addr, req).await;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = crate::client::read_body(resp).await;
    Answered {
        status,
        retry_after,
        json: serde_json::from_slice(&body)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&body))),
    }
}

/// A builder's answer to one request.
#[derive(Debug)]
pub struct Answered {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The JSON body.
    pub json: serde_json::Value,
}

/// `sha256=<hex>` of `body` under `secret`, as every client computes it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// How an official client lays out its tar.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Python `tarfile`: config first, then `context` and its entries, no `./`.
    Python,
    /// Node `tar.c(['./context', './com.openfaas.docker.config'])`: `./`-prefixed, config last.
    Node,
    /// go-sdk `MakeTar`: a `context` root entry, files, config last (mode 0664).
    Go,
    /// PHP Zippy over `build/`: everything under `./`, with a `./` root entry.
    Php,
}

/// One entry of a request tar.
pub enum Item<'a> {
    /// A directory.
    Dir(&'a str),
    /// A regular file with its mode.
    File(&'a str, &'a [u8], u32),
    /// A symlink and its target.
    Symlink(&'a str, &'a str),
    /// A hardlink and its target.
    Hardlink(&'a str, &'a str),
    /// A fifo.
    Fifo(&'a str),
}

/// A tar of `items` with names written exactly as given (the tar crate would drop `./`).
///
/// # Panics
/// When a name does not fit a 100-byte ustar name.
pub fn raw_tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_ustar();
        let (name, data): (&str, &[u8]) = match item {
            Item::Dir(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (name, &[])
            }
            Item::File(name, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (name, data)
            }
            Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                let kind = if matches!(item, Item::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                header.set_entry_type(kind);
                header.set_mode(0o777);
                header.set_link_name(target).unwrap();
                (name, &[])
            }
            Item::Fifo(name) => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_mode(0o644);
                (name, &[])
            }
        };
        let bytes = name.as_bytes();
        assert!(bytes.len() < 100, "{name}");
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A request tar for `config` and a context of `files` (path, content, mode), laid out as
/// `shape`'s client does.
pub fn request_tar(shape: Shape, config: &str, files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let prefix = match shape {
        Shape::Python | Shape::Go => "",
        Shape::Node | Shape::Php => "./",
    };
    let config_name = format!("{prefix}com.openfaas.docker.config");
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut parent = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            parent = if parent.is_empty() {
                (*part).to_owned()
            } else {
                format!("{parent}/{part}")
            };
            dirs.insert(parent.clone());
        }
    }
    let context_dir = match shape {
        Shape::Go => format!("{prefix}context"),
        _ => format!("{prefix}context/"),
    };
    let dir_names: Vec<String> = dirs
        .iter()
        .map(|d| format!("{prefix}context/{d}/"))
        .collect();
    let file_names: Vec<String> = files
        .iter()
        .map(|(p, _, _)| format!("{prefix}context/{p}"))
        .collect();
    let mut items = Vec::new();
    if matches!(shape, Shape::Php) {
        items.push(Item::Dir("./"));
    }
    let config_mode = if matches!(shape, Shape::Go) {
        0o664
    } else {
        0o644
    };
    let config_item = Item::File(&config_name, config.as_bytes(), config_mode);
    let config_first = matches!(shape, Shape::Python | Shape::Php);
    if config_first {
        items.push(config_item);
    }
    items.push(Item::Dir(&context_dir));
    for name in &dir_names {
        items.push(Item::Dir(name));
    }
    for (name, (_, data, mode)) in file_names.iter().zip(files) {
        items.push(Item::File(name, data, *mode));
    }
    if !config_first {
        items.push(Item::File(&config_name, config.as_bytes(), config_mode));
    }
    raw_tar(&items)
}
