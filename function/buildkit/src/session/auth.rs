//! Auth: registry credentials for the daemon's pulls and pushes, from a Docker `config.json`.
//! Only `Credentials` is served; the token-authority methods answer UNIMPLEMENTED, on which the
//! daemon asks for credentials and fetches registry tokens itself.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::dockerconfig::DockerConfig;
use crate::proto::filesync::auth_server::Auth;
use crate::proto::filesync::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};

pub(super) struct AuthService {
    config: Arc<DockerConfig>,
}

impl AuthService {
    pub(super) fn new(config: Arc<DockerConfig>) -> Self {
        Self { config }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(
        &self,
        req: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = req.into_inner().host;
        // A credential helper runs as a child of this call: dropping the call (the daemon
        // resets the stream, the session's connection goes) kills the helper with it.
        match self.config.credentials(&host).await {
            Ok(credentials) => {
                tracing::debug!(
                    host,
                    anonymous = credentials.is_anonymous(),
                    "registry credentials requested"
                );
                Ok(Response::new(CredentialsResponse {
                    username: credentials.username,
                    secret: credentials.secret,
                }))
            }
            Err(err) => Err(Status::permission_denied(err.to_string())),
        }
    }

    async fn fetch_token(
        &self,
        _req: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }

    async fn get_token_authority(
        &self,
        _req: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _req: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }
}
