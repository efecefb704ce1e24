//! [`Client`]: one connection to a daemon and the Control calls that are not a build.

use std::collections::BTreeMap;

use tonic::transport::Channel;

use crate::connect::connect;
use crate::proto::control::control_client::ControlClient;
use crate::proto::control::{InfoRequest, ListWorkersRequest};
use crate::{Address, BuildkitError, TlsFiles};

/// Status responses carry up to ~1 MiB of logs each but can be much larger (many vertices).
const MAX_DECODE: usize = 64 * 1024 * 1024;
/// Old daemons receive at most 4 MiB per message on `/grpc`; our requests are far smaller.
const MAX_ENCODE: usize = 16 * 1024 * 1024;
/// The label a Docker Engine's worker carries when its images live in the containerd image
/// store, which holds multi-platform images; buildx reads the same one (`driver/docker/driver.go`).
const CONTAINERD_STORE: &str = "org.mobyproject.buildkit.worker.snapshotter";

/// A connection to one BuildKit daemon: a standalone buildkitd or a Docker Engine's.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) control: ControlClient<Channel>,
    pub(crate) address: Address,
}

/// One of the daemon's workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    /// Worker id (`moby` for a Docker Engine, a random id for buildkitd's OCI worker).
    pub id: String,
    /// Platforms it builds for natively or under emulation, e.g. `linux/amd64`.
    pub platforms: Vec<String>,
    /// Its labels, e.g. `org.mobyproject.buildkit.worker.executor`.
    pub labels: BTreeMap<String, String>,
}

impl Client {
    /// Connects to the daemon at `address`; `tls` only for `tcp://`.
    ///
    /// # Errors
    /// When the daemon cannot be reached or the TLS files cannot be used.
    pub async fn connect(address: &Address, tls: Option<&TlsFiles>) -> Result<Self, BuildkitError> {
        let channel = connect(address, tls).await?;
        let control = ControlClient::new(channel)
            .max_decoding_message_size(MAX_DECODE)
            .max_encoding_message_size(MAX_ENCODE);
        Ok(Self {
            control,
            address: address.clone(),
        })
    }

    /// The address this client dialled.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The daemon's workers; a cheap call that proves the daemon answers.
    ///
    /// # Errors
    /// When the call fails.
    pub async fn list_workers(&self) -> Result<Vec<Worker>, BuildkitError> {
        let workers = self
            .control
            .clone()
            .list_workers(ListWorkersRequest::default())
            .await
            .map_err(|status| BuildkitError::rpc("ListWorkers", status))?
            .into_inner();
        Ok(workers
            .record
            .into_iter()
            .map(|worker| Worker {
                id: worker.id,
                platforms: worker
                    .platforms
                    .into_iter()
                    .map(|p| match p.variant.as_str() {
                        "" => format!("{}/{}", p.os, p.architecture),
                        variant => format!("{}/{}/{variant}", p.os, p.architecture),
                    })
                    .collect(),
                labels: worker.labels.into_iter().collect(),
            })
            .collect())
    }

    /// Whether the daemon can export one image for several platforms (a manifest list):
    /// buildkitd can; a Docker Engine only with the containerd image store. Its classic store
    /// keeps one platform per image, and its `moby` exporter refuses several (Docker 20.10:
    /// `exporting multiple references to image store is currently unsupported`), but only once
    /// every platform is built.
    ///
    /// # Errors
    /// When a Docker Engine's workers cannot be listed.
    pub async fn exports_multi_platform(&self) -> Result<bool, BuildkitError> {
        if !matches!(self.address, Address::Docker(_)) {
            return Ok(true);
        }
        Ok(containerd_store(&self.list_workers().await?))
    }

    /// The daemon's BuildKit version, or `None` where it has no `Info` call (BuildKit before
    /// v0.11, e.g. Docker 20.10).
    ///
    /// # Errors
    /// When the call fails for another reason.
    pub async fn version(&self) -> Result<Option<String>, BuildkitError> {
        match self.control.clone().info(InfoRequest {}).await {
            Ok(info) => Ok(info.into_inner().buildkit_version.map(|v| v.version)),
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(None),
            Err(status) => Err(BuildkitError::rpc("Info", status)),
        }
    }
}

/// Whether a Docker Engine's workers keep its images in the containerd image store.
fn containerd_store(workers: &[Worker]) -> bool {
    workers
        .iter()
        .any(|worker| worker.labels.contains_key(CONTAINERD_STORE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(labels: &[(&str, &str)]) -> Worker {
        Worker {
            id: "moby".to_owned(),
            platforms: vec!["linux/amd64".to_owned(), "linux/arm64".to_owned()],
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn only_a_worker_that_names_its_snapshotter_has_the_containerd_store() {
        // Docker 20.10's worker, as the bed's dockerd answers: no labels at all.
        assert!(!containerd_store(&[worker(&[])]));
        assert!(!containerd_store(&[]));
        let other = worker(&[("org.mobyproject.buildkit.worker.executor", "oci")]);
        assert!(!containerd_store(std::slice::from_ref(&other)));
        let containerd = worker(&[(CONTAINERD_STORE, "overlayfs")]);
        assert!(containerd_store(&[other, containerd]));
    }
}
