//! `serve`: the production builder (`handler::route` on the template runtime) on a local port,
//! building with the local Docker Engine unless told otherwise.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub(crate) port: u16,
    /// BuildKit address (unix://, tcp://, docker://); default the local Docker Engine.
    #[arg(long, env = "BUILDKIT_HOST")]
    buildkit: Option<String>,
    /// Payload secret file; one that does not exist yet is created with a generated secret.
    /// Without this flag a secret is generated into a temp file. Either way it is printed once.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// `none` gives RUN steps no network.
    #[arg(long, default_value = "default")]
    network: String,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    let buildkit = match args.buildkit {
        Some(address) => address,
        None => local_engine(std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))?,
    };
    let mut settings = handler::Settings::from_env()?;
    settings.buildkit = buildkit.parse()?;
    settings.network = match args.network.as_str() {
        "none" => buildkit::NetworkMode::None,
        "default" => buildkit::NetworkMode::Default,
        other => bail!("--network {other:?}: expected default or none"),
    };
    settings.payload_secret_path = match args.secret_file {
        Some(path) if path.exists() => path,
        Some(path) => {
            let secret = write_new_secret(&path)?;
            println!(
                "payload secret (generated into {}): {secret}",
                path.display()
            );
            path
        }
        None => {
            let path = std::env::temp_dir()
                .join(format!("function-builder-secret-{}", std::process::id()));
            let secret = write_new_secret(&path)?;
            println!("payload secret (also in {}): {secret}", path.display());
            path
        }
    };
    let builder = handler::Builder::new(settings);
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    println!("builder listening on http://{addr}/build (BuildKit: {buildkit})");
    let handler = openfaas_runtime::handler_fn(move |req| {
        let builder = Arc::clone(&builder);
        async move { handler::route(&builder, req).await }
    });
    let config = openfaas_runtime::Config {
        addr,
        read_timeout: Some(Duration::from_secs(600)),
        write_timeout: Some(Duration::from_secs(600)),
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    openfaas_runtime::serve_with(listener, config, handler, shutdown).await?;
    Ok(())
}

/// Writes a fresh secret into a new file only its owner can read; returns the secret.
fn write_new_secret(path: &std::path::Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let secret = generate_secret()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(secret.as_bytes()))
        .with_context(|| format!("writing the payload secret to {}", path.display()))?;
    Ok(secret)
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
