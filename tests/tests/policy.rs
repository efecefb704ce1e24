//! The builder's policy on a shared BuildKit, through the template server against the bed's real
//! dockerd: frontends a `# syntax=` line may name, `BUILDKIT_*` build args, image prefixes, and
//! cache mounts scoped per tenant.

use std::io::Read;

use function_builder_tests::api::{request_tar, Server, Shape};
use function_builder_tests::bed::Bed;
use serde_json::Value;

async fn build(server: &Server, config: &str, dockerfile: &str) -> (u16, Value) {
    let tar = request_tar(
        Shape::Python,
        config,
        &[("Dockerfile", dockerfile.as_bytes(), 0o644)],
    );
    server.post_signed(tar).await
}

#[tokio::test]
async fn a_syntax_line_naming_a_frontend_not_allowed_is_refused_and_nothing_is_pulled() {
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let frontend = format!("{}/frontends/evil:1", bed.registry);
    let image = format!("{}/policy/evil:1", bed.registry);
    let (status, json) = build(
        &server,
        &format!(r#"{{"image":"{image}"}}"#),
        &format!("# syntax={frontend}\nFROM {}\n", bed.base_image),
    )
    .await;
    assert_eq!(status, 403, "{json:#}");
    assert_eq!(
        json["error"],
        format!("frontend \"{frontend}\" (# syntax= in the Dockerfile) is not allowed by allowed_frontends (docker.io/docker/dockerfile)")
    );
    let (pulled, _, _) = bed.docker(&["image", "inspect", &frontend]);
    assert!(!pulled, "the frontend image was pulled");

    // BUILDKIT_SYNTAX, the other way to the same forward, is the builder's alone.
    let (status, json) = build(
        &server,
        &format!(r#"{{"image":"{image}","buildArgs":{{"BUILDKIT_SYNTAX":"{frontend}"}}}}"#),
        &format!("FROM {}\n", bed.base_image),
    )
    .await;
    assert_eq!(status, 403, "{json:#}");
    assert!(json["error"]
        .as_str()
        .unwrap()
        .starts_with("buildArgs.BUILDKIT_SYNTAX: BUILDKIT_* build args are set by the builder"));
}

#[tokio::test]
async fn a_frontend_the_setting_allows_is_forwarded_to() {
    let bed = Bed::get();
    let frontend = format!("{}/frontends/allowed", bed.registry);
    let server = Server::start(&bed, |s| s.policy.frontends = vec![frontend.clone()]).await;
    // No such image in the registry: the forward is attempted and fails on the pull.
    let (status, json) = build(
        &server,
        &format!(r#"{{"image":"{}/policy/allowed:1"}}"#, bed.registry),
        &format!("# syntax={frontend}:1\nFROM {}\n", bed.base_image),
    )
    .await;
    assert_eq!(status, 422, "{json:#}");
    let said = format!("{json}");
    assert!(said.contains("frontends/allowed"), "{json:#}");
}

#[tokio::test]
async fn images_outside_the_allowed_prefixes_are_refused_before_buildkit() {
    let bed = Bed::get();
    let inside = format!("{}/acme/", bed.registry);
    let server = Server::start(&bed, |s| s.policy.image_prefixes = vec![inside.clone()]).await;
    let df = format!("FROM {}\n", bed.base_image);
    let outside = format!("{}/other/fn:1", bed.registry);
    let (status, json) = build(&server, &format!(r#"{{"image":"{outside}"}}"#), &df).await;
    assert_eq!(status, 403, "{json:#}");
    assert_eq!(
        json["error"],
        format!("image \"{outside}\" is outside allowed_image_prefixes ({inside})")
    );
    let (status, json) = build(&server, &format!(r#"{{"image":"{inside}fn:1"}}"#), &df).await;
    assert_eq!(status, 200, "{json:#}");
}

#[tokio::test]
async fn cache_mounts_are_per_tenant() {
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let nonce = std::process::id();
    let df = |n: u32| {
        format!(
            "FROM {}\nRUN --mount=type=cache,id=shared,target=/c sh -c 'echo {nonce}-{n}; ls /c > /seen; touch /c/was-here'\n",
            bed.base_image
        )
    };
    let seen = |image: &str| bed.run_in_image(image, "cat /seen");
    let a = format!("{}/tenant-a/fn:1", bed.registry);
    let b = format!("{}/tenant-b/fn:1", bed.registry);
    let (status, json) = build(&server, &format!(r#"{{"image":"{a}"}}"#), &df(1)).await;
    assert_eq!(status, 200, "{json:#}");
    assert_eq!(seen(&a), "");
    let (status, json) = build(&server, &format!(r#"{{"image":"{b}"}}"#), &df(2)).await;
    assert_eq!(status, 200, "{json:#}");
    assert_eq!(seen(&b), "", "tenant B saw tenant A's cache mount");
    let (status, json) = build(&server, &format!(r#"{{"image":"{a}"}}"#), &df(3)).await;
    assert_eq!(status, 200, "{json:#}");
    assert_eq!(
        seen(&a),
        "was-here\n",
        "tenant A's second build sees its own cache"
    );
}

#[tokio::test]
async fn run_steps_cannot_reach_a_port_on_the_host_loopback() {
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let image = format!("{}/policy/network:1", bed.registry);
    let df = format!(
        "FROM {}\nRUN (wget -q -T 3 -O /got http://127.0.0.1:{port}/ && echo reached || echo unreachable) > /result\n",
        bed.base_image
    );
    let (status, json) = build(&server, &format!(r#"{{"image":"{image}"}}"#), &df).await;
    assert_eq!(status, 200, "{json:#}");
    assert_eq!(bed.run_in_image(&image, "cat /result"), "unreachable\n");
    let accepted = listener.accept().map(|(mut s, _)| {
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    });
    assert!(
        accepted.is_err(),
        "the RUN step connected to the host's loopback"
    );
}
