//! A small HTTP/1.1 client for tests: one request per connection, the response body left streaming.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// A request body a test can stream.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// An empty request body.
pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request body of `bytes`, all at once.
pub fn full(bytes: Vec<u8>) -> TestBody {
    http_body_util::Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// A request body of `chunks` as they come, e.g. a trickle or a body that stops.
pub fn streamed(
    chunks: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
) -> TestBody {
    use futures_util::StreamExt;
    http_body_util::StreamBody::new(chunks.map(|chunk| chunk.map(hyper::body::Frame::data)))
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed()
}

/// A `POST /build` of `body` that promises 64 MiB and is signed for other bytes: a body that
/// is never accepted, for tests of what happens while it streams.
pub fn promised_upload(body: TestBody, signature: String) -> http::Request<TestBody> {
    http::Request::post("/build")
        .header("host", "builder")
        .header("content-length", (64u64 << 20).to_string())
        .header("x-build-signature", signature)
        .body(body)
        .unwrap()
}

/// Sends `req` on a new TCP connection to `addr`.
///
/// # Panics
/// When the connection or the exchange fails.
pub async fn send_tcp(addr: SocketAddr, req: http::Request<TestBody>) -> http::Response<Incoming> {
    let stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    send(stream, req).await
}

/// Sends `req` on a new connection to the unix socket at `path`.
///
/// # Panics
/// When the connection or the exchange fails.
pub async fn send_unix(path: &Path, req: http::Request<TestBody>) -> http::Response<Incoming> {
    let stream = UnixStream::connect(path)
        .await
        .unwrap_or_else(|err| panic!("connect {}: {err}", path.display()));
    send(stream, req).await
}

async fn send<S>(stream: S, req: http::Request<TestBody>) -> http::Response<Incoming>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn.with_upgrades());
    sender.send_request(req).await.expect("send request")
}

/// Reads a whole response body.
///
/// # Panics
/// When reading fails.
pub async fn read_body(resp: http::Response<Incoming>) -> Bytes {
    resp.into_body()
        .collect()
        .await
        .expect("read response body")
        .to_bytes()
}
