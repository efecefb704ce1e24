//! The test bed is real: the registry serves the base image's manifest, and dockerd upgrades
//! `POST /grpc` to HTTP/2 (the way in to its embedded BuildKit).

use function_builder_tests::bed::Bed;
use function_builder_tests::client::{empty, read_body, send_tcp, send_unix};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn the_registry_serves_the_base_image_manifest() {
    let bed = Bed::get();
    let (repo, tag) = bed
        .base_image
        .strip_prefix(&format!("{}/", bed.registry))
        .and_then(|rest| rest.rsplit_once(':'))
        .expect("FB_BASE_IMAGE is <registry>/<repo>:<tag>");
    let req = http::Request::get(format!("/v2/{repo}/manifests/{tag}"))
        .header("host", &bed.registry)
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .body(empty())
        .unwrap();
    let resp = send_tcp(bed.registry.parse().unwrap(), req).await;
    assert_eq!(resp.status(), 200);
    let digest = resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let manifest: serde_json::Value = serde_json::from_slice(&read_body(resp).await).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );
}

#[tokio::test]
async fn dockerd_upgrades_post_grpc_to_http2() {
    let bed = Bed::get();
    let req = http::Request::post("/grpc")
        .header("host", "api.moby.localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "h2c")
        .body(empty())
        .unwrap();
    let resp = send_unix(&bed.docker_socket, req).await;
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["upgrade"], "h2c");
    // After the 101 the daemon speaks HTTP/2 server-first: its first frame is SETTINGS (type 4).
    let mut upgraded = hyper_util::rt::TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    let mut frame_header = [0u8; 9];
    upgraded.read_exact(&mut frame_header).await.unwrap();
    assert_eq!(
        frame_header[3], 0x4,
        "first frame after the upgrade is SETTINGS: {frame_header:?}"
    );
}
