//! Intake: the body's HMAC-SHA256 is computed as it streams in, and the `X-Build-Signature` is
//! checked, in constant time, before anything is parsed. A body up to [`SPOOL_BUFFER`] stays in
//! memory; a larger one is spooled to a file opened only then, so a small request with a bad
//! signature never touches the disk.

use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use openfaas_runtime::{Body, DeadlineExceeded};
use sha2::{Digest, Sha256};
use std::io::Write;

use bytes::Bytes;

type HmacSha256 = Hmac<Sha256>;

/// Bytes held in memory: the whole of a smaller body, or what is gathered before each write to
/// the spool file (one batch is gathered while the one before it is written: two at most).
pub(crate) const SPOOL_BUFFER: usize = 1 << 20;

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
    /// The client did not send the whole body within the server's deadline.
    #[error("request body not received within {setting}")]
    ReadTimeout {
        /// The setting whose deadline passed (`read_timeout`).
        setting: &'static str,
    },
    /// The body could not be read from the client.
    #[error("reading the request body: {message}")]
    Body {
        /// Why.
        message: String,
    },
    /// Our spool file could not be written: not the caller's fault.
    #[error("{what} the spool file: {source}")]
    Spool {
        /// `creating` or `writing`.
        what: &'static str,
        source: std::io::Error,
    },
    /// The payload secret is no HMAC key (HMAC takes keys of any length: not seen in practice).
    #[error("the payload secret is no HMAC key: {source}")]
    Key { source: hmac::digest::InvalidLength },
}

/// A request body whose signature was checked (or checking was disabled).
#[derive(Debug)]
pub(crate) struct Verified {
    /// Bytes received.
    pub(crate) len: u64,
    /// The whole body, when it fitted in memory; `None` when it went to the spill file.
    pub(crate) memory: Option<Vec<u8>>,
    /// SHA-256 of the body, as received: what the image's annotation names.
    pub(crate) sha256: [u8; 32],
}

/// Where a body goes while it streams in.
enum Sink {
    Memory(Vec<u8>),
    File(Spooler),
}

/// Writes batches of body chunks to the spool file on the blocking pool, one batch in flight at
/// a time, while the next batch is hashed: no chunk is copied on its way to the file.
struct Spooler {
    /// The file, when no write holds it.
    file: Option<std::fs::File>,
    in_flight: Option<tokio::task::JoinHandle<std::io::Result<std::fs::File>>>,
    batch: Vec<Bytes>,
    batched: usize,
}

impl Spooler {
    fn new(file: std::fs::File) -> Self {
        Self {
            file: Some(file),
            in_flight: None,
            batch: Vec::new(),
            batched: 0,
        }
    }

    async fn push(&mut self, chunk: Bytes) -> std::io::Result<()> {
        self.batched += chunk.len();
        self.batch.push(chunk);
        if self.batched >= SPOOL_BUFFER {
            self.write_batch().await?;
        }
        Ok(())
    }

    /// Waits for the write in flight, then hands the batch to a new one.
    async fn write_batch(&mut self) -> std::io::Result<()> {
        let mut file = match self.in_flight.take() {
            Some(write) => write.await.map_err(std::io::Error::other)??,
            None => self.file.take().expect("the file is held or in flight"),
        };
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            Ok(file)
        }));
        Ok(())
    }

    /// Writes what is left and waits for it.
    async fn finish(mut self) -> std::io::Result<()> {
        self.write_batch().await?;
        match self.in_flight.take() {
            Some(write) => write.await.map_err(std::io::Error::other)?.map(drop),
            None => Ok(()),
        }
    }
}

/// Reads `body`, refusing more than `limit` bytes, and checks `signature` against its
/// HMAC-SHA256 under `secret` (`None`: checking disabled). A body larger than [`SPOOL_BUFFER`]
/// is written to the file `spill` opens, called at most once, when the body outgrows memory.
///
/// # Errors
/// [`VerifyError`]: too large, unreadable, or a signature that does not hold.
pub(crate) async fn verify(
    body: Body,
    spill: impl FnOnce() -> std::io::Result<std::fs::File>,
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
        Some(key) => {
            Some(HmacSha256::new_from_slice(key).map_err(|source| VerifyError::Key { source })?)
        }
        None => None,
    };
    let spool_error =
        |what: &'static str, source: std::io::Error| VerifyError::Spool { what, source };
    let mut spill = Some(spill);
    let mut sink = Sink::Memory(Vec::new());
    let mut len = 0u64;
    let mut sha256 = Sha256::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| match e.downcast_ref::<DeadlineExceeded>() {
            Some(deadline) => VerifyError::ReadTimeout {
                setting: deadline.setting(),
            },
            None => VerifyError::Body {
                message: e.to_string(),
            },
        })?;
        len += chunk.len() as u64;
        if len > limit {
            return Err(VerifyError::TooLarge { limit });
        }
        if let Some(mac) = mac.as_mut() {
            mac.update(&chunk);
        }
        sha256.update(&chunk);
        if let Sink::Memory(held) = &mut sink {
            if held.len() + chunk.len() <= SPOOL_BUFFER {
                held.extend_from_slice(&chunk);
                continue;
            }
            let open = spill.take().expect("the spool file is opened once");
            let mut spooler = Spooler::new(open().map_err(|e| spool_error("creating", e))?);
            spooler
                .push(Bytes::from(std::mem::take(held)))
                .await
                .map_err(|e| spool_error("writing", e))?;
            sink = Sink::File(spooler);
        }
        if let Sink::File(spooler) = &mut sink {
            spooler
                .push(chunk)
                .await
                .map_err(|e| spool_error("writing", e))?;
        }
    }
    let memory = match sink {
        Sink::Memory(held) => Some(held),
        Sink::File(spooler) => {
            spooler
                .finish()
                .await
                .map_err(|e| spool_error("writing", e))?;
            None
        }
    };
    if let (Some(mac), Some(expected)) = (mac, expected) {
        mac.verify_slice(&expected)
            .map_err(|_| VerifyError::BadSignature)?;
    }
    Ok(Verified {
        len,
        memory,
        sha256: sha256.finalize().into(),
    })
}

/// `sha256=<hex>` → the digest bytes. Any header bytes are accepted without panicking.
pub(crate) fn parse_signature(header: Option<&[u8]>) -> Result<Vec<u8>, VerifyError> {
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
        verify(
            Body::from(body),
            || panic!("a small body stays in memory"),
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

    #[tokio::test]
    async fn a_body_larger_than_the_buffer_goes_to_the_spill_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("body");
        let body: Vec<u8> = (0..SPOOL_BUFFER * 3 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let signature = sign(b"secret", &body);
        let mut opened = 0;
        let verified = verify(
            Body::from(body.clone()),
            || {
                opened += 1;
                std::fs::File::create(&dest)
            },
            u64::MAX,
            Some(signature.as_bytes()),
            Some(b"secret"),
        )
        .await
        .unwrap();
        assert_eq!(opened, 1);
        assert!(verified.memory.is_none());
        assert_eq!(std::fs::read(&dest).unwrap(), body);
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
