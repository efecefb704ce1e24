//! The template runtime as the process of-watchdog starts: streaming memory, SIGTERM draining and
//! request logs, observed from outside.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use function_builder_tests::client::{empty, read_body, send_tcp, TestBody};
use futures_util::{stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::mpsc;

/// The probe server's stderr lines, forwarded so the test can look for log lines.
struct Probe {
    child: Child,
    addr: SocketAddr,
    log: mpsc::UnboundedReceiver<String>,
}

impl Probe {
    /// Starts the probe on an ephemeral port and waits for its `listening` line.
    async fn start(timeouts: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_probe-server"))
            .env("upstream_url", "http://127.0.0.1:0")
            .env("read_timeout", timeouts)
            .env("write_timeout", timeouts)
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start probe-server");
        let mut log = forward_lines(child.stderr.take().unwrap());
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(10), log.recv())
                .await
                .expect("probe-server logs `listening` within 10 s")
                .expect("probe-server exited before listening");
            if let Some(addr) = line.split("addr=").nth(1) {
                break addr.trim().parse().unwrap();
            }
        };
        Self { child, addr, log }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Peak resident set size of the process so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// Waits for a log line containing every one of `parts`.
    async fn expect_log(&mut self, parts: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let line = tokio::time::timeout_at(deadline, self.log.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {parts:?} within 10 s"))
                .unwrap_or_else(|| panic!("probe-server exited without a log line with {parts:?}"));
            if parts.iter().all(|part| line.contains(part)) {
                return line;
            }
        }
    }
}

fn forward_lines(stderr: ChildStderr) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("probe-server: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

const MIB: usize = 1 << 20;

#[tokio::test]
async fn a_256_mib_body_streams_through_with_a_small_peak_rss() {
    let probe = Probe::start("120s").await;
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 256 * MIB;
    // A pattern that differs per chunk, so a reordered or dropped chunk changes the digest.
    let chunk_bytes = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);
    let mut expected = Sha256::new();
    for i in 0..TOTAL / CHUNK {
        expected.update(chunk_bytes(i));
    }
    let frames = stream::iter(0..TOTAL / CHUNK).map(move |i| Ok(Frame::data(chunk_bytes(i))));
    let body: TestBody = BodyExt::boxed(StreamBody::new(frames));
    let req = http::Request::post("/sha256")
        .header("host", "probe")
        .body(body)
        .unwrap();
    let resp = send_tcp(probe.addr, req).await;
    assert_eq!(resp.status(), 200);
    let answer = String::from_utf8(read_body(resp).await.to_vec()).unwrap();
    assert_eq!(answer, format!("{TOTAL} {:x}", expected.finalize()));

    let peak = probe.peak_rss_kib();
    println!(
        "peak RSS of the template server after streaming 256 MiB: {:.1} MiB",
        peak as f64 / 1024.0
    );
    assert!(
        peak < 32 * 1024,
        "peak RSS {peak} KiB is not well under 64 MiB"
    );
}

#[tokio::test]
async fn sigterm_refuses_new_connections_and_finishes_the_request_in_flight() {
    let mut probe = Probe::start("30s").await;
    let req = http::Request::get("/drip?n=8&ms=150")
        .header("host", "probe")
        .body(empty())
        .unwrap();
    let resp = send_tcp(probe.addr, req).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"line 0\n");

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &probe.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    probe.expect_log(&["SIGTERM received"]).await;
    // Logged once the listener is closed.
    probe.expect_log(&["new connections are refused"]).await;
    assert!(
        tokio::net::TcpStream::connect(probe.addr).await.is_err(),
        "a new connection after SIGTERM is refused"
    );

    let rest = body
        .collect()
        .await
        .expect("the in-flight response completes")
        .to_bytes();
    let expected: String = (1..8).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8(rest.to_vec()).unwrap(), expected);

    let status = tokio::time::timeout(Duration::from_secs(10), probe.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the server exits 0 after draining: {status}"
    );
}

#[tokio::test]
async fn every_request_gets_one_log_line_and_a_panic_does_not_kill_the_process() {
    let mut probe = Probe::start("30s").await;
    let get = |path: &'static str, call_id: &'static str| {
        http::Request::get(path)
            .header("host", "probe")
            .header("x-call-id", call_id)
            .body(empty())
            .unwrap()
    };
    let resp = send_tcp(probe.addr, get("/panic", "call-1")).await;
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = serde_json::from_slice(&read_body(resp).await).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "failed", "error": "internal error: the handler panicked"})
    );
    probe
        .expect_log(&[
            "method=GET",
            "path=/panic",
            "status=500",
            "duration_ms=",
            "call_id=call-1",
        ])
        .await;

    let resp = send_tcp(probe.addr, get("/hello", "call-2")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&read_body(resp).await[..], b"probe\n");
    probe
        .expect_log(&[
            "method=GET",
            "path=/hello",
            "status=200",
            "call_id=call-2",
            "outcome=complete",
        ])
        .await;
}
