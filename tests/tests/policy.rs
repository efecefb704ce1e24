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
async fn no_form_of_a_syntax_directive_makes_any_daemon_contact_a_frontend_registry() {
    let bed = Bed::get();
    // The "registry" of the frontend image: a port the test holds; any forward would connect.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let frontend = format!("{}/evil/frontend:1", listener.local_addr().unwrap());
    let forms = [
        format!("# syntax={frontend}"),
        format!("#syntax={frontend}"),
        format!("# SYNTAX = {frontend}"),
        // C-style: BuildKit v0.11+ reads it as a directive; the builder's own check does not,
        // so only the `cmdline` attribute stops the forward.
        format!("//syntax={frontend}"),
        format!("# escape=`\n# syntax={frontend}"),
    ];
    for (daemon, server) in function_builder_tests::api::servers(&bed, |_| {}).await {
        for form in &forms {
            let (status, json) = build(
                &server,
                &format!(r#"{{"image":"{}/policy/forms:1"}}"#, bed.registry),
                &format!("{form}\nFROM {}\n", bed.base_image),
            )
            .await;
            assert!(
                [200, 403, 422].contains(&status),
                "{daemon} {form:?}: {status} {json:#}"
            );
            assert!(
                listener.accept().is_err(),
                "{daemon} {form:?}: the daemon contacted the frontend's registry ({status} {json:#})"
            );
        }
    }
}

#[tokio::test]
async fn a_frontend_the_setting_allows_is_forwarded_to() {
    let bed = Bed::get();
    let frontend = format!("{}/frontends/allowed", bed.registry);
    let allow = |s: &mut handler::Settings| s.policy.frontends = vec![frontend.parse().unwrap()];
    for (daemon, server) in function_builder_tests::api::servers(&bed, allow).await {
        // No such image in the registry: the forward is attempted and fails on the pull.
        let (status, json) = build(
            &server,
            &format!(r#"{{"image":"{}/policy/allowed:1"}}"#, bed.registry),
            &format!("# syntax={frontend}:1\nFROM {}\n", bed.base_image),
        )
        .await;
        assert_eq!(status, 422, "{daemon}: {json:#}");
        let said = format!("{json}");
        assert!(said.contains("frontends/allowed"), "{daemon}: {json:#}");
    }
}

#[tokio::test]
async fn images_outside_the_allowed_prefixes_are_refused_before_buildkit() {
    let bed = Bed::get();
    // Written with a trailing `/`, which changes nothing; messages give the normal form.
    let prefix = format!("{}/acme", bed.registry);
    let inside = format!("{prefix}/");
    let server = Server::start(&bed, |s| {
        s.policy.image_prefixes = vec![inside.parse().unwrap()]
    })
    .await;
    let df = format!("FROM {}\n", bed.base_image);
    let outside = format!("{}/other/fn:1", bed.registry);
    let (status, json) = build(&server, &format!(r#"{{"image":"{outside}"}}"#), &df).await;
    assert_eq!(status, 403, "{json:#}");
    assert_eq!(
        json["error"],
        format!("image \"{outside}\" is outside allowed_image_prefixes ({prefix})")
    );
    let (status, json) = build(&server, &format!(r#"{{"image":"{inside}fn:1"}}"#), &df).await;
    assert_eq!(status, 200, "{json:#}");
    // A cache ref reads and writes layers: it stays inside the prefixes too.
    let config = format!(r#"{{"image":"{inside}fn:1","cache":{{"from":["{outside}"]}}}}"#);
    let (status, json) = build(&server, &config, &df).await;
    assert_eq!(status, 403, "{json:#}");
    assert_eq!(
        json["error"],
        format!("cache ref \"{outside}\" is outside allowed_image_prefixes ({prefix})")
    );
    // Inside the prefixes but in another repository: one tenant's build may not write (or read)
    // the cache another tenant's builds import.
    let other = format!("{inside}other:cache");
    let config = format!(r#"{{"image":"{inside}fn:1","cache":{{"to":"{other}"}}}}"#);
    let (status, json) = build(&server, &config, &df).await;
    assert_eq!(status, 403, "{json:#}");
    assert_eq!(
        json["error"],
        format!("cache ref \"{other}\" is outside \"{inside}fn\": a build's cache refs name its image's repository or one below it")
    );
}

#[tokio::test]
async fn allowed_prefixes_match_whole_path_components() {
    let bed = Bed::get();
    let registry = &bed.registry;
    let df = format!(
        "FROM {}\nRUN echo prefix-{}\n",
        bed.base_image,
        std::process::id()
    );
    let prefix = format!("{registry}/acme");
    let server = Server::start(&bed, |s| {
        s.policy.image_prefixes = vec![prefix.parse().unwrap()]
    })
    .await;
    for outside in [
        format!("{registry}/acme-evil/fn:1"),
        format!("{registry}/acmex:1"),
        format!("{registry}/acme.evil/fn:1"),
        format!("{registry}/other/acme/fn:1"),
        "127.0.0.1:1/acme/fn:1".to_owned(),
        "acme/fn:1".to_owned(),
    ] {
        let (status, json) = build(&server, &format!(r#"{{"image":"{outside}"}}"#), &df).await;
        assert_eq!(status, 403, "{outside}: {json:#}");
        assert_eq!(
            json["error"],
            format!("image \"{outside}\" is outside allowed_image_prefixes ({prefix})")
        );
    }
    for inside in [
        format!("{registry}/acme:1"),
        format!("{registry}/acme/fn:1"),
    ] {
        let (status, json) = build(&server, &format!(r#"{{"image":"{inside}"}}"#), &df).await;
        assert_eq!(status, 200, "{inside}: {json:#}");
        assert_eq!(json["image"], inside.as_str());
    }
    // Same rule for cache refs, checked before the cache-scope rule.
    let evil = format!("{registry}/acme-evil/fn:cache");
    let config = format!(r#"{{"image":"{prefix}/fn:1","cache":{{"from":["{evil}"]}}}}"#);
    let (status, json) = build(&server, &config, &df).await;
    assert_eq!(status, 403, "{json:#}");
    assert_eq!(
        json["error"],
        format!("cache ref \"{evil}\" is outside allowed_image_prefixes ({prefix})")
    );

    // A registry host alone admits every repository on it, and nothing on another port.
    let host_only = Server::start(&bed, |s| {
        s.policy.image_prefixes = vec![format!("{registry}/").parse().unwrap()]
    })
    .await;
    let anyone = format!("{registry}/anyone/fn:1");
    let (status, json) = build(&host_only, &format!(r#"{{"image":"{anyone}"}}"#), &df).await;
    assert_eq!(status, 200, "{json:#}");
    let (status, json) = build(&host_only, r#"{"image":"127.0.0.1:1/anyone/fn:1"}"#, &df).await;
    assert_eq!(status, 403, "{json:#}");
    assert_eq!(
        json["error"],
        format!("image \"127.0.0.1:1/anyone/fn:1\" is outside allowed_image_prefixes ({registry})")
    );
}

#[tokio::test]
async fn cache_mounts_are_per_tenant() {
    let bed = Bed::get();
    let nonce = std::process::id();
    let df = |n: u32| {
        format!(
            "FROM {}\nRUN --mount=type=cache,id=shared,target=/c sh -c 'echo {nonce}-{n}; ls /c > /seen; touch /c/was-here'\n",
            bed.base_image
        )
    };
    let seen = |image: &str| bed.run_in_image(image, "cat /seen");
    for (n, (daemon, server)) in function_builder_tests::api::servers(&bed, |_| {})
        .await
        .into_iter()
        .enumerate()
    {
        let a = format!("{}/tenant-a/fn:{n}", bed.registry);
        let b = format!("{}/tenant-b/fn:{n}", bed.registry);
        let (status, json) = build(&server, &format!(r#"{{"image":"{a}"}}"#), &df(1)).await;
        assert_eq!(status, 200, "{daemon}: {json:#}");
        assert_eq!(seen(&a), "", "{daemon}");
        let (status, json) = build(&server, &format!(r#"{{"image":"{b}"}}"#), &df(2)).await;
        assert_eq!(status, 200, "{daemon}: {json:#}");
        assert_eq!(
            seen(&b),
            "",
            "{daemon}: tenant B saw tenant A's cache mount"
        );
        let (status, json) = build(&server, &format!(r#"{{"image":"{a}"}}"#), &df(3)).await;
        assert_eq!(status, 200, "{daemon}: {json:#}");
        assert_eq!(
            seen(&a),
            "was-here\n",
            "{daemon}: tenant A's second build sees its own cache"
        );
    }
}

#[tokio::test]
async fn a_tenant_header_the_platform_sets_scopes_cache_mounts_across_images() {
    let bed = Bed::get();
    let server = Server::start(&bed, |s| {
        s.policy.tenant = handler::TenantRule::parse("header:X-Tenant").unwrap()
    })
    .await;
    let nonce = std::process::id();
    let df = |n: u32| {
        format!(
            "FROM {}\nRUN --mount=type=cache,id=shared,target=/c sh -c 'echo {nonce}-h{n}; ls /c > /seen; touch /c/was-here'\n",
            bed.base_image
        )
    };
    let post = |image: String, tenant: Option<&'static str>, n: u32| {
        let server = &server;
        let df = df(n);
        async move {
            let tar = request_tar(
                Shape::Python,
                &format!(r#"{{"image":"{image}"}}"#),
                &[("Dockerfile", df.as_bytes(), 0o644)],
            );
            let headers: Vec<(&str, &str)> = tenant.map(|t| ("X-Tenant", t)).into_iter().collect();
            server.post_signed_with(tar, &headers).await
        }
    };
    let seen = |image: &str| bed.run_in_image(image, "cat /seen");
    let one = format!("{}/header-tenants/one:{nonce}", bed.registry);
    let two = format!("{}/header-tenants/two:{nonce}", bed.registry);
    let tenant_a = Box::leak(format!("cust-a-{nonce}").into_boxed_str());
    let tenant_b = Box::leak(format!("cust-b-{nonce}").into_boxed_str());

    let answer = post(one.clone(), None, 0).await;
    assert_eq!(answer.status, 400, "{answer:#?}");
    assert_eq!(
        answer.json["error"],
        "tenant_from=header:X-Tenant: the request has no such header"
    );

    let answer = post(one.clone(), Some(tenant_a), 1).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert_eq!(seen(&one), "");
    // The same image for another tenant: its own cache.
    let answer = post(one.clone(), Some(tenant_b), 2).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert_eq!(seen(&one), "", "tenant B saw tenant A's cache mount");
    // Another image of tenant A: A's cache.
    let answer = post(two.clone(), Some(tenant_a), 3).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    assert_eq!(
        seen(&two),
        "was-here\n",
        "tenant A's other image sees A's cache"
    );
}

#[tokio::test]
async fn run_steps_cannot_reach_a_port_on_the_host_loopback() {
    let bed = Bed::get();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let df = format!(
        "FROM {}\nRUN (wget -q -T 3 -O /got http://127.0.0.1:{port}/ && echo reached || echo unreachable) > /result\n",
        bed.base_image
    );
    for (n, (daemon, server)) in function_builder_tests::api::servers(&bed, |_| {})
        .await
        .into_iter()
        .enumerate()
    {
        let image = format!("{}/policy/network:{n}", bed.registry);
        let (status, json) = build(&server, &format!(r#"{{"image":"{image}"}}"#), &df).await;
        assert_eq!(status, 200, "{daemon}: {json:#}");
        assert_eq!(
            bed.run_in_image(&image, "cat /result"),
            "unreachable\n",
            "{daemon}"
        );
        let accepted = listener.accept().map(|(mut s, _)| {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
        });
        assert!(
            accepted.is_err(),
            "{daemon}: the RUN step connected to the host's loopback"
        );
    }
}
