//! Transports: one gRPC channel to the daemon from an [`Address`], over a unix socket, TCP (with
//! optional mutual TLS) or the Docker Engine's `/grpc` upgrade.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::{Address, BuildkitError};

/// TLS for a `tcp://` daemon: the same four settings as buildctl's `--tlscacert`, `--tlscert`,
/// `--tlskey` and `--tlsservername`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signed the daemon's certificate.
    pub ca: PathBuf,
    /// Client certificate, for mutual TLS (buildkitd with `--tlscacert` requires one).
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
    /// Name to verify the daemon's certificate against; default the address's host.
    pub server_name: Option<String>,
}

/// A daemon that does not answer the dial (dropped packets) fails the request instead of
/// hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on a connection with calls in flight find a daemon that went away silently.
/// Not more often: buildkitd's gRPC server (grpc-go's default policy) closes connections that
/// ping more often than every 5 minutes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(300);
/// How long a ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
type BoxedIo = Pin<Box<dyn Io>>;

/// Connects to the daemon at `address`.
///
/// # Errors
/// [`BuildkitError::Tls`] for unusable TLS files; [`BuildkitError::Unavailable`] when the daemon
/// cannot be reached.
pub(crate) async fn connect(
    address: &Address,
    tls: Option<&TlsFiles>,
) -> Result<Channel, BuildkitError> {
    let tls = match (address, tls) {
        (Address::Tcp { host, .. }, Some(files)) => Some(Arc::new(tls_connector(files, host)?)),
        (_, Some(_)) => {
            return Err(BuildkitError::Tls {
                message: format!("TLS files given for {address}: only tcp:// uses TLS"),
            })
        }
        (_, None) => None,
    };
    // The authority is not checked by buildkitd or dockerd; for TLS the server name is in the handshake.
    let authority = match address {
        Address::Tcp { host, port } if !host.contains(':') => format!("http://{host}:{port}"),
        _ => "http://buildkitd".to_owned(),
    };
    let target = Arc::new((address.clone(), tls));
    let connector = tower::service_fn(move |_: Uri| {
        let target = Arc::clone(&target);
        async move { dial(&target.0, target.1.as_deref()).await.map(TokioIo::new) }
    });
    Endpoint::from_shared(authority)
        .map_err(|err| unavailable(address, err))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .connect_with_connector(connector)
        .await
        .map_err(|err| unavailable(address, err))
}

fn unavailable(address: &Address, err: impl std::error::Error) -> BuildkitError {
    // tonic's transport error hides the cause one level down.
    let message = crate::error::error_chain(&err);
    BuildkitError::Unavailable {
        address: address.to_string(),
        message,
    }
}

/// Opens one byte stream that speaks HTTP/2 to the daemon.
async fn dial(
    address: &Address,
    tls: Option<&(TlsConnector, ServerName<'static>)>,
) -> io::Result<BoxedIo> {
    match address {
        Address::Unix(path) => Ok(Box::pin(UnixStream::connect(path).await?)),
        Address::Tcp { host, port } => {
            let tcp = TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            match tls {
                Some((connector, name)) => {
                    Ok(Box::pin(connector.connect(name.clone(), tcp).await?))
                }
                None => Ok(Box::pin(tcp)),
            }
        }
        Address::Docker(socket) => docker_grpc(socket).await,
    }
}

/// `POST /grpc` with `Upgrade: h2c` on the Engine's socket; after the 101 the socket carries
/// HTTP/2 with prior knowledge. hyper keeps any bytes the daemon sent right after the 101.
async fn docker_grpc(socket: &Path) -> io::Result<BoxedIo> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(conn.with_upgrades());
    let req = http::Request::post("/grpc")
        .header(http::header::HOST, "api.moby.localhost")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(io::Error::other)?;
    let resp = sender.send_request(req).await.map_err(io::Error::other)?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(io::Error::other(format!(
            "docker engine answered POST /grpc with {} instead of 101 (is this a Docker Engine with BuildKit?)",
            resp.status()
        )));
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(io::Error::other)?;
    Ok(Box::pin(TokioIo::new(upgraded)))
}

fn tls_connector(
    files: &TlsFiles,
    host: &str,
) -> Result<(TlsConnector, ServerName<'static>), BuildkitError> {
    let fail = |message: String| BuildkitError::Tls { message };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| fail(format!("CA file {}: {e}", files.ca.display())))?
    {
        let cert = cert.map_err(|e| fail(format!("CA file {}: {e}", files.ca.display())))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("CA file {}: {e}", files.ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(format!("client certificate {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| fail(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(fail(
                "a client certificate needs its key and a key its certificate".to_owned(),
            ))
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = files.server_name.as_deref().unwrap_or(host);
    let name = ServerName::try_from(name.to_owned())
        .map_err(|e| fail(format!("server name {name:?}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}
