//! Remote sources (`ADD <url>`, git), fetched by the daemon itself outside every `RUN` sandbox:
//! only under the operator's `allowed_remote_sources`. What the Dockerfile names literally is
//! checked here, on every daemon; what only the daemon can resolve (a variable) is left to its
//! source policy, or refused where it has none.

use buildkit::RemoteSources;

use super::PolicyError;
use crate::dockerfile::{remote_sources, RemoteSource, MAX_CHECKED};

/// The remote sources of `dockerfile` that only a source policy can check, after refusing
/// those it names literally outside `allowed`.
///
/// # Errors
/// [`PolicyError::RemoteSource`] for the first literal source outside `allowed`.
pub(super) fn check(
    allowed: &RemoteSources,
    dockerfile: &[u8],
) -> Result<Vec<RemoteSource>, PolicyError> {
    let RemoteSources::Only(prefixes) = allowed else {
        return Ok(Vec::new());
    };
    if dockerfile.len() > MAX_CHECKED {
        return Ok(vec![RemoteSource {
            line: 0,
            source: format!("(a Dockerfile over {MAX_CHECKED} bytes is not read whole)"),
            variable: true,
        }]);
    }
    let mut unproven = Vec::new();
    for found in remote_sources(&String::from_utf8_lossy(dockerfile)) {
        if found.variable {
            unproven.push(found);
        } else if climbs(&found.source)
            || !prefixes
                .iter()
                .any(|p| found.source.starts_with(p.as_str()))
        {
            return Err(PolicyError::RemoteSource {
                line: found.line,
                named: found.source,
                allowed: list(prefixes),
            });
        }
    }
    Ok(unproven)
}

/// Whether `url`'s path has a dot segment or an encoded separator, which a server may resolve
/// out of an allowed prefix (the source policy's `CLIMBING` rule, for literal URLs).
pub(crate) fn climbs(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || url.contains('\\') {
        return true;
    }
    let path = lower
        .split_once("://")
        .map_or(lower.as_str(), |(_, rest)| rest);
    path.split(['/', '?', '#'])
        .skip(1)
        .map(|segment| segment.trim().replace("%2e", "."))
        .any(|segment| segment == "." || segment == "..")
}

/// The refusal of a source only a source policy could check, on a daemon without one.
pub(crate) fn unchecked(source: &RemoteSource) -> PolicyError {
    PolicyError::UncheckedSource {
        line: source.line,
        named: source.source.clone(),
    }
}

/// The setting's value, for messages.
pub(super) fn list(prefixes: &[String]) -> String {
    if prefixes.is_empty() {
        "empty: none".to_owned()
    } else {
        prefixes.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_sources_outside_the_prefixes_are_refused_and_variables_left_to_the_daemon() {
        let only = RemoteSources::Only(vec!["https://files.example/ok/".into()]);
        let df = b"FROM b\nADD https://files.example/ok/a /a\nARG U\nADD $U /u\n";
        let unproven = check(&only, df).unwrap();
        assert_eq!(unproven.len(), 1);
        assert_eq!(unproven[0].source, "$U");
        assert_eq!(
            check(&only, b"FROM b\nadd https://files.example/okx /a\n")
                .unwrap_err()
                .to_string(),
            "ADD https://files.example/okx (Dockerfile line 2): remote sources are fetched only under allowed_remote_sources (https://files.example/ok/)"
        );
        assert!(check(&RemoteSources::Any, b"ADD http://x/y /z")
            .unwrap()
            .is_empty());
        for climbing in [
            "https://files.example/ok/../secret",
            "https://files.example/ok/%2E%2E/secret",
            "https://files.example/ok/a%2fb",
            "https://files.example/ok/.",
        ] {
            let df = format!("ADD {climbing} /x\n");
            assert!(check(&only, df.as_bytes()).is_err(), "{climbing}");
        }
        assert!(check(&only, b"ADD https://files.example/ok/a..b/c.d /x\n").is_ok());
        let big = vec![b'#'; MAX_CHECKED + 1];
        assert_eq!(check(&only, &big).unwrap().len(), 1);
    }
}
