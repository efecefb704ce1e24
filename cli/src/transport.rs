//! One HTTP/1.1 connection to a builder or gateway URL: `http://`, or `https://` verified
//! against the system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured) or a `--cacert`.
//! A builder's answer is read even when it stops reading the request first (413, 401, …).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};

use anyhow::{anyhow, bail, Context, Result};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;

/// An open connection and what requests on it need.
pub(crate) struct Connection {
    sender: SendRequest<openfaas_runtime::Body>,
    /// The write error that cut the request short, if the builder stopped reading it.
    cut: Cut,
    /// `host[:port]` for the Host header.
    pub(crate) authority: String,
    /// The URL's path, `/build` when it has none.
    pub(crate) path: String,
}

impl Connection {
    /// Sends `req` and returns the answer, its body streaming; an answer the builder gave while
    /// refusing the rest of the request (413, 401, 429, 503) is returned like any other.
    ///
    /// # Errors
    ///
    /// When no answer could be read: the write error that cut the request, when the builder
    /// closed the connection while it was being sent, else hyper's error.
    pub(crate) async fn send(
        &mut self,
        req: http::Request<openfaas_runtime::Body>,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        match self.sender.send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(err) => match self.cut.0.get() {
                Some(write) => Err(anyhow!(
                    "the builder closed the connection while the request was being sent: {write}"
                )),
                None => Err(err.into()),
            },
        }
    }
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
    // Below TLS, so its records stay whole: the cut is seen where it happens.
    let (tcp, cut) = KeepReading::new(tcp);
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
        cut,
        authority: authority.as_str().to_owned(),
        path,
    })
}

async fn handshake<T>(io: T) -> Result<SendRequest<openfaas_runtime::Body>>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The first write error that said the peer stopped reading, shared with the [`Connection`].
#[derive(Clone, Default)]
struct Cut(Arc<OnceLock<io::Error>>);

/// A connection that goes on reading after the peer stopped reading it.
///
/// A builder refuses an upload (too large, bad signature) as soon as it knows, answers and
/// closes; the rest of the upload then fails with a broken pipe or a reset, and hyper, once a
/// body write fails, gives that error instead of the answer already received. After such a
/// write error this takes every later write and drops it, so hyper goes on to read the answer
/// (Linux keeps what was received readable before it reports the reset). With no answer to
/// read, the read fails as well and [`Connection::send`] names the write error.
struct KeepReading<T> {
    io: T,
    cut: Cut,
}

impl<T> KeepReading<T> {
    fn new(io: T) -> (Self, Cut) {
        let cut = Cut::default();
        let io = Self {
            io,
            cut: cut.clone(),
        };
        (io, cut)
    }

    /// `written` as hyper should see it: `len` bytes taken if the peer has stopped reading.
    fn taken(&self, written: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Err(err)) if stopped_reading(&err) => {
                let _ = self.cut.0.set(err);
                Poll::Ready(Ok(len))
            }
            written => written,
        }
    }

    fn is_cut(&self) -> bool {
        self.cut.0.get().is_some()
    }
}

fn stopped_reading(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for KeepReading<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for KeepReading<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut() {
            return Poll::Ready(Ok(buf.len()));
        }
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.taken(written, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum();
        if self.is_cut() {
            return Poll::Ready(Ok(len));
        }
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.taken(written, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.is_cut() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        if self.is_cut() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
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

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use http_body_util::BodyExt;

    use super::*;

    const REFUSAL: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\n\
        Content-Type: application/json\r\nContent-Length: 65\r\nConnection: close\r\n\r\n\
        {\"status\":\"failed\",\"error\":\"request body larger than 1024 bytes\"}";

    /// A builder that takes the first `takes` bytes of the request and then stops reading, so
    /// writes fail with a broken pipe. When `early`, its `answer` is readable once it has the
    /// request's first bytes, and writes wait until hyper has read it all; else the answer is
    /// readable only once a write has failed: hyper meets the failure before anything to read,
    /// the order the sockets' race only sometimes gives. After the answer, reads see the reset.
    struct Refusing {
        takes: usize,
        taken: usize,
        answer: Vec<u8>,
        early: bool,
        refused: bool,
        reader: Option<Waker>,
        writer: Option<Waker>,
    }

    fn wake(waker: &mut Option<Waker>) {
        if let Some(waker) = waker.take() {
            waker.wake();
        }
    }

    impl AsyncRead for Refusing {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let readable = self.refused || (self.early && self.taken > 0);
            if !readable {
                self.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if self.answer.is_empty() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let n = buf.remaining().min(self.answer.len());
            buf.put_slice(&self.answer[..n]);
            self.answer.drain(..n);
            if self.answer.is_empty() {
                wake(&mut self.writer);
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Refusing {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.early && self.taken > 0 && !self.answer.is_empty() {
                self.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if self.taken == self.takes {
                self.refused = true;
                wake(&mut self.reader);
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let n = buf.len().min(self.takes - self.taken);
            self.taken += n;
            if self.early {
                wake(&mut self.reader);
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// POSTs 1 MiB to a [`Refusing`] builder that takes 64 KiB; returns the status and body read.
    async fn post_to_refusing(answer: &[u8], early: bool) -> Result<(http::StatusCode, String)> {
        let (io, cut) = KeepReading::new(Refusing {
            takes: 64 << 10,
            taken: 0,
            answer: answer.to_vec(),
            early,
            refused: false,
            reader: None,
            writer: None,
        });
        let mut conn = Connection {
            sender: handshake(io).await?,
            cut,
            authority: "builder".to_owned(),
            path: "/build".to_owned(),
        };
        let req = http::Request::post("/build")
            .header(http::header::HOST, "builder")
            .header(http::header::CONTENT_LENGTH, 1 << 20)
            .body(openfaas_runtime::Body::from(vec![0; 1 << 20]))?;
        let resp = conn.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8(body.to_vec())?))
    }

    #[tokio::test]
    async fn an_answer_behind_the_failed_write_is_read() {
        let (status, body) = post_to_refusing(REFUSAL, false).await.unwrap();
        assert_eq!(status, http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.ends_with("larger than 1024 bytes\"}"), "{body}");
    }

    /// hyper hands over an answer read before the write fails; what fails after must not cut
    /// its body short.
    #[tokio::test]
    async fn an_answer_before_the_failed_write_is_read_whole() {
        let (status, body) = post_to_refusing(REFUSAL, true).await.unwrap();
        assert_eq!(status, http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.ends_with("larger than 1024 bytes\"}"), "{body}");
    }

    #[tokio::test]
    async fn a_refusal_without_an_answer_names_the_failed_write() {
        let err = post_to_refusing(b"", false).await.unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "the builder closed the connection while the request was being sent: broken pipe"
        );
    }
}
