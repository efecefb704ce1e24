//! [`Client`]: one connection to a daemon and the Control calls that are not a build.

use tonic::transport::Channel;

use crate::connect::connect;
use crate::proto::control::control_client::ControlClient;
use crate::proto::control::{InfoRequest, ListWorkersRequest};
use crate::{Address, BuildkitError, TlsFiles};

/// Status responses carry up to ~1 MiB of logs each but can be much larger (many vertices).
const MAX_DECODE: usize = 64 * 1024 * 1024;
/// Old daemons receive at most 4 MiB per message on `/grpc`; our requests are far smaller.
const MAX_ENCODE: usize = 16 * 1024 * 1024;

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
            })
            .collect())
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
