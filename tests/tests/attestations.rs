//! Attestations bound to the signed request, and reproducible digests, read back from the bed's
//! registry. Provenance and SBOMs need a standalone buildkitd (the bed's, or daemons of the
//! test's own); a Docker Engine 20.10 asked for either answers 422 before building.

use buildkit::Address;
use function_builder_tests::api::{request_tar, Answered, Server, Shape};
use function_builder_tests::bed::Bed;
use function_builder_tests::daemons::Buildkitd;
use function_builder_tests::registry::Image;
use handler::Settings;
use sha2::{Digest, Sha256};

/// A stand-in SBOM generator following BuildKit's SBOM scanning protocol: it writes one SPDX
/// in-toto statement per scanned root filesystem, listing its regular files with their SHA-256.
const SCANNER: &str = r#"#!/bin/sh
set -eu
src="$BUILDKIT_SCAN_SOURCE"
name=$(basename "$src")
files=""
i=0
for f in $(cd "$src" && find . -type f | sed 's|^\./||' | sort); do
    i=$((i + 1))
    sum=$(sha256sum "$src/$f" | cut -d' ' -f1)
    files="$files{\"fileName\":\"/$f\",\"SPDXID\":\"SPDXRef-File-$i\",\"checksums\":[{\"algorithm\":\"SHA256\",\"checksumValue\":\"$sum\"}]},"
done
printf '{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document","subject":[],"predicate":{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"%s","documentNamespace":"https://function-builder.test/sbom/%s","creationInfo":{"created":"2026-01-01T00:00:00Z","creators":["Tool: function-builder-test-scanner"]},"files":[%s]}}' \
    "$name" "$name" "${files%,}" >"$BUILDKIT_SCAN_DESTINATION/$name.spdx.json"
"#;

const APP: &[u8] = b"the app\n";

/// `sha256:<hex>` of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A builder on the bed's standalone buildkitd, if it runs one.
async fn on_buildkitd(bed: &Bed, tweak: impl FnOnce(&mut Settings)) -> Option<Server> {
    let daemon = bed
        .daemons()
        .into_iter()
        .find(|d| !matches!(d.address, Address::Docker(_)))?;
    Some(
        Server::start(bed, |s| {
            s.buildkit = daemon.address.into();
            s.buildkit_tls = daemon.tls;
            tweak(s);
        })
        .await,
    )
}

/// Builds `dockerfile` with `config` and `app.txt`; returns the answer and the tar it sent.
async fn build(server: &Server, config: &str, dockerfile: &str) -> (Answered, Vec<u8>) {
    let tar = request_tar(
        Shape::Python,
        config,
        &[
            ("Dockerfile", dockerfile.as_bytes(), 0o644),
            ("app.txt", APP, 0o644),
        ],
    );
    (server.post_signed_with(tar.clone(), &[]).await, tar)
}

/// Pushes the stand-in SBOM generator to the bed's registry; returns its reference.
async fn push_scanner(bed: &Bed, server: &Server) -> String {
    let image = format!("{}/tools/sbom-scanner:1", bed.registry);
    let tar = request_tar(
        Shape::Python,
        &format!(r#"{{"image":"{image}"}}"#),
        &[
            (
                "Dockerfile",
                format!(
                    "FROM {}\nCOPY scan /scan\nENTRYPOINT [\"/scan\"]\n",
                    bed.base_image
                )
                .as_bytes(),
                0o644,
            ),
            ("scan", SCANNER.as_bytes(), 0o755),
        ],
    );
    let answer = server.post_signed_with(tar, &[]).await;
    assert_eq!(answer.status, 200, "{:#}", answer.json);
    image
}

/// The layer of an attestation manifest holding the in-toto statement whose predicate type
/// starts with `predicate`.
async fn statement(
    image: &Image,
    attestation: &serde_json::Value,
    predicate: &str,
) -> serde_json::Value {
    let layer = attestation["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .is_some_and(|t| t.starts_with(predicate))
        })
        .unwrap_or_else(|| panic!("a {predicate} layer in {attestation:#}"));
    assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
    image.json_blob(layer["digest"].as_str().unwrap()).await
}

#[tokio::test]
async fn provenance_and_an_sbom_are_pushed_with_the_image_and_name_the_signed_request() {
    let bed = Bed::get();
    let scanner = format!("{}/tools/sbom-scanner:1", bed.registry);
    let Some(server) = on_buildkitd(&bed, |s| {
        s.attest.sbom_generator = scanner.parse().unwrap();
    })
    .await
    else {
        eprintln!("no standalone buildkitd on this bed: attestations not tried");
        return;
    };
    push_scanner(&bed, &server).await;
    let dockerfile = format!(
        "FROM {}\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\nCOPY app.txt /app/app.txt\n",
        bed.base_image
    );
    for mode in ["max", "min"] {
        let image = format!("{}/attest/app:{mode}", bed.registry);
        let config = format!(
            r#"{{"image":"{image}","provenance":"{mode}","sbom":true,"buildArgs":{{"GREETING":"hello"}}}}"#
        );
        let (answer, tar) = build(&server, &config, &dockerfile).await;
        assert_eq!(answer.status, 200, "{mode}: {:#}", answer.json);
        let request = sha256(&tar);
        assert_eq!(answer.json["requestDigest"], request.as_str());
        let listed: Vec<&str> = answer.json["attestations"]
            .as_array()
            .expect("attestations in the answer")
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert_eq!(listed.len(), 1, "one platform, one attestation manifest");

        // The index: the image and its attestation manifest, both annotated with the request.
        let (pushed, tag) = Image::split(&image);
        let index_bytes = pushed.manifest_bytes(&tag).await;
        assert_eq!(answer.json["digest"], sha256(&index_bytes).as_str());
        let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            index["annotations"]["com.openfaas.build.request"],
            request.as_str()
        );
        let entries = index["manifests"].as_array().unwrap();
        let image_entry = entries
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .expect("the amd64 image");
        let image_digest = image_entry["digest"].as_str().unwrap();
        let attestation_entry = entries
            .iter()
            .find(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
            .expect("an attestation manifest");
        assert_eq!(attestation_entry["digest"], listed[0]);
        assert_eq!(
            attestation_entry["annotations"]["vnd.docker.reference.digest"],
            image_digest
        );
        let image_manifest = pushed.manifest(image_digest).await;
        assert_eq!(
            image_manifest["annotations"]["com.openfaas.build.request"],
            request.as_str()
        );

        // The provenance: its subject is the image; it names the request (both modes) and the
        // build args (max only: min leaves them out, and says so).
        let attestation = pushed.manifest(listed[0]).await;
        let provenance = statement(&pushed, &attestation, "https://slsa.dev/provenance/").await;
        assert_eq!(
            provenance["subject"][0]["digest"]["sha256"],
            image_digest.trim_start_matches("sha256:")
        );
        let args = &provenance["predicate"]["invocation"]["parameters"]["args"];
        assert_eq!(
            args["com.openfaas.build.request"],
            request.as_str(),
            "{provenance:#}"
        );
        match mode {
            "max" => assert_eq!(args["build-arg:GREETING"], "hello", "{args:#}"),
            _ => {
                assert!(args.get("build-arg:GREETING").is_none(), "{args:#}");
                assert_eq!(
                    provenance["predicate"]["metadata"]["completeness"]["parameters"],
                    false
                );
            }
        }
        if mode == "max" {
            eprintln!(
                "provenance of {image} (excerpt): invocation.parameters = {:#}",
                provenance["predicate"]["invocation"]["parameters"]
            );
        }

        // The SBOM, from the stand-in generator: the image's files with their digests.
        let sbom = statement(&pushed, &attestation, "https://spdx.dev/Document").await;
        let files = sbom["predicate"]["files"].as_array().unwrap();
        let app = files
            .iter()
            .find(|f| f["fileName"] == "/app/app.txt")
            .unwrap_or_else(|| panic!("/app/app.txt in {sbom:#}"));
        assert_eq!(
            app["checksums"][0]["checksumValue"],
            hex::encode(Sha256::digest(APP))
        );
        assert!(
            files.iter().any(|f| f["fileName"] == "/greeting"),
            "{sbom:#}"
        );
    }
}

#[tokio::test]
async fn a_docker_engine_asked_for_attestations_or_reproducibility_answers_422_and_builds_without()
{
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let dockerfile = format!("FROM {}\nCOPY app.txt /app.txt\n", bed.base_image);
    let image = format!("{}/attest/docker:1", bed.registry);
    let cases = [
        (
            r#""provenance":"min""#,
            "attach attestations (provenance, sbom)",
            "v0.11",
        ),
        (
            r#""sbom":true"#,
            "attach attestations (provenance, sbom)",
            "v0.11",
        ),
        (
            r#""reproducible":true"#,
            "rewrite layer timestamps for a reproducible build (reproducible, sourceDateEpoch)",
            "v0.13",
        ),
    ];
    for (field, what, needs) in cases {
        let config = format!(r#"{{"image":"{image}",{field}}}"#);
        let (answer, _) = build(&server, &config, &dockerfile).await;
        assert_eq!(answer.status, 422, "{field}: {:#}", answer.json);
        let daemon = answer.json["daemon"].as_str().unwrap_or("buildkit-0");
        assert_eq!(
            answer.json["error"],
            format!("daemon {daemon} (a Docker Engine's BuildKit or one before v0.11: it answers no Info) cannot {what}: that needs a standalone buildkitd {needs} or later"),
            "{field}"
        );
    }
    // Not asking changes nothing: the image builds, and the answer names the request.
    let (answer, tar) = build(&server, &format!(r#"{{"image":"{image}"}}"#), &dockerfile).await;
    assert_eq!(answer.status, 200, "{:#}", answer.json);
    assert_eq!(answer.json["requestDigest"], sha256(&tar).as_str());
    assert!(
        answer.json.get("attestations").is_none(),
        "{:#}",
        answer.json
    );
}

#[tokio::test]
async fn an_sbom_generator_outside_allowed_frontends_is_403_before_any_build() {
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let config = format!(
        r#"{{"image":"{}/attest/evil:1","sbom":"{}/evil/scanner:1"}}"#,
        bed.registry, bed.registry
    );
    let (answer, _) = build(&server, &config, "FROM scratch\n").await;
    assert_eq!(answer.status, 403, "{:#}", answer.json);
    assert_eq!(
        answer.json["error"],
        format!(
            "sbom generator \"{}/evil/scanner:1\" is not allowed by allowed_frontends (docker.io/docker/dockerfile) nor sbom_generator",
            bed.registry
        )
    );
}

/// The digest of `config`'s image built on a buildkitd of its own, fresh: cold.
async fn cold_digest(bed: &Bed, bin: &std::path::Path, config: &str, dockerfile: &str) -> String {
    let daemon = Buildkitd::start(bin, &bed.registry).await;
    let server = Server::start(bed, |s| s.buildkit = daemon.address().into()).await;
    let (answer, _) = build(&server, config, dockerfile).await;
    assert_eq!(answer.status, 200, "{:#}", answer.json);
    answer.json["digest"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_cold_builds_of_one_reproducible_request_push_one_digest() {
    let bed = Bed::get();
    let Some(bin) = std::env::var_os("FB_BUILDKITD_BIN") else {
        eprintln!("no standalone buildkitd on this bed (FB_BUILDKITD_BIN): reproducible digests not tried");
        return;
    };
    let bin = std::path::PathBuf::from(bin);
    // A RUN step writes files at build time: their mtimes are what a reproducible build rewrites.
    let dockerfile = format!(
        "FROM {}\nRUN echo same > /same && mkdir -p /made/dir\nCOPY app.txt /app/\n",
        bed.base_image
    );
    let image = format!("{}/repro/app:1", bed.registry);
    let reproducible = format!(r#"{{"image":"{image}","reproducible":true}}"#);
    let first = cold_digest(&bed, &bin, &reproducible, &dockerfile).await;
    let second = cold_digest(&bed, &bin, &reproducible, &dockerfile).await;
    eprintln!("reproducible: {first} and {second}");
    assert_eq!(first, second, "two cold builds of one reproducible request");
    // Its date is the newest mtime of the request's context (every entry's is 1700000000).
    let (pushed, _) = Image::split(&image);
    let manifest = pushed.manifest(&first).await;
    let config = pushed.config(&manifest).await;
    assert_eq!(config["created"], "2023-11-14T22:13:20Z", "{config:#}");
    assert_eq!(
        pushed.file(&manifest, "same").await,
        Some(b"same\n".to_vec())
    );

    // Without it, the same request gives two digests.
    let plain = format!(r#"{{"image":"{image}"}}"#);
    let first = cold_digest(&bed, &bin, &plain, &dockerfile).await;
    let second = cold_digest(&bed, &bin, &plain, &dockerfile).await;
    assert_ne!(first, second, "two cold builds without reproducible");
}
