//! Our own faults answer `internal error (call id …)`: no host path or error chain in the
//! response, the whole detail in the builder's log line with that call id. The builder runs as
//! production runs it, a process of its own logging to stderr.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use function_builder_tests::api::{request_tar, sign, Shape, SECRET};
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{full, read_body, send_tcp};
use serde_json::Value;

#[tokio::test]
async fn an_internal_error_names_the_call_id_and_only_the_log_has_the_detail() {
    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("payload-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_builder-server"))
        .env("upstream_url", "http://127.0.0.1:0")
        .env("payload_secret_path", &secret)
        .env(
            "buildkit_url",
            format!("docker://{}", bed.docker_socket.display()),
        )
        .env("work_dir", &work)
        // No fixed port a user or another test may hold.
        .env("metrics_port", "0")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start builder-server");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next_line_with = |needle: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    };
    let addr = next_line_with("addr=")
        .split("addr=")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The secret becomes unreadable after start: a fault of the builder's, not the caller's.
    std::fs::remove_file(&secret).unwrap();
    std::fs::create_dir(&secret).unwrap();
    let tar = request_tar(
        Shape::Go,
        r#"{"image":"127.0.0.1:1/hygiene/x:1"}"#,
        &[("Dockerfile", b"FROM scratch\n", 0o644)],
    );
    let req = http::Request::post("/build")
        .header("host", "builder")
        .header("x-call-id", "call-hygiene-1")
        .header("x-build-signature", sign(SECRET, &tar))
        .body(full(tar))
        .unwrap();
    let resp = send_tcp(addr, req).await;
    assert_eq!(resp.status(), 500);
    let json: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
    assert_eq!(json["error"], "internal error (call id call-hygiene-1)");
    let path = secret.display().to_string();
    assert!(!json.to_string().contains(&path), "{json}");
    let logged = next_line_with("call_id=call-hygiene-1");
    assert!(
        logged.contains(&path),
        "the log line has the detail: {logged}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
