//! Registry failures tell the queue-worker the truth, on every daemon of the bed: a registry that
//! cannot be reached (or answers 5xx) is 503 with `Retry-After`, one that refuses is 422 without
//! it, and a failing step stays 422 even when its words look like a registry's.

use std::time::Duration;

use function_builder_tests::api::{request_tar, servers, Answered, Server, Shape};
use function_builder_tests::bed::Bed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn build(server: &Server, image: &str, dockerfile: &str) -> Answered {
    let tar = request_tar(
        Shape::Python,
        &format!(r#"{{"image":"{image}"}}"#),
        &[("Dockerfile", dockerfile.as_bytes(), 0o644)],
    );
    server.post_signed_with(tar, &[]).await
}

/// Asserts `answer` says the registry could not be reached, retryably, in words holding `cause`.
fn assert_unreachable(daemon: &str, answer: &Answered, cause: &str) {
    assert_eq!(answer.status, 503, "{daemon}: {answer:#?}");
    assert_eq!(answer.retry_after.as_deref(), Some("10"), "{daemon}");
    let error = answer.json["error"].as_str().unwrap();
    assert!(
        error.starts_with("registry unreachable: "),
        "{daemon}: {error}"
    );
    assert!(error.contains(cause), "{daemon}: {error}");
}

/// A loopback port nothing listens on: connections to it are refused.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_push_to_a_port_that_refuses_connections_is_503_with_retry_after() {
    let bed = Bed::get();
    let df = format!("FROM {}\nRUN echo dead-port > /x\n", bed.base_image);
    for (daemon, server) in servers(&bed, |_| {}).await {
        let image = format!("127.0.0.1:{}/dead/port:1", dead_port());
        let answer = build(&server, &image, &df).await;
        assert_unreachable(&daemon, &answer, "connection refused");
    }
}

#[tokio::test]
async fn a_registry_answering_503_is_503_with_retry_after() {
    let bed = Bed::get();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A registry in trouble: every request gets 503.
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let df = format!("FROM {}\nRUN echo overloaded > /x\n", bed.base_image);
    for (daemon, server) in servers(&bed, |_| {}).await {
        let image = format!("127.0.0.1:{port}/busy/registry:1");
        let answer = tokio::time::timeout(Duration::from_secs(240), build(&server, &image, &df))
            .await
            .expect("answered within 4 minutes");
        assert_unreachable(&daemon, &answer, "503");
    }
}

#[tokio::test]
async fn a_push_the_registry_refuses_is_422_in_its_words_without_retry_after() {
    let bed = Bed::get();
    let df = format!("FROM {}\nRUN echo refused > /x\n", bed.base_image);
    for (daemon, server) in servers(&bed, |_| {}).await {
        // The bed's htpasswd registry, and a builder without its credentials.
        let image = format!("{}/refused/push:1", bed.auth_registry);
        let answer = build(&server, &image, &df).await;
        assert_eq!(answer.status, 422, "{daemon}: {answer:#?}");
        assert_eq!(answer.retry_after, None, "{daemon}");
        let error = answer.json["error"].as_str().unwrap();
        assert!(error.starts_with("registry refused: "), "{daemon}: {error}");
        let lower = error.to_lowercase();
        assert!(
            lower.contains("unauthorized") || lower.contains("no basic auth credentials"),
            "{daemon}: {error}"
        );
    }
}

#[tokio::test]
async fn a_failing_step_whose_words_look_like_a_registry_error_is_422() {
    let bed = Bed::get();
    let df = format!(
        "FROM {}\nRUN echo 'dial tcp 127.0.0.1:1: connect: connection refused 503 Service Unavailable' && exit 3\n",
        bed.base_image
    );
    for (daemon, server) in servers(&bed, |_| {}).await {
        let image = format!("{}/step/fails:1", bed.registry);
        let answer = build(&server, &image, &df).await;
        assert_eq!(answer.status, 422, "{daemon}: {answer:#?}");
        assert_eq!(answer.retry_after, None, "{daemon}");
        let error = answer.json["error"].as_str().unwrap();
        assert!(error.contains("exit code: 3"), "{daemon}: {error}");
    }
}

#[tokio::test]
async fn a_base_image_from_a_registry_that_cannot_be_reached_is_503_and_a_missing_one_422() {
    let bed = Bed::get();
    for (daemon, server) in servers(&bed, |_| {}).await {
        let image = format!("{}/pull/target:1", bed.registry);
        let df = format!("FROM 127.0.0.1:{}/no/registry:1\n", dead_port());
        let answer = build(&server, &image, &df).await;
        assert_unreachable(&daemon, &answer, "connection refused");

        let df = format!("FROM {}/no/such-image:1\n", bed.registry);
        let answer = build(&server, &image, &df).await;
        assert_eq!(answer.status, 422, "{daemon}: {answer:#?}");
        assert_eq!(answer.retry_after, None, "{daemon}");
        let error = answer.json["error"].as_str().unwrap();
        assert!(error.contains("not found"), "{daemon}: {error}");
    }
}
