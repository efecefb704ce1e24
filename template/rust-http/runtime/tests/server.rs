//! The server in-process on 127.0.0.1:0, driven by a real HTTP/1.1 client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use openfaas_runtime::{handler_fn, serve_with, Body, Config, Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: Config, handler: impl openfaas_runtime::Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            serve_with(listener, config, handler, async move {
                stopped.await.unwrap_or(())
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            stop: Some(stop),
            done,
        }
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut self.done)
            .await
            .unwrap()
            .unwrap();
    }
}

type ClientBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Sends one request on a fresh connection; returns the response with its body still streaming.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: ClientBody,
) -> http::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "function")
        .header("x-call-id", "test-call")
        .body(body)
        .unwrap();
    sender.send_request(req).await.unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let resp = send(addr, Method::GET, path, empty()).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn empty() -> ClientBody {
    http_body_util::Empty::new().boxed()
}

fn config(read: u64, write: u64) -> Config {
    Config {
        addr: ([127, 0, 0, 1], 0).into(),
        read_timeout: Some(Duration::from_millis(read)),
        write_timeout: Some(Duration::from_millis(write)),
        header_timeout: None,
    }
}

async fn routes(req: Request) -> Response {
    match req.uri().path() {
        "/panic" => panic!("boom"),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Response::new(Body::from("late"))
        }
        "/collect" => match req.into_body().collect_bytes(1 << 20).await {
            Ok(bytes) => Response::new(Body::from(format!("{} bytes", bytes.len()))),
            Err(err) => http::Response::builder()
                .status(408)
                .body(Body::from(err.to_string()))
                .unwrap(),
        },
        _ => Response::new(Body::from("ok")),
    }
}

#[tokio::test]
async fn a_panicking_handler_gets_500_json_and_the_next_request_succeeds() {
    let server = Server::start(config(5_000, 5_000), handler_fn(routes)).await;
    let resp = send(server.addr, Method::GET, "/panic", empty()).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"status": "failed", "error": "internal error: the handler panicked"})
    );

    assert_eq!(
        get(server.addr, "/").await,
        (StatusCode::OK, "ok".to_owned())
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_response_streams_before_the_handler_has_produced_all_of_it() {
    let (more_tx, more_rx) = mpsc::channel::<&'static str>(1);
    let more_rx = std::sync::Mutex::new(Some(more_rx));
    let handler = handler_fn(move |_req: Request| {
        let rx = more_rx.lock().unwrap().take().unwrap();
        async move {
            let chunks = tokio_stream_from(rx).map(|s| Ok::<_, Infallible>(Bytes::from(s)));
            Response::new(Body::from_stream(chunks))
        }
    });
    let server = Server::start(config(5_000, 5_000), handler).await;
    let resp = send(server.addr, Method::GET, "/", empty()).await;
    let mut body = resp.into_body();
    more_tx.send("first ").await.unwrap();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        &frame[..],
        b"first ",
        "the first chunk arrives while the handler is still producing"
    );
    more_tx.send("second").await.unwrap();
    drop(more_tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
    server.shutdown().await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_request_body_that_stalls_past_read_timeout_fails_to_read() {
    let server = Server::start(config(300, 5_000), handler_fn(routes)).await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tx.send(Ok(Frame::data(Bytes::from_static(b"partial"))))
        .await
        .unwrap();
    let stalled = BodyExt::boxed(StreamBody::new(tokio_stream_from(rx)));
    let resp = send(server.addr, Method::POST, "/collect", stalled).await;
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"body not transferred within read_timeout");
    drop(tx);
    server.shutdown().await;
}

#[tokio::test]
async fn a_handler_slower_than_write_timeout_gets_503_json() {
    let server = Server::start(config(5_000, 300), handler_fn(routes)).await;
    let (status, body) = get(server.addr, "/slow").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        r#"{"error":"the function did not answer within write_timeout (0.3s)","status":"failed"}"#
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_refuses_new_connections_and_finishes_in_flight_requests() {
    let (more_tx, more_rx) = mpsc::channel::<&'static str>(1);
    let more_rx = std::sync::Mutex::new(Some(more_rx));
    let handler = handler_fn(move |_req: Request| {
        let rx = more_rx.lock().unwrap().take().unwrap();
        async move {
            let chunks = tokio_stream_from(rx).map(|s| Ok::<_, Infallible>(Bytes::from(s)));
            Response::new(Body::from_stream(chunks))
        }
    });
    let server = Server::start(config(5_000, 10_000), handler).await;
    let addr = server.addr;
    let resp = send(addr, Method::GET, "/", empty()).await;
    let stopping = tokio::spawn(server.shutdown());

    // The listener closes at once: a new connection is refused while the old one is still served.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "new connections must be refused after shutdown began"
    );
    assert!(
        !stopping.is_finished(),
        "the server waits for the in-flight request"
    );

    more_tx.send("done").await.unwrap();
    drop(more_tx);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"done");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_header_that_stalls_past_the_header_timeout_closes_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // read_timeout is long, as a builder's is for its uploads; the header timeout is not.
    let config = Config {
        header_timeout: Some(Duration::from_millis(300)),
        ..config(60_000, 60_000)
    };
    let server = Server::start(config, handler_fn(routes)).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for stream in [&mut idle, &mut half] {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest));
        assert_eq!(
            closed.await.unwrap().unwrap(),
            0,
            "closed without an answer"
        );
    }
    assert_eq!(get(server.addr, "/").await.0, StatusCode::OK);
    server.shutdown().await;
}
