//! A request tar spooled to an unnamed temp file while its signature is computed, then streamed
//! back as the request body: the signature header must be known before the first body byte, and
//! a context of gigabytes must not sit in memory.

use std::io::{self, Seek, Write};

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use crate::layout::Layout;
use crate::pack::{self, Config};

/// Bytes read from the spool per body chunk, and written to it at a time: large, so a gigabyte
/// costs a thousand system calls each way, not a hundred thousand.
const CHUNK: usize = 1 << 20;

/// A packed, signed request.
pub(crate) struct Spooled {
    file: std::fs::File,
    /// Length in bytes, sent as Content-Length.
    pub(crate) len: u64,
    /// `sha256=<hex>`, the `X-Build-Signature` value.
    pub(crate) signature: String,
}

/// Packs `layout`, `config` and the `sealed` secrets file into a temp file, signing with the
/// trimmed `secret` as every Builder API client does.
pub(crate) fn spool(
    layout: &Layout,
    config: &Config,
    sealed: Option<&[u8]>,
    secret: &str,
) -> Result<Spooled> {
    let file = tempfile::tempfile().context("creating a temp file for the request")?;
    let writer = Signer {
        inner: io::BufWriter::with_capacity(CHUNK, file),
        mac: Hmac::<Sha256>::new_from_slice(secret.trim().as_bytes()).expect("any key length"),
        len: 0,
    };
    let signer = pack::pack(layout, config, sealed, writer)?;
    let signature = format!("sha256={}", hex::encode(signer.mac.finalize().into_bytes()));
    let mut file = signer
        .inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .context("writing the request")?;
    file.rewind()?;
    Ok(Spooled {
        file,
        len: signer.len,
        signature,
    })
}

impl Spooled {
    /// The tar as a streaming request body.
    pub(crate) fn into_body(self) -> openfaas_runtime::Body {
        let file = tokio::fs::File::from_std(self.file);
        let chunks = futures_util::stream::try_unfold(file, |mut file| async move {
            // Read into uninitialised capacity: no zeroing of a buffer about to be overwritten.
            let mut buf = bytes::BytesMut::with_capacity(CHUNK);
            while buf.len() < CHUNK {
                if file.read_buf(&mut buf).await? == 0 {
                    break;
                }
            }
            let n = buf.len();
            Ok::<_, io::Error>((n > 0).then(|| (buf.freeze(), file)))
        });
        openfaas_runtime::Body::from_stream(chunks)
    }
}

/// A writer that feeds an HMAC and counts what passes through.
struct Signer<W> {
    inner: W,
    mac: Hmac<Sha256>,
    len: u64,
}

impl<W: Write> Write for Signer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.mac.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn the_signature_and_length_match_the_streamed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        // Larger than a chunk, so the body comes in several.
        std::fs::write(dir.path().join("big"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        let mut layout = Layout::new();
        layout
            .overlay(dir.path(), "", crate::layout::Links::Keep, &[])
            .unwrap();
        let config = Config {
            image: Some("r/x:1".into()),
            build_args: Default::default(),
            ..Config::default()
        };
        let sealed = Some(&b"version: v1\n"[..]);
        let spooled = spool(&layout, &config, sealed, "  s3cret\n").unwrap();
        let (len, signature) = (spooled.len, spooled.signature.clone());
        let bytes = spooled.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len() as u64, len);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&bytes);
        assert_eq!(
            signature,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let in_memory = pack::pack(&layout, &config, sealed, Vec::new()).unwrap();
        assert_eq!(&bytes[..], &in_memory[..]);
    }
}
