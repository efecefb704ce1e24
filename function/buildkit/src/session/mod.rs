//! The session: over a `Control.Session` byte stream the client serves gRPC and the daemon calls
//! in, for local dirs (FileSync), registry credentials (Auth), secrets and health checks.

mod auth;
mod filesync;
mod services;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tower::ServiceExt;

use crate::access::Access;
use crate::proto::control::control_client::ControlClient;
use crate::proto::control::BytesMessage;
use crate::proto::filesync::auth_server::AuthServer;
use crate::proto::filesync::file_sync_server::FileSyncServer;
use crate::proto::health::health_server::HealthServer;
use crate::proto::secrets::secrets_server::SecretsServer;
use crate::SourceTree;

/// Every method the session serves, advertised one metadata value each (comma-joined values make
/// the daemon answer "no local sources enabled").
const METHODS: &[&str] = &[
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.FileSync/TarStream",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// Bytes read from the session pipe per `BytesMessage`, as Go does; old daemons accept at most
/// 4 MiB per message.
const PIPE_CHUNK: usize = 32 * 1024;
/// The in-memory pipe between the gRPC server and the stream pump.
const PIPE_BUFFER: usize = 256 * 1024;
/// FileSync packets carry 32 KiB of data; anything much larger is a bug or an attack.
const MAX_SESSION_MESSAGE: usize = 16 * 1024 * 1024;

/// What a session offers the daemon.
pub(crate) struct Services {
    /// Local dirs by name (`context`, `dockerfile`).
    pub(crate) sources: HashMap<String, Arc<dyn SourceTree>>,
    /// Registry credentials, held to the build's read policy.
    pub(crate) auth: Arc<Access>,
    /// Build secrets by id.
    pub(crate) secrets: HashMap<String, Bytes>,
}

/// A running session; dropping it ends the session (the stream is reset and the daemon forgets it).
pub(crate) struct Session {
    id: String,
    task: JoinHandle<()>,
}

impl Session {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a session on `control` and returns at once; the daemon attaches within milliseconds and
/// waits up to 5 s for it when a build needs it. `shared_key` scopes the daemon's incremental
/// context transfer: builds under the same key are diffed against each other.
pub(crate) fn start(
    control: ControlClient<Channel>,
    shared_key: &str,
    services: Services,
) -> Session {
    let id = crate::id::new();
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("x-docker-expose-session-uuid", ascii(&id));
    metadata.insert("x-docker-expose-session-name", ascii("function-builder"));
    metadata.insert(
        "x-docker-expose-session-sharedkey",
        ascii(&sanitize(shared_key)),
    );
    for method in METHODS {
        metadata.append("x-docker-expose-session-grpc-method", ascii(method));
    }
    let task = tokio::spawn(run(control, metadata, services, id.clone()));
    Session { id, task }
}

fn ascii(value: &str) -> MetadataValue<tonic::metadata::Ascii> {
    MetadataValue::try_from(value).unwrap_or_else(|_| MetadataValue::from_static(""))
}

/// Metadata values must be printable ASCII; the key only needs to be stable per repository.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

async fn run(
    mut control: ControlClient<Channel>,
    metadata: tonic::metadata::MetadataMap,
    services: Services,
    id: String,
) {
    let (server_io, pump_io) = tokio::io::duplex(PIPE_BUFFER);
    let router = Router::new(services);
    let server = http2::Builder::new(TokioExecutor::new()).serve_connection(
        TokioIo::new(server_io),
        hyper::service::service_fn(move |req| router.clone().route(req)),
    );

    let (pump_read, mut pump_write) = tokio::io::split(pump_io);
    let outbound = ReaderStream::with_capacity(pump_read, PIPE_CHUNK)
        .take_while(|chunk| std::future::ready(chunk.is_ok()))
        .filter_map(|chunk| {
            std::future::ready(chunk.ok().map(|data| BytesMessage {
                data: data.to_vec(),
            }))
        });
    let mut request = tonic::Request::new(outbound);
    *request.metadata_mut() = metadata;

    let pump = async move {
        let mut inbound = control.session(request).await?.into_inner();
        while let Some(message) = inbound.message().await? {
            if pump_write.write_all(&message.data).await.is_err() {
                break;
            }
        }
        Ok::<_, tonic::Status>(())
    };
    tokio::select! {
        result = pump => match result {
            Ok(()) => tracing::debug!(session = %id, "daemon closed the session"),
            Err(status) => tracing::warn!(session = %id, code = ?status.code(), message = status.message(), "session stream failed"),
        },
        result = server => if let Err(err) = result {
            tracing::warn!(session = %id, error = %err, "session server failed");
        },
    }
}

/// Dispatches the daemon's calls to the session services by path.
#[derive(Clone)]
struct Router {
    filesync: FileSyncServer<filesync::FileSyncService>,
    auth: AuthServer<auth::AuthService>,
    secrets: SecretsServer<services::SecretsService>,
    health: HealthServer<services::HealthService>,
}

impl Router {
    fn new(services: Services) -> Self {
        Self {
            filesync: FileSyncServer::new(filesync::FileSyncService::new(services.sources))
                .max_decoding_message_size(MAX_SESSION_MESSAGE),
            auth: AuthServer::new(auth::AuthService::new(services.auth)),
            secrets: SecretsServer::new(services::SecretsService::new(services.secrets)),
            health: HealthServer::new(services::HealthService),
        }
    }

    async fn route(
        self,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<tonic::body::Body>, Infallible> {
        let path = req.uri().path();
        if path.starts_with("/moby.filesync.v1.FileSync/") {
            self.filesync.oneshot(req).await
        } else if path.starts_with("/moby.filesync.v1.Auth/") {
            self.auth.oneshot(req).await
        } else if path.starts_with("/moby.buildkit.secrets.v1.Secrets/") {
            self.secrets.oneshot(req).await
        } else if path.starts_with("/grpc.health.v1.Health/") {
            self.health.oneshot(req).await
        } else {
            Ok(
                tonic::Status::unimplemented(format!("{path} is not served by this session"))
                    .into_http(),
            )
        }
    }
}
