use std::sync::Arc;

use super::*;
use crate::access::ReadPolicy;
use crate::DockerConfig;

fn access(policy: ReadPolicy, config: &str) -> Access {
    let config = DockerConfig::from_json(config.as_bytes(), "config.json".as_ref()).unwrap();
    Access::new(policy, Arc::new(config), true, &[])
}

fn prefixes(list: &[&str]) -> Vec<crate::RepoPrefix> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

/// Whether `policy` lets `identifier` through, as BuildKit decides: the last matching rule.
fn allows(policy: &SourcePolicy, identifier: &str) -> bool {
    let mut allowed = true;
    for rule in &policy.rules {
        let selector = rule.selector.as_ref().unwrap();
        assert_eq!(selector.match_type, REGEX);
        if regex::Regex::new(&selector.identifier)
            .unwrap()
            .is_match(identifier)
        {
            allowed = rule.action == ALLOW;
        }
    }
    allowed
}

#[test]
fn remote_sources_become_a_policy_that_denies_every_scheme_but_the_allowed_prefixes() {
    let open = access(ReadPolicy::Any, "{}");
    assert_eq!(build(&RemoteSources::Any, &open), None);
    let remote = RemoteSources::Only(vec!["https://files.example/a+b/".into()]);
    let policy = build(&remote, &open).unwrap();
    let rules: Vec<(i32, String)> = policy
        .rules
        .iter()
        .map(|r| (r.action, r.selector.as_ref().unwrap().identifier.clone()))
        .collect();
    assert_eq!(policy.version, 1);
    assert_eq!(
        rules,
        [
            (DENY, REMOTE_SCHEMES.to_owned()),
            (ALLOW, r"^https\:\/\/files\.example\/a\+b\/".to_owned()),
            (DENY, CLIMBING.to_owned()),
        ]
    );
    assert!(allows(&policy, "https://files.example/a+b/x.tgz"));
    assert!(!allows(&policy, "HTTP://files.example/a+b/x"));
    assert!(!allows(&policy, "https://files.example/a+b/../c"));
    assert!(allows(
        &policy,
        "docker-image://docker.io/library/busybox:latest"
    ));
}

#[test]
fn images_outside_the_read_policy_are_denied_on_registries_with_credentials() {
    let config = r#"{"auths":{"reg.example:5000":{"auth":"dTpw"},"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#;
    let policy = ReadPolicy::Only {
        own: prefixes(&["reg.example:5000/tenant-a"]),
        shared: prefixes(&["reg.example:5000/base", "docker.io/docker/dockerfile"]),
    };
    let policy = build(&RemoteSources::Any, &access(policy, config)).unwrap();
    for allowed in [
        "docker-image://reg.example:5000/tenant-a:1",
        "docker-image://reg.example:5000/tenant-a/fn:latest",
        "docker-image://reg.example:5000/tenant-a/fn@sha256:abcd",
        "docker-image://reg.example:5000/base/alpine:3",
        "docker-image://docker.io/docker/dockerfile:1",
        // No credentials there: pulled anonymously, the registry decides.
        "docker-image://other.example/tenant-b/private:1",
        "docker-image://reg.example:5001/tenant-b/private:1",
        "https://files.example/x",
    ] {
        assert!(allows(&policy, allowed), "{allowed}");
    }
    for denied in [
        "docker-image://reg.example:5000/tenant-b/private:1",
        "docker-image://reg.example:5000/tenant-a-evil/fn:1",
        "docker-image://reg.example:5000/tenant-ab:1",
        "docker-image://REG.EXAMPLE:5000/tenant-a/fn:1",
        "docker-image://reg.example:5000/base-x/alpine:3",
        "docker-image://docker.io/library/busybox:latest",
        "docker-image://registry-1.docker.io/docker/dockerfile:1",
        "docker-image://index.docker.io/tenant-b/private:1",
    ] {
        assert!(!allows(&policy, denied), "{denied}");
    }
}

#[test]
fn a_registry_shared_whole_or_without_credentials_is_not_guarded() {
    let config = r#"{"auths":{"reg.example":{"auth":"dTpw"}}}"#;
    let whole = ReadPolicy::Only {
        own: prefixes(&["reg.example/tenant-a"]),
        shared: prefixes(&["reg.example/"]),
    };
    assert_eq!(build(&RemoteSources::Any, &access(whole, config)), None);
    let elsewhere = ReadPolicy::Only {
        own: prefixes(&["other.example/tenant-a"]),
        shared: Vec::new(),
    };
    assert_eq!(build(&RemoteSources::Any, &access(elsewhere, "{}")), None);
    assert_eq!(
        build(&RemoteSources::Any, &access(ReadPolicy::Any, config)),
        None
    );
}
