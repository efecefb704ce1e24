use std::sync::Arc;

use super::*;

fn prefixes(list: &[&str]) -> Vec<RepoPrefix> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

fn tenant_a() -> ReadPolicy {
    ReadPolicy::Only {
        own: prefixes(&["reg.example/tenant-a"]),
        shared: prefixes(&["reg.example/base", "shared.example/"]),
    }
}

fn access(policy: ReadPolicy, daemon_enforces: bool) -> Access {
    let config = r#"{"auths":{"reg.example":{"auth":"dTpw"},"shared.example":{"auth":"dTpw"},"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#;
    let config = DockerConfig::from_json(config.as_bytes(), "config.json".as_ref()).unwrap();
    Access::new(policy, Arc::new(config), daemon_enforces, &[])
}

fn user() -> Credentials {
    Credentials {
        username: "u".into(),
        secret: "p".into(),
    }
}

#[test]
fn the_policy_allows_pulls_of_own_and_shared_and_pushes_of_own_only() {
    let policy = tenant_a();
    assert!(policy.allows("reg.example", "tenant-a/fn", "pull"));
    assert!(policy.allows("reg.example", "tenant-a/fn", "push"));
    assert!(policy.allows("reg.example", "base/alpine", "pull"));
    assert!(!policy.allows("reg.example", "base/alpine", "push"));
    assert!(!policy.allows("reg.example", "tenant-b/private", "pull"));
    assert!(!policy.allows("reg.example", "tenant-ab", "pull"));
    assert!(!policy.allows("reg.example", "tenant-a/fn", "delete"));
    assert!(!policy.allows("reg.example", "tenant-a/fn", "*"));
    assert!(policy.allows("shared.example", "anything/at/all", "pull"));
    assert!(policy.shares_whole("shared.example"));
    assert!(!policy.shares_whole("reg.example"));
    assert!(ReadPolicy::Any.allows("reg.example", "x", "push"));
}

#[test]
fn scopes_keep_only_the_allowed_actions() {
    let scopes = vec![
        "repository:tenant-a/fn:pull,push repository:base/alpine:pull,push".to_owned(),
        "repository:tenant-b/private:pull".to_owned(),
        "registry:catalog:*".to_owned(),
    ];
    let (allowed, denied) = split_scopes(&tenant_a(), "reg.example", &scopes);
    assert_eq!(
        allowed,
        [
            "repository:tenant-a/fn:pull,push",
            "repository:base/alpine:pull"
        ]
    );
    assert_eq!(denied, ["tenant-b/private"]);
}

#[tokio::test]
async fn credentials_are_withheld_for_a_split_registry_where_the_daemon_enforces_nothing() {
    let open = access(tenant_a(), false);
    assert_eq!(open.credentials("shared.example").await.unwrap(), user());
    assert_eq!(
        open.credentials("other.example").await.unwrap(),
        Credentials::default()
    );
    assert_eq!(
        open.credentials("reg.example").await.unwrap(),
        Credentials::default()
    );
    assert_eq!(
        *open.withheld.lock().unwrap(),
        [Withheld::Registry("reg.example".into())]
    );
    let enforced = access(tenant_a(), true);
    assert_eq!(enforced.credentials("reg.example").await.unwrap(), user());
    assert_eq!(
        enforced.credentials("registry-1.docker.io").await.unwrap(),
        user()
    );
    assert!(enforced.withheld.lock().unwrap().is_empty());
    let single = access(ReadPolicy::Any, false);
    assert_eq!(single.credentials("reg.example").await.unwrap(), user());
}

#[test]
fn the_token_authority_is_one_key_per_policy_and_registry() {
    let a = access(tenant_a(), false);
    let again = access(tenant_a(), true);
    let key = |access: &Access, host: &str, salt: &[u8]| {
        use ring::signature::KeyPair;
        access
            .authority(host, salt)
            .map(|k| k.public_key().as_ref().to_vec())
    };
    let first = key(&a, "reg.example", b"salt").unwrap();
    assert_eq!(first.len(), 32);
    assert_eq!(key(&again, "reg.example", b"salt").unwrap(), first);
    assert_ne!(key(&a, "reg.example", b"other salt").unwrap(), first);
    assert_ne!(key(&a, "shared.example", b"salt").unwrap(), first);
    let b = ReadPolicy::Only {
        own: prefixes(&["reg.example/tenant-b"]),
        shared: prefixes(&["reg.example/base", "shared.example/"]),
    };
    assert_ne!(
        key(&access(b, false), "reg.example", b"salt").unwrap(),
        first
    );
    assert_eq!(key(&a, "other.example", b"salt"), None);
    assert_eq!(
        key(&access(ReadPolicy::Any, false), "reg.example", b"salt"),
        None
    );
}

#[test]
fn a_refusal_of_what_was_withheld_is_said_in_the_policys_terms() {
    let a = access(tenant_a(), false);
    a.withhold(Withheld::Repository("reg.example/tenant-b/private".into()));
    a.withhold(Withheld::Registry("shared.example".into()));
    let refused = |message: &str| BuildkitError::Registry {
        fault: crate::RegistryFault::Refused,
        registry: None,
        message: message.to_owned(),
    };
    let denied = a.explain(refused(
        "failed to resolve source metadata for reg.example/tenant-b/private:1: pull access denied",
    ));
    assert!(
        matches!(&denied, BuildkitError::ImageDenied { image, .. } if image == "reg.example/tenant-b/private"),
        "{denied:?}"
    );
    let kept = a.explain(refused("unexpected status from HEAD request to http://shared.example/v2/x/manifests/1: 401 Unauthorized"));
    assert!(
        matches!(&kept, BuildkitError::CredentialsWithheld { registry, .. } if registry == "shared.example"),
        "{kept:?}"
    );
    let unrelated = a.explain(refused("push reg.example/tenant-a/fn:1: denied"));
    assert!(matches!(unrelated, BuildkitError::Registry { .. }));
}

#[test]
fn loopback_registries_may_have_plain_http_realms() {
    for host in [
        "localhost",
        "localhost:5000",
        "127.0.0.1:5000",
        "[::1]:5000",
    ] {
        assert!(is_loopback(host), "{host}");
    }
    for host in ["reg.example", "10.0.0.1:5000", "localhost.evil.com"] {
        assert!(!is_loopback(host), "{host}");
    }
}
