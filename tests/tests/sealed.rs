//! Sealed build secrets: values sealed by PyNaCl (an implementation independent of ours, see
//! `fixtures/sealed/make.py`) reach `RUN --mount=type=secret` and nothing else: not a layer of
//! the pushed image, not the log, not the answer. Every broken file gets 400 naming the fault.

use std::path::PathBuf;

use function_builder_tests::api::{raw_tar, servers, Item, Server};
use function_builder_tests::bed::Bed;
use handler::sealed::OpeningKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOKEN: &str = "fb-sealed-token-7f3a9c\n";
const NPMRC: &str = "//registry.example/:_authToken=fb-npm-4411\n";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sealed")
        .join(name)
}

fn sealed_file() -> String {
    std::fs::read_to_string(fixture("secrets.yaml")).unwrap()
}

fn key() -> OpeningKey {
    OpeningKey::load(&fixture("key")).unwrap()
}

async fn build(server: &Server, image: &str, dockerfile: &str, secrets: &str) -> (u16, Value) {
    let config = format!(r#"{{"image":"{image}"}}"#);
    let tar = raw_tar(&[
        Item::File("com.openfaas.docker.config", config.as_bytes(), 0o644),
        Item::Dir("context/"),
        Item::File("context/Dockerfile", dockerfile.as_bytes(), 0o644),
        // faas-cli appends it after context/ and the config.
        Item::File("com.openfaas.secrets", secrets.as_bytes(), 0o644),
    ]);
    server.post_signed(tar).await
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn secrets_sealed_by_pynacl_reach_run_mounts_and_no_layer_log_or_answer() {
    let bed = Bed::get();
    let df = format!(
        "FROM {}\nRUN --mount=type=secret,id=token --mount=type=secret,id=npmrc \
         sha256sum /run/secrets/token /run/secrets/npmrc | cut -d' ' -f1 > /hashes\n",
        bed.base_image
    );
    for (n, (daemon, server)) in servers(&bed, |s| s.secrets_key = Some(key()))
        .await
        .into_iter()
        .enumerate()
    {
        let image = format!("{}/sealed/secrets:{n}", bed.registry);
        let (status, json) = build(&server, &image, &df, &sealed_file()).await;
        assert_eq!(status, 200, "{daemon}: {json:#}");
        assert_eq!(
            bed.run_in_image(&image, "cat /hashes"),
            format!("{}\n{}\n", sha256(TOKEN), sha256(NPMRC)),
            "{daemon}"
        );
        let answer = json.to_string();
        let (ok, layers, _) = bed.docker(&["save", &image]);
        assert!(ok, "{daemon}: docker save {image}");
        for value in [TOKEN.trim(), NPMRC.trim(), "fb-npm-4411"] {
            assert!(
                !answer.contains(value),
                "{daemon}: the answer holds a secret"
            );
            assert!(!layers.contains(value), "{daemon}: a layer holds a secret");
        }
        assert!(server.work_dir_entries().is_empty(), "{daemon}");
    }
}

#[tokio::test]
async fn publickey_serves_the_configured_key_and_404_without_one() {
    let bed = Bed::get();
    let server = Server::start(&bed, |s| s.secrets_key = Some(key())).await;
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("publickey.json")).unwrap()).unwrap();
    assert_eq!(server.get_json("/publickey").await, (200, want));

    let without = Server::start(&bed, |_| {}).await;
    assert_eq!(
        without.get_json("/publickey").await,
        (
            404,
            serde_json::json!({"status": "failed", "error": "no build secrets key is configured (build_secrets_private_key_path)"})
        )
    );
}

#[tokio::test]
async fn every_broken_secrets_file_is_400_naming_the_fault_and_leaves_nothing() {
    let bed = Bed::get();
    let df = format!("FROM {}\n", bed.base_image);
    let image = format!("{}/sealed/broken:1", bed.registry);
    let good = sealed_file();
    let other = OpeningKey::load(&fixture("other-key")).unwrap();
    let ours = key().public().key_id.clone();
    let theirs = other.public().key_id.clone();
    let token_line = good
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap()
        .to_owned();

    let without_key = Server::start(&bed, |_| {}).await;
    let (status, json) = build(&without_key, &image, &df, &good).await;
    assert_eq!(status, 400, "{json:#}");
    assert_eq!(
        json["error"],
        "com.openfaas.secrets: build secrets were sent, but this builder has no key to open them (set build_secrets_private_key_path)"
    );

    let server = Server::start(&bed, |s| s.secrets_key = Some(key())).await;
    let other_server = Server::start(&bed, |s| s.secrets_key = Some(other.clone())).await;
    let cases: Vec<(&Server, String, String)> = vec![
        (
            &other_server,
            good.clone(),
            format!("key_id \"{ours}\" is not this builder's key \"{theirs}\": seal again with the key from GET /publickey"),
        ),
        (
            // Claims the other builder's key id, but was sealed to ours: fails to open.
            &other_server,
            good.replace(&ours, &theirs),
            "secret \"npmrc\" could not be opened: sealed to another key, or corrupted".to_owned(),
        ),
        (
            &server,
            good.replace("algorithm: nacl/box", "algorithm: age"),
            "unsupported algorithm \"age\" (this builder reads nacl/box)".to_owned(),
        ),
        (
            &server,
            good.replace("version: v1", "version: v9"),
            "unsupported version \"v9\" (this builder reads v1)".to_owned(),
        ),
        (
            &server,
            good.replace(&token_line, "  token: '%%%not-base64'"),
            "secret \"token\": invalid base64".to_owned(),
        ),
    ];
    for (server, file, want) in cases {
        let (status, json) = build(server, &image, &df, &file).await;
        assert_eq!(status, 400, "{want}: {json:#}");
        assert_eq!(json["error"], format!("com.openfaas.secrets: {want}"));
        assert!(server.work_dir_entries().is_empty());
    }
    let (status, json) = build(&server, &image, &df, "secrets: [unclosed").await;
    assert_eq!(status, 400, "{json:#}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("com.openfaas.secrets: invalid YAML: "),
        "{json:#}"
    );
}
