//! Reading what a build pushed, back from the bed's plain-HTTP registry: manifests and indexes
//! by tag or digest, blobs, and files inside an image's layers.

use std::io::Read;

use crate::client::{empty, read_body, send_tcp};

/// Every manifest kind the registry may hold.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A manifest or index read from a registry.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Its digest, as the registry computed it (`Docker-Content-Digest`).
    pub digest: String,
    /// Its JSON.
    pub json: serde_json::Value,
}

/// `registry/repo:tag` or `registry/repo@digest` → (registry, repo, tag or digest).
///
/// # Panics
/// When `image` names no registry host and port.
pub fn split(image: &str) -> (&str, &str, &str) {
    let (registry, rest) = image.split_once('/').expect("an image with a registry");
    let (repo, reference) = rest
        .split_once('@')
        .or_else(|| rest.rsplit_once(':'))
        .expect("an image with a tag or digest");
    (registry, repo, reference)
}

/// The manifest or index `reference` (a tag or a digest) of `repo` in `registry`.
///
/// # Panics
/// When the registry does not answer 200 with JSON.
pub async fn manifest(registry: &str, repo: &str, reference: &str) -> Manifest {
    let req = http::Request::get(format!("/v2/{repo}/manifests/{reference}"))
        .header("host", registry)
        .header("accept", ACCEPT)
        .body(empty())
        .unwrap();
    let resp = send_tcp(registry.parse().unwrap(), req).await;
    assert_eq!(resp.status(), 200, "GET {registry}/{repo}:{reference}");
    let digest = resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let json = serde_json::from_slice(&read_body(resp).await).unwrap();
    Manifest { digest, json }
}

/// The blob `digest` of `repo` in `registry`.
///
/// # Panics
/// When the registry does not answer 200.
pub async fn blob(registry: &str, repo: &str, digest: &str) -> Vec<u8> {
    let req = http::Request::get(format!("/v2/{repo}/blobs/{digest}"))
        .header("host", registry)
        .body(empty())
        .unwrap();
    let resp = send_tcp(registry.parse().unwrap(), req).await;
    // The registry may redirect a blob; the bed's serves it.
    assert_eq!(resp.status(), 200, "GET blob {digest} of {registry}/{repo}");
    read_body(resp).await.to_vec()
}

/// The JSON blob `digest` of `repo` in `registry`.
///
/// # Panics
/// As [`blob`], and when it is not JSON.
pub async fn json_blob(registry: &str, repo: &str, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&blob(registry, repo, digest).await).unwrap()
}

/// The content of `path` (no leading `/`) in the image `manifest` (a single-platform one),
/// from its topmost layer that holds it.
///
/// # Panics
/// When a layer cannot be read as a (gzipped) tar.
pub async fn file_in_layers(
    registry: &str,
    repo: &str,
    manifest: &serde_json::Value,
    path: &str,
) -> Option<Vec<u8>> {
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for layer in layers.iter().rev() {
        let digest = layer["digest"].as_str().unwrap();
        let bytes = blob(registry, repo, digest).await;
        if let Some(found) = find_in_tar(&bytes, path) {
            return Some(found);
        }
    }
    None
}

fn find_in_tar(layer: &[u8], path: &str) -> Option<Vec<u8>> {
    let plain = if layer.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(layer)
            .read_to_end(&mut out)
            .expect("a gzipped layer");
        out
    } else {
        layer.to_vec()
    };
    let mut archive = tar::Archive::new(plain.as_slice());
    for entry in archive.entries().expect("a layer tar") {
        let mut entry = entry.expect("a layer entry");
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.trim_start_matches("./") == path {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return Some(data);
        }
    }
    None
}
