//! The Docker registry token protocol, client side: a bearer token for some scopes from a
//! registry's token service (its `realm`), with Basic credentials (`GET`), an identity token (the
//! OAuth `refresh_token` grant, `POST`) or none (anonymous `GET`).

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use crate::dockerconfig::Credentials;

/// Longest a token service may take to answer: the daemon waits 60 s for the whole session call.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a refusing token service's body an error quotes.
const BODY_QUOTED: usize = 200;
/// Who asks, in the OAuth form (`client_id`), as BuildKit's own fetcher names itself.
const CLIENT_ID: &str = "function-builder";

/// What to ask a token service for.
pub(crate) struct TokenRequest<'a> {
    /// The realm the registry's challenge named, e.g. `https://auth.docker.io/token`.
    pub(crate) realm: &'a str,
    /// The challenge's `service`.
    pub(crate) service: &'a str,
    /// `repository:<name>:<actions>` scopes.
    pub(crate) scopes: &'a [String],
    /// The builder's credentials for the registry; `None`: anonymous.
    pub(crate) credentials: Option<&'a Credentials>,
}

/// A token and how long it lasts, as BuildKit's session call answers it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) token: String,
    /// Seconds; 0 when the service did not say.
    pub(crate) expires_in: i64,
    /// Unix seconds; 0 when the service did not say.
    pub(crate) issued_at: i64,
}

/// Why no token was had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The token service answered with an error status.
    #[error("token service {realm} answered {status}: {body}")]
    Refused {
        realm: String,
        status: u16,
        body: String,
    },
    /// It could not be reached, or did not answer in time.
    #[error("token service {realm} unreachable: {message}")]
    Unreachable { realm: String, message: String },
    /// It answered something that is not a token.
    #[error("token service {realm}: {why}")]
    Invalid { realm: String, why: String },
}

/// The token service's answer (distribution's `tokenResponse`, and the OAuth one).
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: i64,
    #[serde(default)]
    issued_at: Option<String>,
}

/// Fetches a token as `req` says.
pub(crate) async fn fetch(req: &TokenRequest<'_>) -> Result<Token, TokenError> {
    let realm = req.realm.to_owned();
    let unreachable = |err: reqwest::Error| TokenError::Unreachable {
        realm: realm.clone(),
        message: crate::error::error_chain(&err),
    };
    let client = client().map_err(|why| TokenError::Unreachable {
        realm: realm.clone(),
        message: why.clone(),
    })?;
    let scope = req.scopes.join(" ");
    let request = match req.credentials {
        // An identity token is an OAuth refresh token.
        Some(c) if c.username.is_empty() && !c.secret.is_empty() => client.post(req.realm).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", c.secret.as_str()),
            ("service", req.service),
            ("scope", &scope),
            ("client_id", CLIENT_ID),
        ]),
        credentials => {
            let mut query: Vec<(&str, &str)> = vec![("service", req.service)];
            query.extend(req.scopes.iter().map(|s| ("scope", s.as_str())));
            let get = client.get(req.realm).query(&query);
            match credentials {
                Some(c) if !c.is_anonymous() => get
                    .query(&[("account", c.username.as_str())])
                    .basic_auth(&c.username, Some(&c.secret)),
                _ => get,
            }
        }
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(TokenError::Refused {
            realm,
            status: status.as_u16(),
            body: text.trim().chars().take(BODY_QUOTED).collect(),
        });
    }
    parse(&body).map_err(|why| TokenError::Invalid { realm, why })
}

/// The token in a service's JSON answer.
fn parse(body: &[u8]) -> Result<Token, String> {
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| "the answer is not token JSON".to_owned())?;
    let token = if answer.token.is_empty() {
        answer.access_token
    } else {
        answer.token
    };
    if token.is_empty() {
        return Err("the answer holds no token".to_owned());
    }
    let issued_at = answer
        .issued_at
        .and_then(|at| humantime::parse_rfc3339_weak(&at).ok())
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0));
    Ok(Token {
        token,
        expires_in: answer.expires_in.max(0),
        issued_at,
    })
}

/// One HTTP client for every token fetch: the system's trust roots, no redirects (credentials
/// go only where the registry's challenge said), no proxy from the environment.
fn client() -> Result<&'static reqwest::Client, &'static String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system trust roots found: https token services will fail");
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(TOKEN_TIMEOUT)
                .build()
                .map_err(|e| format!("http client: {e}"))
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_give_their_token_and_times() {
        let token = parse(br#"{"token":"t1","expires_in":300,"issued_at":"2026-12-06T09:00:00Z"}"#)
            .unwrap();
        assert_eq!(
            token,
            Token {
                token: "t1".into(),
                expires_in: 300,
                issued_at: 1_796_547_600,
            }
        );
        let oauth = parse(br#"{"access_token":"t2"}"#).unwrap();
        assert_eq!((oauth.token.as_str(), oauth.expires_in), ("t2", 0));
        assert_eq!(
            parse(br#"{"expires_in":3}"#).unwrap_err(),
            "the answer holds no token"
        );
        assert_eq!(
            parse(b"<html>").unwrap_err(),
            "the answer is not token JSON"
        );
    }
}
