//! Every way a build request can fail, and the one place they become HTTP statuses.

use openfaas_runtime::http::StatusCode;

/// How many running steps a `build_timeout` message names, and how much of each name.
const RUNNING_NAMED: usize = 3;
const STEP_NAME_CHARS: usize = 120;
/// How much of each of a failed step's last lines its error quotes.
const OUTPUT_LINE_CHARS: usize = 300;

/// A source error of our own faults.
pub(crate) type Source = Box<dyn std::error::Error + Send + Sync>;

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
    /// The body is empty.
    #[error("empty request body: expected a tar")]
    Empty,
    /// The archive broke a rule; the message names the entry or limit.
    #[error(transparent)]
    Index(#[from] crate::archive::IndexError),
    /// The config is unusable; the message names the field.
    #[error(transparent)]
    Config(#[from] crate::buildconfig::ConfigError),
    /// The sealed secrets could not be opened; the message names the field or secret.
    #[error("{name}: {0}", name = crate::wire::SECRETS_NAME)]
    Sealed(#[from] crate::sealed::SealedError),
    /// Well-formed, but the builder's policy forbids it; the message names the rule.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The build ran and failed (Dockerfile error, failing step, missing base image).
    #[error("{}", failed_step(message, step.as_deref(), output))]
    BuildFailed {
        /// BuildKit's message.
        message: String,
        /// The step that failed, e.g. `[2/3] RUN make`, when one did.
        step: Option<String>,
        /// Its last lines of output.
        output: Vec<String>,
    },
    /// A registry refused the push or a pull (credentials, permissions, unknown repository).
    #[error("registry refused: {message}")]
    RegistryRefused {
        /// The registry's message.
        message: String,
    },
    /// A registry's TLS certificate could not be verified: its configuration or the daemon's
    /// trust of it must change, so a retry cannot help.
    #[error("registry {registry}: certificate problem (the TLS certificate could not be verified; fix the registry's certificate or the daemon's trust of it): {message}")]
    RegistryCertificate {
        /// `host[:port]`, or `(unnamed)` when the failure did not name it.
        registry: String,
        /// The daemon's words.
        message: String,
    },
    /// The daemon's source policy refused a remote source before fetching it.
    #[error("remote source refused by allowed_remote_sources: {message}")]
    SourceDenied {
        /// The daemon's words, naming the source.
        message: String,
    },
    /// An image outside the build's read policy was denied, or refused by its registry once
    /// pulled without the builder's credentials.
    #[error("image {image} is outside what this build may read with the builder's registry credentials (its tenant's repositories, base_image_prefixes, allowed_frontends): {message}")]
    ReadDenied {
        /// The image.
        image: String,
        /// The daemon's or the registry's words.
        message: String,
    },
    /// The builder kept its Basic credentials for a registry the read policy splits, on a daemon
    /// that cannot keep a build to its own repositories.
    #[error("registry {registry}: the builder gives tenant builds no credentials for it, because it takes Basic auth, which names no repository, and this daemon (BuildKit before v0.11, such as Docker Engine 20.10's) applies no source policy to keep a build to its tenant's repositories; build on buildkitd v0.11+, use a token-auth registry, or list the registry whole in base_image_prefixes if every tenant may read all of it: {message}")]
    CredentialsWithheld {
        /// `host[:port]`.
        registry: String,
        /// The daemon's or the registry's words.
        message: String,
    },
    /// The daemon chosen cannot do what the build asks (attestations, a reproducible build).
    #[error("daemon {daemon} ({version}) cannot {what}: that needs a standalone buildkitd {needs} or later")]
    DaemonCannot {
        /// The daemon's stable name.
        daemon: String,
        /// Its BuildKit version, or why it has none to tell.
        version: String,
        /// What it cannot do, naming the config fields.
        what: &'static str,
        /// The BuildKit release that can.
        needs: &'static str,
    },
    /// The daemon chosen cannot do what the config asks: export an image for several
    /// platforms on a Docker Engine's classic image store.
    #[error("{message}")]
    Unsupported {
        /// What it cannot do, and what would.
        message: String,
    },
    /// BuildKit or the registry could not be reached; retrying later may help.
    #[error("{message}")]
    Unavailable {
        /// What could not be reached.
        message: String,
    },
    /// The build took longer than `build_timeout`.
    #[error(
        "build did not finish within build_timeout ({secs}s){}",
        running_steps(running)
    )]
    Timeout {
        /// The limit in seconds.
        secs: u64,
        /// The steps that were running when it was stopped.
        running: Vec<String>,
    },
    /// Our own fault: what we were doing, and the error that stopped it.
    #[error("internal error: {context}{}", source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Internal {
        /// What the builder was doing.
        context: String,
        /// Why that failed.
        source: Option<Source>,
    },
}

impl From<crate::attest::AttestError> for BuildError {
    fn from(err: crate::attest::AttestError) -> Self {
        match err {
            crate::attest::AttestError::Config(err) => Self::Config(err),
            crate::attest::AttestError::Policy(err) => Self::Policy(err),
        }
    }
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
                    V::Spool { .. } | V::Key { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                }
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Index(crate::archive::IndexError::Spool { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Index(_) | Self::Empty | Self::Config(_) | Self::Sealed(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Policy(crate::policy::PolicyError::TenantHeader { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Self::Policy(_) | Self::SourceDenied { .. } | Self::ReadDenied { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::BuildFailed { .. }
            | Self::RegistryRefused { .. }
            | Self::RegistryCertificate { .. }
            | Self::CredentialsWithheld { .. }
            | Self::DaemonCannot { .. }
            | Self::Unsupported { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying, for errors that retrying can fix.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        matches!(self, Self::Unavailable { .. }).then_some(10)
    }

    /// Our own fault while doing `context`.
    pub(crate) fn internal(context: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

/// `[2/3] RUN make: <message>` and the step's last lines, each on a line of its own.
fn failed_step(message: &str, step: Option<&str>, output: &[String]) -> String {
    let mut text = match step {
        Some(step) => format!("{step}: {message}"),
        None => message.to_owned(),
    };
    if !output.is_empty() {
        text.push_str("\nlast output of the step:");
        for line in output {
            text.push_str("\n  ");
            text.extend(line.chars().take(OUTPUT_LINE_CHARS));
        }
    }
    text
}

/// `; running: <names>`: each step once, at most [`RUNNING_NAMED`] of them, each cut to
/// [`STEP_NAME_CHARS`]; nothing when none was running.
fn running_steps(running: &[String]) -> String {
    let mut names: Vec<String> = Vec::new();
    for name in running {
        let name: String = name.chars().take(STEP_NAME_CHARS).collect();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let more = names.len().saturating_sub(RUNNING_NAMED);
    names.truncate(RUNNING_NAMED);
    if more > 0 {
        names.push(format!("{more} more"));
    }
    format!("; running: {}", names.join(", "))
}

impl From<buildkit::BuildkitError> for BuildError {
    fn from(err: buildkit::BuildkitError) -> Self {
        use buildkit::{BuildkitError as E, RegistryFault};
        match err {
            E::Build {
                message,
                step,
                output,
            } => Self::BuildFailed {
                message,
                step,
                output,
            },
            E::Registry {
                fault: RegistryFault::Refused,
                message,
                ..
            } => Self::RegistryRefused { message },
            E::Registry {
                fault: RegistryFault::Certificate,
                registry,
                message,
            } => Self::RegistryCertificate {
                registry: registry.unwrap_or_else(|| "(unnamed)".to_owned()),
                message,
            },
            E::Registry {
                fault: RegistryFault::Unreachable,
                message,
                ..
            } => Self::Unavailable {
                message: format!("registry unreachable: {message}"),
            },
            // The address is the operator's (a socket path, a cluster host): the log line has
            // it, the answer says what failed.
            E::Unavailable { message, .. } => Self::Unavailable {
                message: format!("buildkit unreachable: {message}"),
            },
            E::SourceDenied { message } => Self::SourceDenied { message },
            E::ImageDenied { image, message } => Self::ReadDenied { image, message },
            E::CredentialsWithheld { registry, message } => {
                Self::CredentialsWithheld { registry, message }
            }
            E::MultiPlatformUnsupported => Self::Unsupported {
                message: err.to_string(),
            },
            E::Timeout { limit, running } => Self::Timeout {
                secs: limit.as_secs(),
                running,
            },
            err if err.is_retryable() => Self::Unavailable {
                message: err.to_string(),
            },
            E::Session { message } => Self::Unavailable {
                message: format!("buildkit session: {message}"),
            },
            other => Self::Internal {
                context: "talking to buildkit".to_owned(),
                source: Some(Box::new(other)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_is_named_with_its_last_lines() {
        let err = BuildError::BuildFailed {
            message: "exit code: 7".into(),
            step: Some("[2/2] RUN make".into()),
            output: vec!["cc: error".into(), "x".repeat(400)],
        };
        assert_eq!(
            err.to_string(),
            format!(
                "[2/2] RUN make: exit code: 7\nlast output of the step:\n  cc: error\n  {}",
                "x".repeat(OUTPUT_LINE_CHARS)
            )
        );
    }

    #[test]
    fn a_timeout_names_each_running_step_once_at_most_three() {
        let err = |running: &[&str]| {
            BuildError::Timeout {
                secs: 9,
                running: running.iter().map(|s| (*s).to_owned()).collect(),
            }
            .to_string()
        };
        assert_eq!(err(&[]), "build did not finish within build_timeout (9s)");
        assert_eq!(
            err(&["a", "b", "a", "c", "d", "e"]),
            "build did not finish within build_timeout (9s); running: a, b, c, 2 more"
        );
        let long = "y".repeat(200);
        assert!(err(&[&long]).ends_with(&format!("running: {}", "y".repeat(STEP_NAME_CHARS))));
    }

    #[test]
    fn several_platforms_on_a_daemon_that_cannot_export_them_is_422_and_not_retried() {
        let err = BuildError::from(buildkit::BuildkitError::MultiPlatformUnsupported);
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.retry_after(), None);
        assert!(err
            .to_string()
            .starts_with("this daemon cannot export a multi-platform image: "));
    }

    #[test]
    fn a_registry_certificate_problem_is_422_naming_the_registry_and_not_retried() {
        let err = BuildError::from(buildkit::BuildkitError::Registry {
            fault: buildkit::RegistryFault::Certificate,
            registry: Some("reg.example:5000".into()),
            message: "x509: certificate signed by unknown authority".into(),
        });
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.retry_after(), None);
        let text = err.to_string();
        assert!(
            text.starts_with("registry reg.example:5000: certificate problem"),
            "{text}"
        );
        assert!(text.ends_with("x509: certificate signed by unknown authority"));
    }
}
