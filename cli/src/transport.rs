//! One HTTP/1.1 connection to a builder or gateway URL: `http://`, or `https://` verified
//! against the system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured) or a `--cacert`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;

/// An open connection and what requests on it need.
pub(crate) struct Connection {
    pub(crate) sender: SendRequest<openfaas_runtime::Body>,
    /// `host[:port]` for the Host header.
    pub(crate) authority: String,
    /// The URL's path, `/build` when it has none.
    pub(crate) path: String,
}

/// Where requests go.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    /// Replaces the system roots for `https://`.
    pub(crate) cacert: Option<PathBuf>,
}

impl Target {
    /// Connects to the URL.
    pub(crate) async fn connect(&self) -> Result<Connection> {
        connect(&self.url, self.cacert.as_deref()).await
    }
}

async fn connect(url: &str, cacert: Option<&Path>) -> Result<Connection> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("builder URL {url:?}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => bail!("builder URL {url:?}: expected http:// or https://"),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow!("builder URL {url:?} has no host"))?
        .clone();
    let path = match uri.path() {
        "" | "/" => "/build".to_owned(),
        path => path.to_owned(),
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let sender = if https {
        let connector = connector(cacert)?;
        let name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("builder URL {url:?}: {host:?} is not a TLS server name"))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {authority}"))?;
        handshake(tls).await?
    } else {
        handshake(tcp).await?
    };
    Ok(Connection {
        sender,
        authority: authority.as_str().to_owned(),
        path,
    })
}

async fn handshake<T>(io: T) -> Result<SendRequest<openfaas_runtime::Body>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

fn connector(cacert: Option<&Path>) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    match cacert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading --cacert {}", path.display()))?;
            if certs.is_empty() {
                bail!("--cacert {}: no PEM certificate in it", path.display());
            }
            for cert in certs {
                roots
                    .add(cert)
                    .with_context(|| format!("--cacert {}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Unreadable entries are skipped, as every other TLS client on the machine does.
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                bail!("no CA certificates found on this system; pass --cacert");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
