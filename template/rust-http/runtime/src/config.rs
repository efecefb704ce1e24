//! Server settings from the environment variables of-watchdog itself reads.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Where and how long the server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Listen address; from the host and port of `upstream_url`, default `127.0.0.1:3000`.
    pub addr: SocketAddr,
    /// Longest time from a request's arrival until its body has been read (`read_timeout`).
    /// `None` disables it.
    pub read_timeout: Option<Duration>,
    /// Longest time from a request's arrival until its response has been written (`write_timeout`);
    /// also the longest drain after SIGTERM. `None` disables both.
    pub write_timeout: Option<Duration>,
    /// Longest time a connection may take to send a request's header, and stay idle between
    /// requests (`read_header_timeout`, as Go's `ReadHeaderTimeout`), at most `read_timeout`:
    /// a client that opens connections and never finishes a header cannot hold them. `None`
    /// (`read_header_timeout=0`): as long as `read_timeout`.
    pub header_timeout: Option<Duration>,
}

/// of-watchdog's default for both timeouts.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A header is a few hundred bytes: a client that needs longer is stalling.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR,
            read_timeout: Some(DEFAULT_TIMEOUT),
            write_timeout: Some(DEFAULT_TIMEOUT),
            header_timeout: Some(DEFAULT_HEADER_TIMEOUT),
        }
    }
}

/// A setting that could not be understood; names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    var: &'static str,
    value: String,
    expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: invalid value {:?}, expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `upstream_url`, `read_timeout` and `write_timeout` as of-watchdog does, and
    /// `read_header_timeout`: timeouts are whole seconds or Go durations (`10m1s`), `0` disables
    /// one.
    ///
    /// # Errors
    /// When a variable is set but cannot be parsed.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let addr = match get("upstream_url") {
            Some(url) => parse_upstream(&url).ok_or(ConfigError {
                var: "upstream_url",
                value: url,
                expected: "http://<ip or localhost>:<port>",
            })?,
            None => defaults.addr,
        };
        let timeout = |var: &'static str, default: Option<Duration>| match get(var) {
            Some(value) => parse_timeout(&value).ok_or(ConfigError {
                var,
                value,
                expected: "seconds or a Go duration such as 30s or 10m1s",
            }),
            None => Ok(default),
        };
        Ok(Self {
            addr,
            read_timeout: timeout("read_timeout", defaults.read_timeout)?,
            write_timeout: timeout("write_timeout", defaults.write_timeout)?,
            header_timeout: timeout("read_header_timeout", defaults.header_timeout)?,
        })
    }

    /// The header timeout in effect: `header_timeout`, but never longer than `read_timeout`.
    pub fn effective_header_timeout(&self) -> Option<Duration> {
        match (self.header_timeout, self.read_timeout) {
            (Some(header), Some(read)) => Some(header.min(read)),
            (header, read) => header.or(read),
        }
    }
}

/// `http://127.0.0.1:3000` → 127.0.0.1:3000. of-watchdog uses only the host of the URL.
fn parse_upstream(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => host.parse().ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

/// A duration as of-watchdog writes them: whole seconds (`30`) or a Go duration (`10m1s`).
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => parse_go_duration(value),
    }
}

/// `0` → disabled; otherwise [`parse_duration`].
fn parse_timeout(value: &str) -> Option<Option<Duration>> {
    let duration = parse_duration(value)?;
    Some((!duration.is_zero()).then_some(duration))
}

/// Go's `time.ParseDuration` for non-negative values: a sequence of decimal numbers, each with a
/// unit among ns, us (µs), ms, s, m, h, e.g. `1h30m`, `1.5s`, `300ms`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += number * scale;
        rest = tail;
    }
    (nanos.is_finite() && nanos < u64::MAX as f64)
        .then(|| Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            ("30s", 30_000),
            ("10m1s", 601_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("300ms", 300),
            ("2m0.5s", 120_500),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_go_duration(text),
                Some(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in ["", "s", "10", "10x", "-1s", "1..2s", "m10"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn timeouts_take_seconds_durations_and_zero() {
        assert_eq!(parse_timeout("45"), Some(Some(Duration::from_secs(45))));
        assert_eq!(parse_timeout("10m1s"), Some(Some(Duration::from_secs(601))));
        assert_eq!(parse_timeout("0"), Some(None));
        assert_eq!(parse_timeout("0s"), Some(None));
        assert_eq!(parse_timeout("soon"), None);
    }

    #[test]
    fn the_header_timeout_is_never_longer_than_read_timeout() {
        let with = |header: Option<u64>, read: Option<u64>| {
            Config {
                header_timeout: header.map(Duration::from_secs),
                read_timeout: read.map(Duration::from_secs),
                ..Config::default()
            }
            .effective_header_timeout()
        };
        assert_eq!(with(Some(10), Some(600)), Some(Duration::from_secs(10)));
        assert_eq!(with(Some(10), Some(2)), Some(Duration::from_secs(2)));
        assert_eq!(with(None, Some(2)), Some(Duration::from_secs(2)));
        assert_eq!(with(Some(10), None), Some(Duration::from_secs(10)));
        assert_eq!(with(None, None), None);
    }

    #[test]
    fn upstream_url_gives_the_listen_address() {
        assert_eq!(parse_upstream("http://127.0.0.1:3000"), Some(DEFAULT_ADDR));
        assert_eq!(
            parse_upstream("http://localhost:8082/"),
            Some(([127, 0, 0, 1], 8082).into())
        );
        assert_eq!(
            parse_upstream("http://[::1]:9000"),
            Some("[::1]:9000".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("127.0.0.1:3001"),
            Some(([127, 0, 0, 1], 3001).into())
        );
        assert_eq!(parse_upstream("http://example.com:80"), None);
        assert_eq!(parse_upstream("http://127.0.0.1"), None);
    }

    #[test]
    fn from_env_names_the_bad_variable() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Config::from_lookup(env(&[])), Ok(Config::default()));
        let config = Config::from_lookup(env(&[
            ("upstream_url", "http://127.0.0.1:4000"),
            ("read_timeout", "10m1s"),
            ("write_timeout", "0"),
        ]))
        .unwrap();
        assert_eq!(config.addr, ([127, 0, 0, 1], 4000).into());
        assert_eq!(config.read_timeout, Some(Duration::from_secs(601)));
        assert_eq!(config.write_timeout, None);
        assert_eq!(config.header_timeout, Some(DEFAULT_HEADER_TIMEOUT));
        let err = Config::from_lookup(env(&[("write_timeout", "soon")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "write_timeout: invalid value \"soon\", expected seconds or a Go duration such as 30s or 10m1s"
        );
    }
}
