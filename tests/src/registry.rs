//! Images read back from the bed's plain-HTTP registry: manifests and manifest lists, blobs, and
//! files in an image's layers.

use std::io::Read;

use serde_json::Value;

use crate::client::{empty, read_body, send_tcp};

/// Every manifest type a registry may answer with: an image or a list, Docker's or OCI's.
const ANY_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.index.v1+json";

/// An image reference of the bed's registry, in parts.
#[derive(Clone, Debug)]
pub struct Image {
    /// `127.0.0.1:<port>`.
    pub registry: String,
    /// The repository inside it.
    pub repo: String,
}

impl Image {
    /// `registry/repo:tag` (or `@digest`) as the image and the tag or digest.
    ///
    /// # Panics
    /// When `reference` names no registry host and tag.
    pub fn split(reference: &str) -> (Self, String) {
        let (registry, rest) = reference.split_once('/').expect("registry/repo:tag");
        let (repo, tag) = rest
            .split_once('@')
            .or_else(|| rest.rsplit_once(':'))
            .expect("a tag or digest");
        let image = Self {
            registry: registry.to_owned(),
            repo: repo.to_owned(),
        };
        (image, tag.to_owned())
    }

    /// The manifest (or list) `reference` (a tag or digest) names, with its media type.
    ///
    /// # Panics
    /// When the registry does not answer 200 with JSON.
    pub async fn manifest(&self, reference: &str) -> Value {
        let body = self.manifest_bytes(reference).await;
        serde_json::from_slice(&body).expect("a manifest is JSON")
    }

    /// The manifest (or list) `reference` names, as the registry stores it: its sha256 is its
    /// digest.
    ///
    /// # Panics
    /// When the registry does not answer 200.
    pub async fn manifest_bytes(&self, reference: &str) -> Vec<u8> {
        self.get(
            &format!("/v2/{}/manifests/{reference}", self.repo),
            ANY_MANIFEST,
        )
        .await
    }

    /// The JSON blob `digest` (a config, an in-toto statement).
    ///
    /// # Panics
    /// When it cannot be read as JSON.
    pub async fn json_blob(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest).await).expect("a JSON blob")
    }

    /// The blob `digest`.
    ///
    /// # Panics
    /// When the registry does not answer 200.
    pub async fn blob(&self, digest: &str) -> Vec<u8> {
        self.get(&format!("/v2/{}/blobs/{digest}", self.repo), "*/*")
            .await
    }

    /// The image config a manifest names.
    ///
    /// # Panics
    /// When it cannot be read.
    pub async fn config(&self, manifest: &Value) -> Value {
        let digest = manifest["config"]["digest"].as_str().expect("a config");
        serde_json::from_slice(&self.blob(digest).await).expect("a config is JSON")
    }

    /// The content of `path` (relative to the root, e.g. `arch`) in the image a manifest names:
    /// from the last layer that holds it.
    ///
    /// # Panics
    /// When a layer cannot be read.
    pub async fn file(&self, manifest: &Value, path: &str) -> Option<Vec<u8>> {
        let layers = manifest["layers"].as_array().expect("layers");
        for layer in layers.iter().rev() {
            let blob = self.blob(layer["digest"].as_str().unwrap()).await;
            if let Some(content) = file_in_layer(&blob, path) {
                return Some(content);
            }
        }
        None
    }

    async fn get(&self, path: &str, accept: &str) -> Vec<u8> {
        let req = http::Request::get(path)
            .header("host", &self.registry)
            .header("accept", accept)
            .body(empty())
            .unwrap();
        let resp = send_tcp(self.registry.parse().unwrap(), req).await;
        let status = resp.status();
        let body = read_body(resp).await;
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        body.to_vec()
    }
}

/// The content of `path` in a layer, a tar, gzipped or not.
///
/// # Panics
/// When the layer is not a tar.
pub fn file_in_layer(layer: &[u8], path: &str) -> Option<Vec<u8>> {
    let reader: Box<dyn Read + '_> = if layer.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(layer))
    } else {
        Box::new(layer)
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().expect("a layer is a tar") {
        let mut entry = entry.expect("a tar entry");
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name.trim_start_matches("./") == path {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            return Some(content);
        }
    }
    None
}
