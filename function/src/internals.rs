//! Entry points into the builder's stages for fuzz targets and benchmarks (feature `internals`).
//! Not an API: each takes plain inputs and returns what a caller can check, nothing more.

use std::path::Path;

use bytes::Bytes;
use openfaas_runtime::Body;

/// Intake's first pass, as `POST /build` runs it: `chunks` streamed through the HMAC-SHA256
/// under `secret` and spooled to `spool` once they outgrow memory, then `signature` checked.
/// Returns the bytes received, or the error's message.
///
/// # Errors
/// The message of the `VerifyError` the request would have been refused with.
pub async fn verify_and_spool(
    chunks: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    spool: &Path,
    signature: &[u8],
    secret: &[u8],
) -> Result<u64, String> {
    crate::verify::verify(
        Body::from_stream(chunks),
        || std::fs::File::create(spool),
        u64::MAX,
        Some(signature),
        Some(secret),
    )
    .await
    .map(|verified| verified.len)
    .map_err(|e| e.to_string())
}
