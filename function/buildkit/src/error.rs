//! What can go wrong talking to BuildKit, in terms a caller can act on.

/// Why a registry did not take or give an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryFault {
    /// It could not be reached or was overloaded: connection refused or reset, DNS failure,
    /// timeout, TLS handshake failure, HTTP 5xx or 429. Retrying later may help.
    Unreachable,
    /// It answered and said no: 401/403 denied, unknown repository, invalid name. Retrying
    /// cannot help.
    Refused,
    /// Its TLS certificate could not be verified (unknown authority, wrong name, expired): a
    /// configuration problem of the registry or of the daemon's trust, which retrying cannot fix.
    Certificate,
}

/// An error of the BuildKit client.
#[derive(Debug, thiserror::Error)]
pub enum BuildkitError {
    /// The daemon could not be reached (retrying may help).
    #[error("cannot reach buildkit at {address}: {message}")]
    Unavailable {
        /// The address dialled.
        address: String,
        /// Why, from the transport.
        message: String,
    },
    /// A TLS file could not be used.
    #[error("buildkit tls: {message}")]
    Tls {
        /// Which file and why.
        message: String,
    },
    /// A call to the daemon failed outside the build itself.
    #[error("buildkit {call}: {message}")]
    Rpc {
        /// The Control method.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The daemon's message.
        message: String,
    },
    /// The build ran and failed: a Dockerfile error, a failing step, a missing base image.
    #[error("{message}")]
    Build {
        /// BuildKit's message, e.g. `process "/bin/sh -c exit 3" did not complete successfully: exit code: 3`.
        message: String,
        /// The step that failed, e.g. `[2/3] RUN make`, when one did.
        step: Option<String>,
        /// That step's last lines of output.
        output: Vec<String>,
    },
    /// A registry did not take the image, or give one the build needed.
    #[error("{message}")]
    Registry {
        /// Whether it could not be reached (retrying may help), said no, or showed a
        /// certificate that could not be verified.
        fault: RegistryFault,
        /// The registry (`host[:port]`), where the failure names it.
        registry: Option<String>,
        /// The registry's, Engine's or BuildKit's words, e.g. `push reg/app:1: denied: …`.
        message: String,
    },
    /// The daemon's source policy refused a source of the build before fetching it.
    #[error("{message}")]
    SourceDenied {
        /// The daemon's words, naming the source.
        message: String,
    },
    /// An image outside the build's read policy: the daemon's source policy denied it, or it
    /// was pulled without the builder's credentials and its registry refused.
    #[error("{message}")]
    ImageDenied {
        /// The image, `registry/path` (or the denied source as the daemon names it).
        image: String,
        /// The daemon's or the registry's words.
        message: String,
    },
    /// The builder kept its Basic credentials for a registry the read policy splits between
    /// tenants, on a daemon without source policies to keep the build to its own repositories,
    /// and the registry refused the build without them.
    #[error("{message}")]
    CredentialsWithheld {
        /// The registry, `host[:port]`.
        registry: String,
        /// The daemon's or the registry's words.
        message: String,
    },
    /// The build ran past the request's timeout and was canceled.
    #[error("build did not finish within {}s{}", limit.as_secs(), if running.is_empty() { String::new() } else { format!("; running: {}", running.join(", ")) })]
    Timeout {
        /// The limit.
        limit: std::time::Duration,
        /// The steps that were running, each named once, in the order they started.
        running: Vec<String>,
    },
    /// An image for several platforms, and a daemon that cannot export one: a Docker Engine with
    /// its classic image store (Docker 20.10's). Found before the build where the daemon's
    /// workers tell ([`crate::Client::exports_multi_platform`]), else from the exporter's refusal.
    #[error("this daemon cannot export a multi-platform image: a Docker Engine with its classic image store (such as Docker 20.10) keeps one platform per image; ask for one platform, or build on buildkitd or on a Docker Engine with the containerd image store")]
    MultiPlatformUnsupported,
    /// The session with the daemon broke.
    #[error("buildkit session: {message}")]
    Session {
        /// Why.
        message: String,
    },
}

impl BuildkitError {
    /// Whether trying again later can help: the daemon (or the transport to it) was unavailable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. }
            | Self::Registry {
                fault: RegistryFault::Unreachable,
                ..
            } => true,
            Self::Rpc { code, .. } => matches!(
                code,
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            ),
            _ => false,
        }
    }

    pub(crate) fn rpc(call: &'static str, status: tonic::Status) -> Self {
        Self::Rpc {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// `err` and its sources, `: `-separated, each said once (hyper repeats its cause in its own text).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        next = cause.source();
    }
    text
}
