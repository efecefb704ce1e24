//! The test bed is real: the registry serves the base image's manifest, dockerd upgrades
//! `POST /grpc` to HTTP/2 (the way in to its embedded BuildKit), and a token registry refuses
//! what its issuer does not grant.

use function_builder_tests::bed::Bed;
use function_builder_tests::client::{empty, read_body, send_tcp, send_unix};
use function_builder_tests::token_registry::{DockerCli, TokenRegistry, TokenRequest};
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

#[tokio::test]
async fn the_token_registry_lets_anonymous_pull_only_public_repositories() {
    let bed = Bed::get();
    let registry = TokenRegistry::start().await;
    registry.push(&bed, &bed.base_image, "tenant-b/private:1");
    registry.push(&bed, &bed.base_image, "public/base:1");
    let public = format!("{}/public/base:1", registry.addr());
    let private = format!("{}/tenant-b/private:1", registry.addr());
    let pushed = registry.requests().len();

    let anonymous = DockerCli::new(&bed, "{}");
    let (ok, _, stderr) = anonymous.run(&["pull", "-q", &public]);
    assert!(ok, "anonymous pull of {public}: {stderr}");
    let (ok, _, stderr) = anonymous.run(&["pull", "-q", &private]);
    assert!(!ok, "anonymous pull of {private} worked");
    assert!(stderr.contains("denied"), "{stderr}");
    let logged_in = DockerCli::new(&bed, &registry.docker_config_json());
    let (ok, _, stderr) = logged_in.run(&["pull", "-q", &private]);
    assert!(ok, "pull of {private} with the account: {stderr}");
    let (ok, _, stderr) = anonymous.run(&["rmi", "-f", &public, &private]);
    assert!(ok, "{stderr}");

    let requests = registry.requests().split_off(pushed);
    let for_private: Vec<&TokenRequest> = requests
        .iter()
        .filter(|r| r.scopes.iter().any(|s| s.contains("tenant-b/private")))
        .collect();
    let refused = for_private
        .iter()
        .find(|r| r.account.is_none())
        .unwrap_or_else(|| panic!("no anonymous request for tenant-b: {requests:#?}"));
    assert!(
        refused.granted.iter().all(|g| !g.contains("tenant-b")),
        "{refused:?}"
    );
    let granted = for_private
        .iter()
        .find(|r| r.account.as_deref() == Some(registry.user()))
        .unwrap_or_else(|| panic!("no authenticated request for tenant-b: {requests:#?}"));
    assert!(
        granted
            .granted
            .contains(&"repository:tenant-b/private:pull".to_owned()),
        "{granted:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.account.is_none() && r.granted == ["repository:public/base:pull"]),
        "{requests:#?}"
    );
}
