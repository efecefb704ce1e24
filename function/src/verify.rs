//! Intake: the body is streamed to a temp file while its HMAC-SHA256 is computed, and the
//! `X-Build-Signature` is checked, in constant time, before anything is parsed.

use std::path::Path;

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use openfaas_runtime::Body;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

type HmacSha256 = Hmac<Sha256>;

/// Bytes gathered before each write to the spool file.
const SPOOL_BUFFER: usize = 1 << 20;

/// Why a body was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    /// No `X-Build-Signature` header.
    #[error("missing X-Build-Signature header")]
    MissingSignature,
    /// The header is not `sha256=<hex>`.
    #[error("X-Build-Signature must be sha256=<hex digest>")]
    MalformedSignature,
    /// The signature is of another body or key.
    #[error("signature does not match the payload secret")]
    BadSignature,
    /// The body is larger than the builder accepts.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The body could not be read from the client.
    #[error("reading the request body: {message}")]
    Body {
        /// Why.
        message: String,
    },
    /// Our spool file could not be written: not the caller's fault.
    #[error("{message}")]
    Spool {
        /// What failed.
        message: String,
    },
}

/// A request body on disk whose signature was checked (or checking was disabled).
#[derive(Debug)]
pub(crate) struct Verified {
    /// Bytes received.
    pub(crate) len: u64,
}

/// Streams `body` into `dest`, refusing more than `limit` bytes, and checks `signature` against
/// its HMAC-SHA256 under `secret` (`None`: checking disabled).
///
/// # Errors
/// [`VerifyError`]: too large, unreadable, or a signature that does not hold.
pub(crate) async fn verify(
    body: Body,
    dest: &Path,
    limit: u64,
    signature: Option<&[u8]>,
    secret: Option<&[u8]>,
) -> Result<Verified, VerifyError> {
    // Reject a bad header before reading a byte of the body.
    let expected = match secret {
        Some(_) => Some(parse_signature(signature)?),
        None => None,
    };
    let mut mac = match secret {
        Some(key) => Some(
            HmacSha256::new_from_slice(key).map_err(|e| VerifyError::Spool {
                message: e.to_string(),
            })?,
        ),
        None => None,
    };
    let file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| VerifyError::Spool {
            message: format!("creating the spool file: {e}"),
        })?;
    // Each write of a tokio File is a trip to the blocking pool; body chunks are ~16 KiB.
    let mut file = tokio::io::BufWriter::with_capacity(SPOOL_BUFFER, file);
    let mut len = 0u64;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| VerifyError::Body {
            message: e.to_string(),
        })?;
        len += chunk.len() as u64;
        if len > limit {
            return Err(VerifyError::TooLarge { limit });
        }
        if let Some(mac) = mac.as_mut() {
            mac.update(&chunk);
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| VerifyError::Spool {
                message: format!("writing the spool file: {e}"),
            })?;
    }
    file.flush().await.map_err(|e| VerifyError::Spool {
        message: e.to_string(),
    })?;
    if let (Some(mac), Some(expected)) = (mac, expected) {
        mac.verify_slice(&expected)
            .map_err(|_| VerifyError::BadSignature)?;
    }
    Ok(Verified { len })
}

/// `sha256=<hex>` → the digest bytes. Any header bytes are accepted without panicking.
fn parse_signature(header: Option<&[u8]>) -> Result<Vec<u8>, VerifyError> {
    let header = header.ok_or(VerifyError::MissingSignature)?;
    let hex_digest = header
        .strip_prefix(b"sha256=")
        .ok_or(VerifyError::MalformedSignature)?;
    let digest =
        hex::decode(hex_digest.trim_ascii()).map_err(|_| VerifyError::MalformedSignature)?;
    if digest.len() != 32 {
        return Err(VerifyError::MalformedSignature);
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &[u8], body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    async fn check(
        body: &'static [u8],
        signature: Option<&str>,
        limit: u64,
    ) -> Result<u64, String> {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("body");
        verify(
            Body::from(body),
            &dest,
            limit,
            signature.map(str::as_bytes),
            Some(b"secret"),
        )
        .await
        .map(|v| v.len)
        .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn accepts_the_right_signature_and_nothing_else() {
        let good = sign(b"secret", b"tar bytes");
        assert_eq!(check(b"tar bytes", Some(&good), 100).await, Ok(9));
        let other_body = sign(b"secret", b"other bytes");
        let other_key = sign(b"other", b"tar bytes");
        for (signature, error) in [
            (None, "missing X-Build-Signature header"),
            (
                Some("sha1=abcd"),
                "X-Build-Signature must be sha256=<hex digest>",
            ),
            (
                Some("sha256=zz"),
                "X-Build-Signature must be sha256=<hex digest>",
            ),
            (
                Some("sha256=abcd"),
                "X-Build-Signature must be sha256=<hex digest>",
            ),
            (
                Some(other_body.as_str()),
                "signature does not match the payload secret",
            ),
            (
                Some(other_key.as_str()),
                "signature does not match the payload secret",
            ),
        ] {
            assert_eq!(
                check(b"tar bytes", signature, 100).await,
                Err(error.to_owned()),
                "{signature:?}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_limit() {
        let good = sign(b"secret", b"tar bytes");
        assert_eq!(
            check(b"tar bytes", Some(&good), 4).await,
            Err("request body larger than 4 bytes".to_owned())
        );
    }

    #[test]
    fn signature_parsing_never_panics() {
        for header in [
            &b""[..],
            b"sha256=",
            b"sha256=\xff\xfe",
            b"\x00\x01",
            "sha256=é".as_bytes(),
            &[b'a'; 1000],
        ] {
            assert!(parse_signature(Some(header)).is_err());
        }
    }
}
