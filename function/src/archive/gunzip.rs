//! A gzip request body decompressed once, into a plain tar beside it, bounded by the limits.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::error::{format_error, IndexError};
use super::index::Limits;

/// Tar bytes a gzip body may decompress to per allowed entry, on top of the content limit:
/// a header and padding.
const TAR_OVERHEAD_PER_ENTRY: u64 = 1024;

/// `spool` itself when it is not gzip; otherwise `plain`, holding the decompressed tar, which
/// counts against the limits.
pub(super) fn gunzip_if_needed(
    spool: &Path,
    plain: &Path,
    limits: Limits,
) -> Result<PathBuf, IndexError> {
    let mut file = File::open(spool)?;
    let mut magic = [0u8; 2];
    let gzipped = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    if !gzipped {
        return Ok(spool.to_owned());
    }
    file.rewind()?;
    let limit = limits
        .bytes
        .saturating_add(limits.entries.saturating_mul(TAR_OVERHEAD_PER_ENTRY));
    let mut gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, file));
    let mut out = io::BufWriter::with_capacity(256 * 1024, File::create(plain)?);
    let mut buf = vec![0; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match gz.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(format_error(
                    "truncated gzip body: the gzip stream ends early",
                ))
            }
            Err(err) => return Err(format_error(format!("invalid gzip body: {err}"))),
        };
        total += n as u64;
        if total > limit {
            return Err(format_error(format!(
                "the gzip body decompresses to more than {limit} bytes"
            )));
        }
        out.write_all(&buf[..n])?;
    }
    out.flush()?;
    std::fs::remove_file(spool)?;
    Ok(plain.to_owned())
}
