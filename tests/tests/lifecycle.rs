//! Each request's temp dir is removed on every path, against the bed's real dockerd: a client
//! that goes away mid-upload or mid-build, and a build that reaches `build_timeout` (504, its
//! `RUN` stopped on the daemon, its message naming the step that was running).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use function_builder_tests::api::{request_tar, sign, Server, Shape, SECRET};
use function_builder_tests::bed::{wait_for_process, Bed};
use function_builder_tests::client::{full, promised_upload, read_body, send_tcp, streamed};
use serde_json::Value;

/// The entries of `dir` once it is empty, or what is still there after `timeout`.
async fn left_in(dir: &Path, timeout: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn work_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn a_client_that_goes_away_mid_upload_leaves_no_temp_dir() {
    let bed = Bed::get();
    let work = work_dir();
    let server = Server::start(&bed, |s| s.work_dir = work.path().to_owned()).await;
    // A body that sends 2 MiB of a promised 64 MiB (more than the builder holds in memory, so it
    // is spooled to disk), then never more: the client drops it.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let req = promised_upload(streamed(chunks), sign(SECRET, b"whatever"));
    let addr = server.addr;
    let request = tokio::spawn(async move { send_tcp(addr, req).await });
    tx.send(Ok(Bytes::from(vec![0u8; 2 << 20]))).await.unwrap();
    // The spool exists while the upload is under way ...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(work.path()).unwrap().next().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no spool appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and is gone once the client is.
    request.abort();
    drop(tx);
    assert_eq!(
        left_in(work.path(), Duration::from_secs(10)).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_client_that_goes_away_mid_build_leaves_no_temp_dir() {
    let bed = Bed::get();
    let work = work_dir();
    let server = Server::start(&bed, |s| s.work_dir = work.path().to_owned()).await;
    for ndjson in [false, true] {
        let marker = format!("sleep 8{}{}", std::process::id(), u8::from(ndjson));
        let df = format!("FROM {}\nRUN {marker}\n", bed.base_image);
        let tar = request_tar(
            Shape::Python,
            r#"{"image":"127.0.0.1:1/never/pushed:1"}"#,
            &[("Dockerfile", df.as_bytes(), 0o644)],
        );
        let signature = sign(SECRET, &tar);
        let addr = server.addr;
        let request = tokio::spawn(async move {
            let mut req = http::Request::post("/build")
                .header("host", "builder")
                .header("x-build-signature", signature);
            if ndjson {
                req = req.header("accept", "application/x-ndjson");
            }
            read_body(send_tcp(addr, req.body(full(tar)).unwrap()).await).await
        });
        assert!(wait_for_process(&marker, true, Duration::from_secs(60)).await);
        request.abort();
        assert!(wait_for_process(&marker, false, Duration::from_secs(10)).await);
        assert_eq!(
            left_in(work.path(), Duration::from_secs(10)).await,
            Vec::<String>::new(),
            "ndjson: {ndjson}"
        );
    }
}

#[tokio::test]
async fn build_timeout_is_504_stops_the_run_and_leaves_no_temp_dir() {
    let bed = Bed::get();
    let work = work_dir();
    let server = Server::start(&bed, |s| {
        s.work_dir = work.path().to_owned();
        s.build_timeout = Duration::from_secs(3);
    })
    .await;
    let marker = format!("sleep 9{}", std::process::id());
    let df = format!("FROM {}\nRUN {marker}\n", bed.base_image);
    let tar = request_tar(
        Shape::Node,
        r#"{"image":"127.0.0.1:1/never/pushed:1"}"#,
        &[("Dockerfile", df.as_bytes(), 0o644)],
    );
    let req = http::Request::post("/build")
        .header("host", "builder")
        .header("x-build-signature", sign(SECRET, &tar))
        .body(full(tar))
        .unwrap();
    let resp = send_tcp(server.addr, req).await;
    assert_eq!(resp.status(), 504);
    let json: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(
        json["error"],
        format!("build did not finish within build_timeout (3s); running: [2/2] RUN {marker}")
    );
    assert!(
        wait_for_process(&marker, false, Duration::from_secs(10)).await,
        "the daemon stopped the RUN step"
    );
    assert_eq!(
        left_in(work.path(), Duration::from_secs(5)).await,
        Vec::<String>::new()
    );
}
