//! The policy's rules, one by one, on configs and Dockerfiles.

use super::*;

fn config(image: Option<&str>, args: &[(&str, &str)]) -> BuildConfig {
    let mut json = serde_json::json!({ "skipPush": image.is_none() });
    if let Some(image) = image {
        json["image"] = image.into();
    }
    json["buildArgs"] = args
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    BuildConfig::parse(json.to_string().as_bytes()).unwrap()
}

#[test]
fn finds_the_syntax_directive_as_buildkit_writes_it() {
    for (dockerfile, want) in [
        (
            "# syntax=docker/dockerfile:1\nFROM x\n",
            Some("docker/dockerfile:1"),
        ),
        ("#syntax = r.io/f:2 --opt\nFROM x", Some("r.io/f:2")),
        (
            "#!/usr/bin/env buildctl\n# escape=`\n# SYNTAX=a/b\n",
            Some("a/b"),
        ),
        ("FROM x\n# syntax=a/b\n", None),
        ("# a comment\n# syntax=a/b\n", None),
        ("\u{feff}# syntax=a/b\n", Some("a/b")),
    ] {
        assert_eq!(
            syntax(dockerfile.as_bytes()).as_deref(),
            want,
            "{dockerfile:?}"
        );
    }
}

#[test]
fn frontends_are_matched_by_normalised_repository_whatever_the_tag() {
    let policy = Policy::default();
    let digest = format!("docker.io/docker/dockerfile@sha256:{}", "ab".repeat(32));
    for allowed in [
        "docker/dockerfile:1",
        "docker.io/docker/dockerfile",
        digest.as_str(),
    ] {
        assert!(
            policy.allows_frontend(&allowed.parse().unwrap()),
            "{allowed}"
        );
    }
    for refused in ["docker/dockerfile-evil:1", "evil.example/docker/dockerfile"] {
        assert!(
            !policy.allows_frontend(&refused.parse().unwrap()),
            "{refused}"
        );
    }
}

#[test]
fn the_builtin_frontend_never_forwards_unless_the_builder_names_the_image() {
    let policy = Policy::default();
    let plain = policy
        .check(&config(Some("r/a:1"), &[]), b"FROM x\n", None)
        .unwrap();
    assert_eq!(plain.attrs["cmdline"], "");
    assert!(!plain.attrs.contains_key("build-arg:BUILDKIT_SYNTAX"));
    let allowed = policy
        .check(
            &config(Some("r/a:1"), &[]),
            b"# syntax=docker/dockerfile:1.7\nFROM x\n",
            None,
        )
        .unwrap();
    assert_eq!(
        allowed.attrs["build-arg:BUILDKIT_SYNTAX"],
        "docker/dockerfile:1.7"
    );
    assert!(!allowed.attrs.contains_key("cmdline"));
    assert_eq!(
        policy
            .check(&config(Some("r/a:1"), &[]), b"# syntax=evil.example/f:1\nFROM x\n", None)
            .unwrap_err()
            .to_string(),
        "frontend \"evil.example/f:1\" (# syntax= in the Dockerfile) is not allowed by allowed_frontends (docker.io/docker/dockerfile)"
    );
}

#[test]
fn buildkit_args_are_the_builders_and_images_stay_inside_their_prefixes() {
    let policy = Policy {
        image_prefixes: vec!["reg.example/acme/".parse().unwrap()],
        ..Policy::default()
    };
    let err = policy
        .check(
            &config(Some("reg.example/acme/f:1"), &[("BUILDKIT_SYNTAX", "x/y")]),
            b"FROM x",
            None,
        )
        .unwrap_err();
    assert_eq!(
        err,
        PolicyError::ReservedArg {
            name: "BUILDKIT_SYNTAX".into()
        }
    );
    assert!(policy
        .check(
            &config(
                Some("reg.example/acme/f:1"),
                &[("BUILDKIT_INLINE_CACHE", "1")]
            ),
            b"FROM x",
            None
        )
        .is_ok());
    assert_eq!(
        policy
            .check(&config(Some("reg.example/other/f:1"), &[]), b"FROM x", None)
            .unwrap_err()
            .to_string(),
        "image \"reg.example/other/f:1\" is outside allowed_image_prefixes (reg.example/acme)"
    );
    assert!(policy.check(&config(None, &[]), b"FROM x", None).is_err());
}

#[test]
fn prefixes_admit_whole_path_components_only() {
    let check = |prefix: &str, image: &str| {
        let policy = Policy {
            image_prefixes: vec![prefix.parse().unwrap()],
            ..Policy::default()
        };
        policy
            .check(&config(Some(image), &[]), b"FROM x", None)
            .is_ok()
    };
    for prefix in ["reg.example/acme", "reg.example/acme/", "Reg.Example/acme"] {
        assert!(check(prefix, "reg.example/acme"), "{prefix}");
        assert!(check(prefix, "reg.example/acme/fn:1"), "{prefix}");
        for outside in [
            "reg.example/acme-evil/fn",
            "reg.example/acmex",
            "reg.example/acme.evil/fn",
            "reg.example:5000/acme/fn",
        ] {
            assert!(!check(prefix, outside), "{prefix} {outside}");
        }
    }
    assert!(check("reg.example:5000", "reg.example:5000/any/fn"));
    assert!(!check("reg.example:5000", "reg.example:50001/any/fn"));
    assert!(check("docker.io/acme", "acme/fn"));
    assert!(check("acme", "docker.io/acme/fn"));
    assert!(!check("docker.io/acme", "acme-evil/fn"));
}

#[test]
fn tenants_get_cache_namespaces_of_their_own() {
    let policy = Policy::default();
    let ns = |image| {
        policy
            .check(&config(Some(image), &[]), b"FROM x", None)
            .unwrap()
            .attrs["build-arg:BUILDKIT_CACHE_MOUNT_NS"]
            .clone()
    };
    assert_eq!(ns("r/a:1"), ns("r/a:2"));
    assert_ne!(ns("r/a:1"), ns("r/b:1"));
    let anonymous = |_| {
        policy
            .check(&config(None, &[]), b"FROM x", None)
            .unwrap()
            .tenant
    };
    assert_ne!(anonymous(1), anonymous(2));
}

#[test]
fn cache_refs_stay_in_the_builds_own_repository() {
    let check = |rule: &str, json: &str| {
        let policy = Policy {
            tenant: TenantRule::parse(rule).unwrap(),
            ..Policy::default()
        };
        let config = BuildConfig::parse(json.as_bytes()).unwrap();
        policy
            .check(&config, b"FROM x", Some(b"t"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let cfg =
        |from: &str| format!(r#"{{"image":"r.example/acme/fn:1","cache":{{"from":["{from}"]}}}}"#);
    for ok in ["r.example/acme/fn:cache", "r.example/acme/fn/cache:main"] {
        assert_eq!(check("repository", &cfg(ok)), Ok(()), "{ok}");
        assert_eq!(check("header:X-Tenant", &cfg(ok)), Ok(()), "{ok}");
    }
    assert_eq!(check("namespace", &cfg("r.example/acme/other:c")), Ok(()));
    for (rule, bad, scope) in [
        ("repository", "r.example/acme/other:c", "r.example/acme/fn"),
        ("repository", "r.example/acme/fnx:c", "r.example/acme/fn"),
        ("namespace", "r.example/acme-evil/x:c", "r.example/acme"),
        (
            "header:X-Tenant",
            "r.example/beta/fn:c",
            "r.example/acme/fn",
        ),
    ] {
        assert_eq!(
            check(rule, &cfg(bad)),
            Err(format!("cache ref \"{bad}\" is outside \"{scope}\": a build's cache refs name its image's repository or one below it")),
            "{rule} {bad}"
        );
    }
    assert!(check(
        "repository",
        r#"{"skipPush":true,"cache":{"to":"r.example/x:c"}}"#
    )
    .is_err());
}

#[test]
fn tenant_rules_name_the_repository_its_namespace_or_the_platforms_header() {
    let tenant = |rule: &str, image: &str, header: Option<&[u8]>| {
        let policy = Policy {
            tenant: TenantRule::parse(rule).unwrap(),
            ..Policy::default()
        };
        policy
            .check(&config(Some(image), &[]), b"FROM x", header)
            .map(|d| d.tenant)
            .map_err(|e| e.to_string())
    };
    let ok = |t: &str| Ok(t.to_owned());
    assert_eq!(
        tenant("repository", "reg.example/acme/fn:1", None),
        ok("reg.example/acme/fn")
    );
    assert_eq!(
        tenant("namespace", "reg.example/acme/fn:1", None),
        ok("reg.example/acme")
    );
    assert_eq!(
        tenant("namespace", "reg.example:5000/acme/team/fn", None),
        ok("reg.example:5000/acme")
    );
    assert_eq!(tenant("namespace", "acme/fn:1", None), ok("docker.io/acme"));
    assert_eq!(
        tenant("namespace", "docker.io/acme/other", None),
        ok("docker.io/acme")
    );
    assert_eq!(tenant("namespace", "fn:1", None), ok("docker.io/library"));
    assert_eq!(
        tenant("repository", "acme/fn:1", None),
        ok("docker.io/acme/fn")
    );
    assert_eq!(
        tenant("repository", "Reg.Example/acme/fn", None),
        ok("reg.example/acme/fn")
    );
    assert_eq!(
        tenant("header:X-Tenant", "r/fn:1", Some(b"cust-42")),
        ok("cust-42")
    );
    assert_eq!(
        tenant("header:X-Tenant", "r/fn:1", None),
        Err("tenant_from=header:X-Tenant: the request has no such header".to_owned())
    );
    for bad in [&b""[..], b"a b", &[b'x'; 129]] {
        assert_eq!(
            tenant("header:X-Tenant", "r/fn:1", Some(bad)),
            Err(
                "tenant_from=header:X-Tenant: the header must be 1 to 128 visible ASCII characters"
                    .to_owned()
            )
        );
    }
    assert!(TenantRule::parse("header:").is_err());
    assert!(TenantRule::parse("image").is_err());
}

#[test]
fn a_tenants_own_repositories_follow_tenant_from() {
    let own = |rule: &str, namespace: Option<&str>, image: &str, header: Option<&[u8]>| {
        let policy = Policy {
            tenant: TenantRule::parse(rule).unwrap(),
            tenant_namespace: namespace.map(str::to_owned),
            ..Policy::default()
        };
        policy
            .check(&config(Some(image), &[]), b"FROM x", header)
            .map(|d| d.own.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    };
    let ok = |p: &str| Ok(vec![p.to_owned()]);
    assert_eq!(
        own("repository", None, "reg.example/acme/fn:1", None),
        ok("reg.example/acme/fn")
    );
    assert_eq!(
        own("namespace", None, "reg.example/acme/fn:1", None),
        ok("reg.example/acme")
    );
    // A header tenant without a namespace of its own owns its image's repository…
    assert_eq!(
        own(
            "header:X-Tenant",
            None,
            "reg.example/acme/fn:1",
            Some(b"acme")
        ),
        ok("reg.example/acme/fn")
    );
    // …and with one, that namespace, where its image must be.
    let ns = Some("reg.example/customers/{tenant}");
    assert_eq!(
        own(
            "header:X-Tenant",
            ns,
            "reg.example/customers/acme/fn:1",
            Some(b"acme")
        ),
        ok("reg.example/customers/acme")
    );
    assert_eq!(
        own("header:X-Tenant", ns, "reg.example/customers/other/fn:1", Some(b"acme")),
        Err("image \"reg.example/customers/other/fn:1\" is outside tenant \"acme\"'s namespace reg.example/customers/acme (tenant_namespace)".to_owned())
    );
    for bad in [&b"Acme"[..], b"a/b", b"..", b"-x"] {
        assert_eq!(
            own("header:X-Tenant", ns, "reg.example/customers/acme/fn:1", Some(bad)),
            Err("tenant_from=header:X-Tenant: its value makes no repository namespace of tenant_namespace (lower-case letters, digits and . _ - only)".to_owned()),
            "{bad:?}"
        );
    }
    let policy = Policy::default();
    let none = policy.check(&config(None, &[]), b"FROM x", None).unwrap();
    assert!(none.own.is_empty());
}
