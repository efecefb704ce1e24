//! The config file's part: parsing, the lookup order, the push header, no secret in any output.
//! The helper runner's own tests (failures, timeout, cancellation) are in `credhelper`.

use std::time::Duration;

use serde_json::json;

use super::credhelper::fake;
use super::*;

const ORIGIN: &str = "/secrets/config.json";

fn config(json: &str) -> DockerConfig {
    DockerConfig::from_json(json.as_bytes(), Path::new(ORIGIN)).unwrap()
}

fn creds(username: &str, secret: &str) -> Credentials {
    Credentials {
        username: username.to_owned(),
        secret: secret.to_owned(),
    }
}

fn header_json(header: Result<String, DockerConfigError>) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE.decode(header.unwrap()).unwrap()).unwrap()
}

/// The error `json` gives, and its Display and Debug together (to look for leaks in).
fn rejected(json: &str) -> (DockerConfigError, String) {
    let err = DockerConfig::from_json(json.as_bytes(), Path::new(ORIGIN)).unwrap_err();
    let shown = format!("{err} {err:?}");
    (err, shown)
}

#[tokio::test]
async fn reads_each_entry_shape() {
    let c = config(
        r#"{"auths": {"a.example": {"auth": "dXNlcjpwYTpzcw=="}, "a2.example": {"auth": "aHViOnB3"},
            "b.example": {"username": "bob", "password": "pw"}, "c.example": {"identitytoken": "idt"},
            "d.example": {"registrytoken": "rt"}, "e.example": {}, "f.example": null}}"#,
    );
    assert_eq!(
        c.credentials("a.example").await.unwrap(),
        creds("user", "pa:ss")
    );
    assert_eq!(
        c.credentials("a2.example").await.unwrap(),
        creds("hub", "pw")
    );
    assert_eq!(
        c.credentials("b.example").await.unwrap(),
        creds("bob", "pw")
    );
    assert_eq!(c.credentials("c.example").await.unwrap(), creds("", "idt"));
    assert_eq!(c.credentials("d.example").await.unwrap(), creds("", "rt"));
    for host in ["e.example", "f.example", "unknown.example"] {
        assert!(c.credentials(host).await.unwrap().is_anonymous(), "{host}");
    }
    assert!(config(" \n")
        .credentials("ghcr.io")
        .await
        .unwrap()
        .is_anonymous());
}

#[tokio::test]
async fn matches_keys_by_host_and_docker_hub_by_its_login_key() {
    let c = config(
        r#"{"auths": {"https://ghcr.io": {"username": "g", "password": "1"},
            "http://Local.example:5000/v2/": {"username": "l", "password": "2"},
            "127.0.0.1:5000": {"username": "i", "password": "3"}, "https://index.docker.io/v1/": {"auth": "aHViOnB3"}}}"#,
    );
    assert_eq!(c.credentials("ghcr.io").await.unwrap(), creds("g", "1"));
    assert_eq!(
        c.credentials("local.example:5000").await.unwrap(),
        creds("l", "2")
    );
    assert_eq!(
        c.credentials("127.0.0.1:5000").await.unwrap(),
        creds("i", "3")
    );
    assert!(c.credentials("127.0.0.1").await.unwrap().is_anonymous());
    for host in ["registry-1.docker.io", "docker.io", "index.docker.io"] {
        assert_eq!(
            c.credentials(host).await.unwrap(),
            creds("hub", "pw"),
            "{host}"
        );
    }
    let expected = json!({"username": "hub", "password": "pw", "serveraddress": "https://index.docker.io/v1/"});
    assert_eq!(
        header_json(c.registry_auth_header("docker.io").await),
        expected
    );
}

#[tokio::test]
async fn a_missing_file_is_an_empty_config_and_a_directory_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    assert!(DockerConfig::load(&path)
        .unwrap()
        .credentials("ghcr.io")
        .await
        .unwrap()
        .is_anonymous());
    std::fs::write(&path, r#"{"auths": {"ghcr.io": {"auth": "aHViOnB3"}}}"#).unwrap();
    assert_eq!(
        DockerConfig::load(&path)
            .unwrap()
            .credentials("ghcr.io")
            .await
            .unwrap(),
        creds("hub", "pw")
    );
    let err = DockerConfig::load(dir.path()).unwrap_err();
    assert!(matches!(err, DockerConfigError::Read { .. }), "{err:?}");
}

#[test]
fn invalid_json_names_the_file_and_not_its_content() {
    for json in [
        r#"{"auths": {"x": {"password": "hunter2"#,
        r#"{"auths": "hunter2"}"#,
        "hunter2",
    ] {
        let (err, shown) = rejected(json);
        assert!(matches!(err, DockerConfigError::Parse { .. }), "{shown}");
        assert!(
            shown.contains(ORIGIN) && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}

#[test]
fn a_bad_auth_names_the_host_only() {
    // Not base64; base64 of "hunter2" (no colon); base64 of ":hunter2" (no user).
    for auth in ["hunter2!", "aHVudGVyMg==", "Omh1bnRlcjI="] {
        let (err, shown) = rejected(&format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{auth}"}}}}}}"#
        ));
        assert!(
            matches!(&err, DockerConfigError::BadAuth { host, .. } if host == "ghcr.io"),
            "{shown}"
        );
        assert!(
            shown.contains(ORIGIN) && !shown.contains(auth) && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn the_header_carries_the_engine_auth_config() {
    let c = config(
        r#"{"auths": {"127.0.0.1:5000": {"username": "bob", "password": "pw"}, "ghcr.io": {"identitytoken": "idt"},
            "r.example": {"registrytoken": "rt"}, "e.example": {}}}"#,
    );
    let expected = json!({"username": "bob", "password": "pw", "serveraddress": "127.0.0.1:5000"});
    assert_eq!(
        header_json(c.registry_auth_header("127.0.0.1:5000").await),
        expected
    );
    assert_eq!(
        header_json(c.registry_auth_header("ghcr.io").await),
        json!({"identitytoken": "idt", "serveraddress": "ghcr.io"})
    );
    let expected = json!({"registrytoken": "rt", "serveraddress": "r.example"});
    assert_eq!(
        header_json(c.registry_auth_header("r.example").await),
        expected
    );
    assert_eq!(c.registry_auth_header("e.example").await.unwrap(), "e30=");
    assert_eq!(
        c.registry_auth_header("nowhere.example").await.unwrap(),
        "e30="
    );
    assert_eq!(header_json(Ok("e30=".to_owned())), json!({}));
}

/// The config in `json`, running helpers from a temp dir that holds a fake `docker-credential-test`.
fn with_fake_helper(json: &str) -> (tempfile::TempDir, DockerConfig) {
    let (dir, helpers) = fake::runner(Duration::from_secs(20));
    (dir, config(json).with_helpers(helpers))
}

#[tokio::test]
async fn a_store_helper_answers_for_every_host_before_auths() {
    let (_dir, c) = with_fake_helper(
        r#"{"credsStore": "test", "auths": {"ghcr.io": {"auth": "aHViOnB3"}, "o.example": {"auth": "aHViOnB3"}}}"#,
    );
    assert_eq!(
        c.credentials("ghcr.io").await.unwrap(),
        creds("helper-user", "helper-pass")
    );
    // As in docker/cli, the store's "not found" is anonymous even beside an `auths` entry.
    assert!(c.credentials("o.example").await.unwrap().is_anonymous());
    assert_eq!(c.registry_auth_header("o.example").await.unwrap(), "e30=");
    // Docker Hub is asked for by its login key, and `<token>` marks an identity token.
    assert_eq!(
        c.credentials("registry-1.docker.io").await.unwrap(),
        creds("", "hub-token")
    );
    let expected =
        json!({"identitytoken": "hub-token", "serveraddress": "https://index.docker.io/v1/"});
    assert_eq!(
        header_json(c.registry_auth_header("docker.io").await),
        expected
    );
}

#[tokio::test]
async fn a_host_helper_wins_and_an_empty_one_sends_the_host_to_auths() {
    let (_dir, c) = with_fake_helper(
        r#"{"credsStore": "absent", "credHelpers": {"https://ghcr.io": "test", "q.example": ""},
            "auths": {"ghcr.io": {"auth": "aHViOnB3"}, "q.example": {"auth": "aHViOnB3"}}}"#,
    );
    assert_eq!(
        c.credentials("ghcr.io").await.unwrap(),
        creds("helper-user", "helper-pass")
    );
    assert_eq!(
        c.credentials("q.example").await.unwrap(),
        creds("hub", "pw")
    );
    let err = c.credentials("o.example").await.unwrap_err();
    let absent = matches!(&err, DockerConfigError::Helper { helper, .. } if helper == "docker-credential-absent");
    assert!(absent && err.to_string().contains("cannot run"), "{err}");
}

#[tokio::test]
async fn debug_output_hides_secrets() {
    let c = config(
        r#"{"auths": {"a.example": {"auth": "dXNlcjpwYTpzcw=="}, "b.example": {"username": "bob", "password": "hunter2"},
            "c.example": {"identitytoken": "tok-hunter2"}}, "credHelpers": {"gcr.io": "gcloud"}}"#,
    );
    let (a, b) = (
        c.credentials("a.example").await.unwrap(),
        c.credentials("b.example").await.unwrap(),
    );
    let shown = format!("{c:?} {a:?} {b:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("dXNl") && !shown.contains("pa:ss"),
        "{shown}"
    );
    assert!(
        shown.contains("b.example") && shown.contains("gcloud") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert_eq!(
        format!("{:?}", Credentials::default()),
        r#"Credentials { username: "", secret: <empty> }"#
    );
}
