//! The small session services: Health (the daemon drops a session whose check fails or stalls)
//! and Secrets (for `RUN --mount=type=secret`).

use std::collections::HashMap;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::health_server::Health;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};
use crate::proto::secrets::secrets_server::Secrets;
use crate::proto::secrets::{GetSecretRequest, GetSecretResponse};

/// Always serving: the session lives exactly as long as its task.
pub(super) struct HealthService;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        _req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "health watch is not served; use check",
        ))
    }
}

/// Secrets by id from memory. An unknown id is NOT_FOUND, which the daemon treats as "no such
/// secret" (fatal only for `required=true` mounts).
pub(super) struct SecretsService {
    secrets: HashMap<String, Bytes>,
}

impl SecretsService {
    pub(super) fn new(secrets: HashMap<String, Bytes>) -> Self {
        Self { secrets }
    }
}

#[tonic::async_trait]
impl Secrets for SecretsService {
    async fn get_secret(
        &self,
        req: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &req.get_ref().id;
        match self.secrets.get(id) {
            Some(data) => Ok(Response::new(GetSecretResponse { data: data.clone() })),
            None => Err(Status::not_found(format!("secret {id:?} not found"))),
        }
    }
}
