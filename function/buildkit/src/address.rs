//! Where the daemon is: one address string, the forms `buildctl --addr` / `BUILDKIT_HOST` take,
//! plus the Docker Engine socket.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The Docker Engine's default socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A BuildKit daemon's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `unix:///run/buildkit/buildkitd.sock`: a standalone buildkitd.
    Unix(PathBuf),
    /// `tcp://host:port`: a standalone buildkitd, with or without TLS.
    Tcp {
        /// Host name or IP, as written.
        host: String,
        /// Port.
        port: u16,
    },
    /// `docker://` or `docker:///path/docker.sock`: the BuildKit embedded in a Docker Engine,
    /// reached by upgrading `POST /grpc` on its API socket.
    Docker(PathBuf),
}

/// An address string that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("buildkit address {address:?}: {reason} (expected unix:///path, tcp://host:port or docker://[/path/docker.sock])")]
pub struct AddressError {
    address: String,
    reason: &'static str,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddressError {
            address: s.to_owned(),
            reason,
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| err("no scheme"))?;
        match scheme {
            "unix" => {
                if !rest.starts_with('/') {
                    return Err(err("unix socket path must be absolute"));
                }
                Ok(Self::Unix(PathBuf::from(rest)))
            }
            "docker" => match rest {
                "" => Ok(Self::Docker(PathBuf::from(DEFAULT_DOCKER_SOCKET))),
                path if path.starts_with('/') => Ok(Self::Docker(PathBuf::from(path))),
                _ => Err(err("docker socket path must be absolute")),
            },
            "tcp" => {
                let rest = rest.trim_end_matches('/');
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("missing port"))?;
                let port = port.parse().map_err(|_| err("invalid port"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() {
                    return Err(err("missing host"));
                }
                Ok(Self::Tcp {
                    host: host.to_owned(),
                    port,
                })
            }
            _ => Err(err("unsupported scheme")),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Self::Docker(path) => write!(f, "docker://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases = [
            (
                "unix:///run/buildkit/buildkitd.sock",
                Address::Unix("/run/buildkit/buildkitd.sock".into()),
            ),
            (
                "tcp://127.0.0.1:1234",
                Address::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1234,
                },
            ),
            (
                "tcp://buildkitd:1234/",
                Address::Tcp {
                    host: "buildkitd".into(),
                    port: 1234,
                },
            ),
            (
                "tcp://[::1]:1234",
                Address::Tcp {
                    host: "::1".into(),
                    port: 1234,
                },
            ),
            ("docker://", Address::Docker(DEFAULT_DOCKER_SOCKET.into())),
            (
                "docker:///tmp/d.sock",
                Address::Docker("/tmp/d.sock".into()),
            ),
        ];
        for (text, address) in cases {
            assert_eq!(text.parse::<Address>().as_ref(), Ok(&address), "{text}");
        }
        assert_eq!(
            Address::Tcp {
                host: "::1".into(),
                port: 1
            }
            .to_string(),
            "tcp://[::1]:1"
        );
    }

    #[test]
    fn rejects_with_the_reason() {
        let cases = [
            ("buildkitd:1234", "no scheme"),
            ("unix://relative.sock", "unix socket path must be absolute"),
            ("tcp://host", "missing port"),
            ("tcp://host:http", "invalid port"),
            ("tcp://:1234", "missing host"),
            ("npipe:////./pipe/buildkitd", "unsupported scheme"),
        ];
        for (text, reason) in cases {
            let err = text.parse::<Address>().unwrap_err();
            assert_eq!(err.reason, reason, "{text}");
            assert!(err
                .to_string()
                .starts_with(&format!("buildkit address {text:?}: {reason}")));
        }
    }
}
