//! Why a build failed, in terms of what retrying can do: read first from the structured details
//! BuildKit attaches to a failed Solve (its gRPC status details), then, for what those leave
//! open, from the registry's words.
//!
//! BuildKit's `grpc-status-details-bin` is a `google.rpc.Status` whose details are its typed
//! errors, JSON-encoded, under type URLs such as `github.com/moby/buildkit/errdefs.Solve+json`
//! (the op of the step that failed) and `github.com/moby/buildkit/gatewayapi.ExitMessage+json`
//! (a process's exit code, v0.10+). A step's failure carries them; an export or push failure,
//! and a frontend's failure to resolve a base image, carry none.

use prost::Message;

use crate::error::RegistryFault;
use crate::steps::FailedStep;
use crate::{Address, BuildkitError};

/// The failed step's op, from BuildKit's `errdefs.Solve` detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailedOp {
    /// `RUN`.
    Exec,
    /// Pulling an image (`FROM`, `COPY --from=image`).
    Image,
    /// Anything else: `COPY`, `ADD`, the build context.
    Other,
}

/// What the details of a failed Solve say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Details {
    /// A step's process exited with this code.
    pub(crate) exit_code: Option<u32>,
    /// The op of the step that failed, when a step did.
    pub(crate) op: Option<FailedOp>,
}

/// `google.rpc.Status`, as gRPC carries it in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// BuildKit's own fixed words for failures the Dockerfile causes: a process that exited non-zero
/// (v0.8, Docker 20.10's, and v0.10+), a parse error, a `COPY` source that is not there. Text
/// after them may be the Dockerfile's; seeing them first keeps that text from reading as a
/// registry's.
const STEP_WORDING: &[&str] = &[
    "executor failed running [",
    "did not complete successfully: exit code",
    "dockerfile parse error",
    "failed to compute cache key",
    "failed to calculate checksum",
];

/// How BuildKit's source policy words a refusal: `source "…" denied by policy`.
const SOURCE_DENIED: &str = "denied by policy";
/// How a Docker Engine's `moby` exporter (classic image store) refuses several platforms.
const MULTI_PLATFORM_REFUSED: &str = "exporting multiple references to image store";
const SOLVE: &str = "github.com/moby/buildkit/errdefs.Solve+json";
const EXIT: &str = "github.com/moby/buildkit/gatewayapi.ExitMessage+json";

impl Details {
    /// Reads the details of a status; what it does not understand, it leaves out.
    pub(crate) fn of(status: &tonic::Status) -> Self {
        let mut out = Self::default();
        let Ok(rpc) = RpcStatus::decode(status.details()) else {
            return out;
        };
        for detail in rpc.details {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&detail.value) else {
                continue;
            };
            match detail.type_url.as_str() {
                EXIT => {
                    out.exit_code = value
                        .get("Code")
                        .or_else(|| value.get("code"))
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|c| u32::try_from(c).ok())
                        .or(Some(0));
                }
                SOLVE => out.op = out.op.or(Some(failed_op(&value))),
                _ => {}
            }
        }
        out
    }

    /// Whether a step of the build itself failed (a `RUN`, a `COPY`), as opposed to pulling,
    /// exporting or pushing an image: its message may hold the Dockerfile's own words, so it is
    /// never read for a registry's.
    ///
    /// Docker 20.10 sends no details at all; there such a failure is known by BuildKit's own
    /// fixed words for it ([`STEP_WORDING`]).
    pub(crate) fn step_failed(&self, message: &str) -> bool {
        self.exit_code.is_some()
            || matches!(self.op, Some(FailedOp::Exec | FailedOp::Other))
            || STEP_WORDING.iter().any(|w| message.contains(w))
    }
}

/// The op kind of an `errdefs.Solve` detail: Go's JSON of the op's `oneof` is
/// `{"op":{"Op":{"Exec":{…}}}}` (or `Source` with its `identifier`).
fn failed_op(solve: &serde_json::Value) -> FailedOp {
    let Some(op) = solve
        .get("op")
        .and_then(|op| op.get("Op").or_else(|| op.get("op")))
    else {
        return FailedOp::Other;
    };
    let has = |name: &str| op.get(name).is_some() || op.get(name.to_lowercase()).is_some();
    if has("Exec") {
        return FailedOp::Exec;
    }
    let identifier = op
        .get("Source")
        .or_else(|| op.get("source"))
        .and_then(|s| s.get("identifier"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if identifier.starts_with("docker-image://") {
        FailedOp::Image
    } else {
        FailedOp::Other
    }
}

/// Certificate failures, as Go's crypto/x509 and crypto/tls word them. Checked before
/// [`UNREACHABLE`], which holds the TLS transport failures (a handshake timeout).
const CERTIFICATE: &[&str] = &[
    "x509: ",
    "tls: failed to verify certificate",
    "certificate signed by unknown authority",
    "certificate is not valid",
    "certificate has expired",
];

/// Transport failures, as Go's net, net/http and crypto/tls word them.
const UNREACHABLE: &[&str] = &[
    "connection refused",
    "connection reset",
    "no such host",
    "server misbehaving",
    "network is unreachable",
    "no route to host",
    "i/o timeout",
    "timeout awaiting",
    "client.timeout exceeded",
    "deadline exceeded",
    "tls handshake",
    "tls: ",
    "broken pipe",
    "unexpected eof",
];

/// A registry's refusals, as the distribution spec's error codes and HTTP statuses word them.
const REFUSED: &[&str] = &[
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "denied",
    "forbidden",
    "insufficient_scope",
    "name unknown",
    "repository name not known",
    "name invalid",
    "invalid reference format",
];

/// HTTP statuses that say "later": 5xx and 429, in the forms Docker and containerd print them.
const OVERLOADED: &[&str] = &[
    "toomanyrequests",
    "too many requests",
    "429 ",
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "status: 5",
    "status 5",
];

/// The registry fault a message describes, if it describes one: certificate failures first, then
/// transport failures (an auth server that cannot be reached is unreachable, not a refusal), then
/// refusals, then 5xx and 429.
pub(crate) fn registry_fault(message: &str) -> Option<RegistryFault> {
    let lower = message.to_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|needle| lower.contains(needle));
    if any(CERTIFICATE) {
        Some(RegistryFault::Certificate)
    } else if any(UNREACHABLE) {
        Some(RegistryFault::Unreachable)
    } else if any(REFUSED) {
        Some(RegistryFault::Refused)
    } else if any(OVERLOADED) {
        Some(RegistryFault::Unreachable)
    } else {
        None
    }
}

/// What a failed Solve on the daemon at `address` means: the daemon gone, a registry's fault,
/// or the build's own failure (`failed`, the step the status stream saw fail).
pub(crate) fn solve_error(
    address: &Address,
    status: &tonic::Status,
    failed: Option<FailedStep>,
) -> BuildkitError {
    let unavailable = |message: String| BuildkitError::Unavailable {
        address: address.to_string(),
        message,
    };
    // A status the transport made, whatever its code (the daemon gone mid-build gives `Unknown:
    // transport error`), has the transport error as its source: the daemon did not answer.
    if let Some(source) = std::error::Error::source(status) {
        // tonic's message is often the source's own text: say it once.
        let chain = crate::error::error_chain(source);
        let message = if chain.starts_with(status.message()) {
            chain
        } else {
            format!("{}: {chain}", status.message())
        };
        return unavailable(message);
    }
    // BuildKit's sourcepolicy.ErrSourceDenied, before any registry wording the source may hold.
    if status.message().contains(SOURCE_DENIED) {
        let message = status.message().to_owned();
        return match denied_image(&message) {
            Some(image) => BuildkitError::ImageDenied { image, message },
            None => BuildkitError::SourceDenied { message },
        };
    }
    let details = Details::of(status);
    if !details.step_failed(status.message()) {
        if status.message().contains(MULTI_PLATFORM_REFUSED) {
            return BuildkitError::MultiPlatformUnsupported;
        }
        if let Some(fault) = registry_fault(status.message()) {
            return BuildkitError::Registry {
                fault,
                registry: registry_named_in(status.message()),
                message: status.message().to_owned(),
            };
        }
    }
    if status.code() == tonic::Code::Unavailable {
        return unavailable(status.message().to_owned());
    }
    let (step, output) = failed.map_or((None, Vec::new()), |f| (Some(f.name), f.output));
    BuildkitError::Build {
        message: status.message().to_owned(),
        step,
        output,
    }
}

/// The image a source-policy refusal names (`source "docker-image://reg/a:1" denied by
/// policy`), as `reg/a:1`.
fn denied_image(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("docker-image://")?;
    let image: String = rest
        .chars()
        .take_while(|c| !matches!(c, '"' | ' ' | '\n'))
        .collect();
    Some(image)
}

/// The registry host a Go HTTP error names in its URL (`Head "https://reg:5000/v2/…": …`).
pub(crate) fn registry_named_in(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("://")?;
    let host = rest.split(['/', '"', ' ']).next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with(details: &[(&str, &str)]) -> tonic::Status {
        let rpc = RpcStatus {
            code: 2,
            message: "x".to_owned(),
            details: details
                .iter()
                .map(|(url, json)| prost_types::Any {
                    type_url: (*url).to_owned(),
                    value: json.as_bytes().to_vec(),
                })
                .collect(),
        };
        tonic::Status::with_details(
            tonic::Code::Unknown,
            "x",
            bytes::Bytes::from(rpc.encode_to_vec()),
        )
    }

    #[test]
    fn a_run_step_failure_is_a_step_failure() {
        let status = status_with(&[
            (
                "github.com/moby/buildkit/stack.Stack+json",
                r#"{"frames":[]}"#,
            ),
            (
                SOLVE,
                r#"{"inputIDs":["a"],"op":{"Op":{"Exec":{"meta":{"args":["sh"]}}}}}"#,
            ),
            (EXIT, r#"{"Code":7}"#),
        ]);
        let details = Details::of(&status);
        assert_eq!(details.exit_code, Some(7));
        assert_eq!(details.op, Some(FailedOp::Exec));
        assert!(details.step_failed("x"));
    }

    #[test]
    fn an_image_pull_failure_is_not_a_step_failure() {
        let status = status_with(&[(
            SOLVE,
            r#"{"op":{"Op":{"Source":{"identifier":"docker-image://127.0.0.1:1/x:1"}}}}"#,
        )]);
        let details = Details::of(&status);
        assert_eq!(details.op, Some(FailedOp::Image));
        assert!(!details.step_failed("failed to do request: connection refused"));
    }

    #[test]
    fn no_details_and_garbage_details_say_nothing() {
        assert_eq!(
            Details::of(&tonic::Status::unknown("x")),
            Details::default()
        );
        let status =
            tonic::Status::with_details(tonic::Code::Unknown, "x", bytes::Bytes::from("\u{ff}"));
        assert_eq!(Details::of(&status), Details::default());
    }

    #[test]
    fn docker_20_10s_wording_of_a_process_exit_is_a_step_failure() {
        let none = Details::default();
        assert!(none.step_failed(
            "executor failed running [/bin/sh -c echo 'connection refused' && exit 3]: exit code: 3"
        ));
        assert!(none.step_failed(
            "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"
        ));
        assert!(
            !none.step_failed("failed to do request: Head \"http://r/v2/\": connection refused")
        );
    }

    #[test]
    fn registry_messages_are_classified() {
        let cases = [
            ("failed to do request: Head \"http://127.0.0.1:1/v2/x/blobs/sha256:a\": dial tcp 127.0.0.1:1: connect: connection refused", Some(RegistryFault::Unreachable)),
            ("Get \"https://reg.example/v2/\": dial tcp: lookup reg.example on 10.0.0.10:53: no such host", Some(RegistryFault::Unreachable)),
            ("Get \"https://r/v2/\": net/http: TLS handshake timeout", Some(RegistryFault::Unreachable)),
            ("failed to do request: Head \"https://reg.example:5000/v2/x/manifests/1\": tls: failed to verify certificate: x509: certificate signed by unknown authority", Some(RegistryFault::Certificate)),
            ("Get \"https://r/v2/\": x509: certificate is valid for a.example, not r", Some(RegistryFault::Certificate)),
            ("received unexpected HTTP status: 503 Service Unavailable", Some(RegistryFault::Unreachable)),
            ("toomanyrequests: You have reached your pull rate limit", Some(RegistryFault::Unreachable)),
            ("unexpected status: 401 Unauthorized", Some(RegistryFault::Refused)),
            ("no basic auth credentials", Some(RegistryFault::Refused)),
            ("denied: requested access to the resource is denied", Some(RegistryFault::Refused)),
            ("failed to authorize: failed to fetch oauth token: Post \"https://auth/token\": dial tcp 1.2.3.4:443: i/o timeout", Some(RegistryFault::Unreachable)),
            ("process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3", None),
        ];
        for (message, want) in cases {
            assert_eq!(registry_fault(message), want, "{message}");
        }
    }

    #[test]
    fn the_classic_image_stores_refusal_of_several_platforms_is_named_as_such() {
        let docker: Address = "docker://".parse().unwrap();
        // Docker 20.10's words, after every platform was built.
        let status = tonic::Status::unknown(
            "failed to solve: exporting multiple references to image store is currently unsupported",
        );
        assert!(matches!(
            solve_error(&docker, &status, None),
            BuildkitError::MultiPlatformUnsupported
        ));
        // A step's own output saying the same stays the step's failure.
        let status = tonic::Status::unknown(
            "executor failed running [/bin/sh -c echo 'exporting multiple references to image store' && exit 1]: exit code: 1",
        );
        assert!(matches!(
            solve_error(&docker, &status, None),
            BuildkitError::Build { .. }
        ));
    }

    #[test]
    fn a_registry_is_named_by_the_url_in_its_error() {
        assert_eq!(
            registry_named_in(
                "failed to do request: Head \"https://Reg.Example:5000/v2/x\": x509: …"
            )
            .as_deref(),
            Some("reg.example:5000")
        );
        assert_eq!(
            registry_named_in("x509: certificate signed by unknown authority"),
            None
        );
    }
}
