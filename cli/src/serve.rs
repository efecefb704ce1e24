//! `serve`: the production builder (`handler::route` on the template runtime) on a local port,
//! building with the local Docker Engine unless told otherwise.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub(crate) port: u16,
    /// BuildKit address (unix://, tcp://, docker://); default the local Docker Engine.
    #[arg(
        long,
        value_name = "ADDR",
        env = "BUILDKIT_HOST",
        hide_env_values = true
    )]
    buildkit: Option<String>,
    /// Payload secret file; one that does not exist yet is created with a generated secret (and
    /// kept). Without this flag a secret is generated into a temp file, removed when serve
    /// stops. Either way a generated secret is printed once.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// The network of RUN steps.
    #[arg(long, value_enum, default_value_t = Network::Default)]
    network: Network,
    /// The private key that opens sealed build secrets (as `function-builder keygen` writes it;
    /// the builder's build_secrets_private_key_path). Its public half is served at /publickey.
    #[arg(long, value_name = "FILE")]
    build_secrets_key: Option<PathBuf>,
}

/// `--network`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Network {
    /// The daemon's default network.
    Default,
    /// No network: for untrusted code, and on a daemon without a bridge.
    None,
}

/// How long requests may take; a local build gets as long as the production default allows.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves until SIGINT (Ctrl-C; then [`Interrupted`]) or SIGTERM. Then it stops accepting and returns at once: the
/// caller drops the builds in flight, which cancels them in BuildKit (a local server has no
/// queue-worker to retry, and whoever stops it wants the daemon idle, not a drain of minutes).
pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    init_logging();
    let buildkit = match args.buildkit {
        Some(address) => address,
        None => local_engine(std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))?,
    };
    let mut settings = handler::Settings::from_env()?;
    settings.buildkit = buildkit.parse()?;
    settings.network = match args.network {
        Network::None => buildkit::NetworkMode::None,
        Network::Default => buildkit::NetworkMode::Default,
    };
    if let Some(path) = &args.build_secrets_key {
        let key = handler::sealed::OpeningKey::load(path)
            .map_err(|e| anyhow!("--build-secrets-key {e}"))?;
        settings.secrets_key = Some(key);
    }
    // Registered before binding, so a Ctrl-C that comes early still stops cleanly.
    let stop = stop_signal()?;
    // Bound before any secret is written or printed: a taken port leaves nothing behind.
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let secret = SecretFile::prepare(args.secret_file)?;
    settings.payload_secret_path = secret.path().to_owned();
    if let Some(key) = &settings.secrets_key {
        println!(
            "build secrets open with key {}; its public key is at http://{addr}/publickey",
            key.public().key_id
        );
    }
    let builder = handler::Builder::new(settings);
    println!("builder listening on http://{addr}/build (BuildKit: {buildkit})");
    let handler = openfaas_runtime::handler_fn(move |req| {
        let builder = Arc::clone(&builder);
        async move { handler::route(&builder, req).await }
    });
    let config = openfaas_runtime::Config {
        addr,
        read_timeout: Some(REQUEST_TIMEOUT),
        write_timeout: Some(REQUEST_TIMEOUT),
        ..openfaas_runtime::Config::default()
    };
    let stopped_by = tokio::select! {
        served = openfaas_runtime::serve_with(listener, config, handler, std::future::pending()) => {
            served?;
            None
        }
        name = stop => {
            tracing::info!("{name} received: stopping, builds in flight are cancelled");
            Some(name)
        }
    };
    drop(secret);
    match stopped_by {
        // Ctrl-C ends a foreground program with 130 whether it handles the signal or dies of it:
        // a shell that waits for it (deploy/quickstart's bed) then says so, without a race on
        // which of the two got the signal first.
        Some("SIGINT") => Err(Interrupted.into()),
        _ => Ok(()),
    }
}

/// `serve` stopped by Ctrl-C: the process exits 130, as a shell reports a Ctrl-C.
#[derive(Debug)]
pub(crate) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// The production server's log lines (one per request, one per build, with the call id), on
/// stderr as of-watchdog would pass them on.
fn init_logging() {
    let _already_set = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes with the signal's name on SIGINT or SIGTERM.
fn stop_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    let mut term = signal(SignalKind::terminate()).context("watching for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("watching for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// The payload secret file: the user's (kept), or a generated temp file (removed on drop).
enum SecretFile {
    Named(PathBuf),
    Temp(tempfile::TempPath),
}

impl SecretFile {
    /// Uses `named` as it is, creates it with a generated secret when it does not exist, or
    /// generates a temp one; prints a generated secret.
    fn prepare(named: Option<PathBuf>) -> Result<Self> {
        match named {
            Some(path) if path.exists() => Ok(Self::Named(path)),
            Some(path) => {
                let secret = generate_secret()?;
                write_private_file(&path, secret.as_bytes())
                    .with_context(|| format!("writing the payload secret to {}", path.display()))?;
                println!(
                    "payload secret (generated into {}): {secret}",
                    path.display()
                );
                Ok(Self::Named(path))
            }
            None => {
                let secret = generate_secret()?;
                // Created with mode 600, removed when serve stops.
                let mut file = tempfile::Builder::new()
                    .prefix("function-builder-secret-")
                    .tempfile()
                    .context("creating a temp file for the payload secret")?;
                file.write_all(secret.as_bytes())
                    .and_then(|()| file.flush())
                    .with_context(|| {
                        format!("writing the payload secret to {}", file.path().display())
                    })?;
                let path = file.into_temp_path();
                println!(
                    "payload secret (also in {}, removed when serve stops): {secret}",
                    path.display()
                );
                Ok(Self::Temp(path))
            }
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::Named(path) => path,
            Self::Temp(path) => path,
        }
    }
}

/// Writes `content` into a new file only its owner can read; an existing file is an
/// `AlreadyExists` error, left as it is.
pub(crate) fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(content).and_then(|()| file.sync_all()))
}

/// 32 bytes from the OS's random source, as hex.
fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("no OS randomness: {err}"))?;
    Ok(hex::encode(bytes))
}

/// The BuildKit address of the local Docker Engine: `DOCKER_HOST` as the docker CLI reads it, or
/// the default socket; an error saying what to configure when there is none.
fn local_engine(docker_host: Option<String>) -> Result<String> {
    const HINT: &str =
        "or pass --buildkit unix:///run/buildkit/buildkitd.sock (or set BUILDKIT_HOST)";
    let socket = match &docker_host {
        None => PathBuf::from(buildkit::DEFAULT_DOCKER_SOCKET),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) => PathBuf::from(path),
            None => bail!(
                "DOCKER_HOST={host}: only a Docker Engine on a unix:// socket can be used; \
                 unset it to use {}, {HINT}",
                buildkit::DEFAULT_DOCKER_SOCKET
            ),
        },
    };
    if !socket.exists() {
        let named_by = match docker_host {
            Some(_) => "named by DOCKER_HOST",
            None => "the default",
        };
        bail!(
            "no BuildKit to build with: start a Docker Engine (its socket {}, {named_by}, is \
             missing), {HINT}",
            socket.display()
        );
    }
    Ok(format!("docker://{}", socket.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_engine_follows_docker_host_and_says_what_to_configure() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        std::fs::write(&socket, "").unwrap();
        let host = |s: &str| Some(s.to_owned());
        assert_eq!(
            local_engine(host(&format!("unix://{}", socket.display()))).unwrap(),
            format!("docker://{}", socket.display())
        );
        assert_eq!(
            local_engine(host("unix:///nowhere/docker.sock"))
                .unwrap_err()
                .to_string(),
            "no BuildKit to build with: start a Docker Engine (its socket /nowhere/docker.sock, \
             named by DOCKER_HOST, is missing), or pass --buildkit \
             unix:///run/buildkit/buildkitd.sock (or set BUILDKIT_HOST)"
        );
        assert_eq!(
            local_engine(host("tcp://10.0.0.1:2376"))
                .unwrap_err()
                .to_string(),
            "DOCKER_HOST=tcp://10.0.0.1:2376: only a Docker Engine on a unix:// socket can be \
             used; unset it to use /var/run/docker.sock, or pass --buildkit \
             unix:///run/buildkit/buildkitd.sock (or set BUILDKIT_HOST)"
        );
    }
}
