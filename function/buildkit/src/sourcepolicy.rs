//! The source policy sent with a build (BuildKit v0.11+ applies it to every source, after `ARG`
//! expansion, in every stage; older daemons ignore it): remote sources outside the allowed
//! prefixes, and images outside the read policy on every registry the builder holds
//! credentials for, are denied before they are fetched.

use crate::access::Access;
use crate::proto::control::{SourcePolicy, SourcePolicyRule, SourcePolicySelector};

/// Which remote sources (`ADD <url>`, git) the daemon may fetch for a build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RemoteSources {
    /// Whatever the Dockerfile names: no source policy is sent.
    #[default]
    Any,
    /// Only the sources whose identifier starts with one of these (`https://host/path/`,
    /// `git://host/…`): sent as a source policy, which BuildKit v0.11+ applies to every source
    /// of the build and older daemons ignore, so callers check [`crate::Client::version`] first.
    Only(Vec<String>),
}

/// Source policy actions and match types, as BuildKit numbers them.
const ALLOW: i32 = 0;
const DENY: i32 = 1;
const REGEX: i32 = 2;
/// BuildKit's remote sources, HTTP(S) files and git repositories, as an RE2 pattern.
const REMOTE_SCHEMES: &str = "(?i)^(?:https?|git)://";
/// Dot segments and encoded separators, which a server may resolve out of an allowed prefix
/// (`/allowed/../secret`, `%2e%2e`, `%2f`), as an RE2 pattern.
pub(crate) const CLIMBING: &str = r"(?i)/(?:\.|%2e){1,2}(?:[/?#\s]|$)|%2f|%5c|\\";
/// Docker Hub's hosts as an image reference may name them (the frontend folds only
/// `index.docker.io` into `docker.io`), as an RE2 alternation.
const DOCKER_HUB: &str = r"(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)";

/// The policy for a build: `None` when it restricts nothing. The last matching rule decides,
/// so each group denies broadly first and then allows.
pub(crate) fn build(remote: &RemoteSources, access: &Access) -> Option<SourcePolicy> {
    let mut rules = Vec::new();
    if let RemoteSources::Only(prefixes) = remote {
        // Unanchored at the end: a wildcard `http://*` is `^http://(.*)$`, which a newline in
        // the identifier (a build arg's) would slip past.
        rules.push(rule(DENY, REMOTE_SCHEMES.to_owned()));
        rules.extend(
            prefixes
                .iter()
                .map(|prefix| rule(ALLOW, format!("^{}", regex_literal(prefix)))),
        );
        // After the allowed prefixes: a path that climbs out of them.
        rules.push(rule(DENY, CLIMBING.to_owned()));
    }
    let guarded: Vec<String> = access
        .guarded()
        .map(|registry| match registry.as_str() {
            "docker.io" => DOCKER_HUB.to_owned(),
            other => regex_literal(other),
        })
        .collect();
    if !guarded.is_empty() {
        // Every image on a registry the builder holds credentials for, in any case…
        rules.extend(
            guarded
                .iter()
                .map(|host| rule(DENY, format!("(?i)^docker-image://{host}/"))),
        );
        // …but those the read policy allows, by whole path components (a tag, a digest or a
        // deeper path may follow).
        rules.extend(access.policy().prefixes().map(|prefix| {
            let path = prefix.path();
            let registry = regex_literal(prefix.registry());
            if path.is_empty() {
                rule(ALLOW, format!("^docker-image://{registry}/"))
            } else {
                let path = regex_literal(&path);
                rule(
                    ALLOW,
                    format!("^docker-image://{registry}/{path}(?:[/:@]|$)"),
                )
            }
        }));
    }
    (!rules.is_empty()).then_some(SourcePolicy { version: 1, rules })
}

fn rule(action: i32, identifier: String) -> SourcePolicyRule {
    SourcePolicyRule {
        action,
        selector: Some(SourcePolicySelector {
            identifier,
            match_type: REGEX,
        }),
    }
}

/// `text` as an RE2 pattern that matches it literally: every ASCII punctuation escaped.
fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
