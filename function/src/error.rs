//! Every way a build request can fail, and the one place they become HTTP statuses.

use openfaas_runtime::http::StatusCode;

/// Why a request did not produce an image.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    /// The body or its signature was refused.
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    /// The body is larger than its `Content-Length` already said the builder accepts.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The archive broke a rule; the message names the entry or limit.
    #[error(transparent)]
    Index(#[from] crate::archive::IndexError),
    /// The sealed secrets could not be opened; the message names the field or secret.
    #[error("{name}: {0}", name = crate::wire::SECRETS_NAME)]
    Sealed(#[from] crate::sealed::SealedError),
    /// Well-formed, but the builder's policy forbids it; the message names the rule.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The tar or its config is unusable; the message names the entry or field.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
    },
    /// The build ran and failed (Dockerfile error, failing step, missing base image).
    #[error("{message}")]
    BuildFailed {
        /// BuildKit's message.
        message: String,
    },
    /// A registry refused the push or a pull (credentials, permissions, unknown repository).
    #[error("registry refused: {message}")]
    RegistryRefused {
        /// The registry's message.
        message: String,
    },
    /// BuildKit or the registry could not be reached; retrying later may help.
    #[error("{message}")]
    Unavailable {
        /// What could not be reached.
        message: String,
    },
    /// The build took longer than `build_timeout`.
    #[error("build did not finish within build_timeout ({secs}s){}", running.as_ref().map(|r| format!("; running: {r}")).unwrap_or_default())]
    Timeout {
        /// The limit in seconds.
        secs: u64,
        /// The steps that were running when it was stopped.
        running: Option<String>,
    },
    /// Our own fault.
    #[error("internal error: {message}")]
    Internal {
        /// What broke.
        message: String,
    },
}

impl BuildError {
    /// The HTTP status, chosen for the queue-worker's retry policy (it retries 408, 429, 500,
    /// 502, 503 and 504): what retrying cannot fix is 4xx.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Verify(err) => {
                use crate::verify::VerifyError as V;
                match err {
                    V::MissingSignature | V::MalformedSignature | V::BadSignature => {
                        StatusCode::UNAUTHORIZED
                    }
                    V::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    V::Body { .. } => StatusCode::BAD_REQUEST,
                    V::ReadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
                    V::Spool { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Index(crate::archive::IndexError::Spool { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Index(_) | Self::BadRequest { .. } | Self::Sealed(_) => StatusCode::BAD_REQUEST,
            Self::Policy(crate::policy::PolicyError::TenantHeader { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Self::Policy(_) => StatusCode::FORBIDDEN,
            Self::BuildFailed { .. } | Self::RegistryRefused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying, for errors that retrying can fix.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        matches!(self, Self::Unavailable { .. }).then_some(10)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
        }
    }
}

impl From<buildkit::BuildkitError> for BuildError {
    fn from(err: buildkit::BuildkitError) -> Self {
        use buildkit::{BuildkitError as E, RegistryFault};
        match err {
            E::Build { message, .. } => Self::BuildFailed { message },
            E::Registry {
                fault: RegistryFault::Refused,
                message,
            } => Self::RegistryRefused { message },
            E::Registry {
                fault: RegistryFault::Unreachable,
                message,
            } => Self::Unavailable {
                message: format!("registry unreachable: {message}"),
            },
            // The address is the operator's (a socket path, a cluster host): the log line has
            // it, the answer says what failed.
            E::Unavailable { message, .. } => Self::Unavailable {
                message: format!("buildkit unreachable: {message}"),
            },
            err if err.is_retryable() => Self::Unavailable {
                message: err.to_string(),
            },
            E::Session { message } => Self::Unavailable {
                message: format!("buildkit session: {message}"),
            },
            other => Self::Internal {
                message: other.to_string(),
            },
        }
    }
}
