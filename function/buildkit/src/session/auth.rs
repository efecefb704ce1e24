//! Auth: registry credentials for the daemon's pulls and pushes, held to the build's read policy
//! ([`Access`]). `Credentials` answers a host's credentials where the policy lets it; for a
//! restricted build the session is the daemon's token authority for every registry it holds
//! credentials for, so that the daemon asks `FetchToken` with the scopes it needs and the builder
//! fetches the token itself. Elsewhere the token-authority calls answer UNIMPLEMENTED, on which
//! the daemon fetches tokens itself with what `Credentials` gave.

use std::sync::Arc;

use ring::signature::KeyPair;
use tonic::{Request, Response, Status};

use crate::access::{Access, AccessError};
use crate::proto::filesync::auth_server::Auth;
use crate::proto::filesync::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use crate::token::TokenError;

pub(super) struct AuthService {
    access: Arc<Access>,
}

impl AuthService {
    pub(super) fn new(access: Arc<Access>) -> Self {
        Self { access }
    }
}

/// The daemon falls back to `Credentials` and its own token fetch on this.
fn no_authority() -> Status {
    Status::unimplemented("no token authority for this registry")
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
        match self.access.credentials(&host).await {
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
        req: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        let req = req.into_inner();
        let token = self
            .access
            .token(&req.host, &req.realm, &req.service, &req.scopes)
            .await
            .map_err(|err| {
                tracing::info!(host = req.host, scopes = ?req.scopes, error = %err, "registry token not fetched");
                match &err {
                    AccessError::Token(TokenError::Unreachable { .. }) => {
                        Status::unavailable(err.to_string())
                    }
                    _ => Status::permission_denied(err.to_string()),
                }
            })?;
        tracing::debug!(host = req.host, scopes = ?req.scopes, "registry token fetched");
        Ok(Response::new(FetchTokenResponse {
            token: token.token,
            expires_in: token.expires_in,
            issued_at: token.issued_at,
        }))
    }

    async fn get_token_authority(
        &self,
        req: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        let req = req.into_inner();
        let key = self
            .access
            .authority(&req.host, &req.salt)
            .ok_or_else(no_authority)?;
        Ok(Response::new(GetTokenAuthorityResponse {
            public_key: key.public_key().as_ref().to_vec(),
        }))
    }

    async fn verify_token_authority(
        &self,
        req: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        let req = req.into_inner();
        let key = self
            .access
            .authority(&req.host, &req.salt)
            .ok_or_else(no_authority)?;
        // NaCl's `sign`: the signature, then the message.
        let mut signed = key.sign(&req.payload).as_ref().to_vec();
        signed.extend_from_slice(&req.payload);
        Ok(Response::new(VerifyTokenAuthorityResponse { signed }))
    }
}
