//! Unpacking the request tar, safely: only `com.openfaas.docker.config`, the reserved
//! `com.openfaas.secrets` and `context/` are accepted, and nothing may escape the context.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tar::EntryType;

use crate::BuildError;

/// The config file's name in the tar.
pub(crate) const CONFIG_NAME: &str = "com.openfaas.docker.config";
/// Reserved for sealed build secrets.
pub(crate) const SECRETS_NAME: &str = "com.openfaas.secrets";
/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Limits on what a request may unpack to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most entries.
    pub(crate) entries: u64,
    /// Most bytes of file content.
    pub(crate) bytes: u64,
}

/// What a request tar held.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// The raw `com.openfaas.docker.config`.
    pub(crate) config: Vec<u8>,
    /// Entries read.
    pub(crate) entries: u64,
    /// File bytes written.
    pub(crate) bytes: u64,
}

/// Unpacks the (plain or gzipped) tar at `spool`, writing `context/` into `context_dir`. Each
/// file's mtime gets nanoseconds derived from its content, so BuildKit's metadata-only change
/// detection sees every content change even when a packer fixes mtimes.
///
/// # Errors
/// [`BuildError::BadRequest`] naming the offending entry, or the missing config or Dockerfile.
pub(crate) fn unpack(
    spool: &Path,
    context_dir: &Path,
    dockerfile: &str,
    limits: Limits,
) -> Result<Unpacked, BuildError> {
    let internal = |e: io::Error| BuildError::Internal {
        message: format!("reading the spooled body: {e}"),
    };
    let mut file = BufReader::new(File::open(spool).map_err(internal)?);
    let mut magic = [0u8; 2];
    let gzipped = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    file.rewind().map_err(internal)?;
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };

    fs::create_dir_all(context_dir).map_err(internal)?;
    let mut archive = tar::Archive::new(reader);
    let mut out = Unpacked {
        config: Vec::new(),
        entries: 0,
        bytes: 0,
    };
    let mut has_config = false;
    let entries = archive
        .entries()
        .map_err(|e| BuildError::bad_request(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            // The tar crate reports a cut-off archive as "unexpected EOF ..." of kind Other.
            if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string().contains("unexpected EOF")
            {
                BuildError::bad_request(format!("truncated tar archive: {e}"))
            } else {
                BuildError::bad_request(format!("not a valid tar archive: {e}"))
            }
        })?;
        out.entries += 1;
        if out.entries > limits.entries {
            return Err(BuildError::bad_request(format!(
                "the tar has more than {} entries",
                limits.entries
            )));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let parts = clean(&raw)?;
        let kind = entry.header().entry_type();
        match parts.first().map(String::as_str) {
            None => continue, // `./` itself
            Some(CONFIG_NAME) if parts.len() == 1 => {
                if !kind.is_file() {
                    return Err(BuildError::bad_request(format!(
                        "{CONFIG_NAME} must be a regular file"
                    )));
                }
                if entry.size() > MAX_CONFIG_BYTES {
                    return Err(BuildError::bad_request(format!(
                        "{CONFIG_NAME} is larger than {MAX_CONFIG_BYTES} bytes"
                    )));
                }
                out.config.clear();
                entry
                    .read_to_end(&mut out.config)
                    .map_err(|e| truncated(&raw, &e))?;
                has_config = true;
            }
            // Reserved for sealed build secrets; not used yet.
            Some(SECRETS_NAME) if parts.len() == 1 => {}
            Some("context") => {
                let rel = &parts[1..];
                write_entry(&mut entry, kind, &raw, rel, context_dir, &mut out, limits)?;
            }
            Some(_) => {
                return Err(BuildError::bad_request(format!(
                "entry {raw:?} is outside context/ (only {CONFIG_NAME} and context/ are accepted)"
            )))
            }
        }
    }
    if !has_config {
        return Err(BuildError::bad_request(format!("missing {CONFIG_NAME}")));
    }
    if !context_dir.join(dockerfile).is_file() {
        return Err(BuildError::bad_request(format!(
            "context/{dockerfile} not found"
        )));
    }
    Ok(out)
}

fn truncated(raw: &str, err: &io::Error) -> BuildError {
    BuildError::bad_request(format!("entry {raw:?}: truncated tar: {err}"))
}

/// A tar path as its components, without `.` and empty ones; absolute paths and `..` rejected.
fn clean(raw: &str) -> Result<Vec<String>, BuildError> {
    if raw.starts_with('/') {
        return Err(BuildError::bad_request(format!(
            "entry {raw:?}: absolute paths are not allowed"
        )));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(BuildError::bad_request(format!(
                    "entry {raw:?}: `..` is not allowed"
                )))
            }
            part => parts.push(part.to_owned()),
        }
    }
    Ok(parts)
}

fn write_entry(
    entry: &mut tar::Entry<'_, Box<dyn Read>>,
    kind: EntryType,
    raw: &str,
    rel: &[String],
    root: &Path,
    out: &mut Unpacked,
    limits: Limits,
) -> Result<(), BuildError> {
    let internal = |e: io::Error| BuildError::Internal {
        message: format!("unpacking {raw:?}: {e}"),
    };
    let target = rel
        .iter()
        .fold(root.to_path_buf(), |path, part| path.join(part));
    if rel.is_empty() {
        return if kind.is_dir() {
            Ok(())
        } else {
            Err(BuildError::bad_request(format!(
                "entry {raw:?} must be a directory"
            )))
        };
    }
    // Never write through a symlink an earlier entry made.
    let parent = target.parent().unwrap_or(root);
    ensure_dirs(root, &rel[..rel.len() - 1], raw)?;
    if let Ok(meta) = fs::symlink_metadata(&target) {
        if meta.is_dir() && !kind.is_dir() {
            return Err(BuildError::bad_request(format!(
                "entry {raw:?} replaces a directory"
            )));
        }
        if !meta.is_dir() {
            fs::remove_file(&target).map_err(internal)?;
        }
    }
    let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
    match kind {
        EntryType::Directory => {
            fs::create_dir_all(&target).map_err(internal)?;
        }
        EntryType::Regular | EntryType::Continuous => {
            out.bytes += entry.size();
            if out.bytes > limits.bytes {
                return Err(BuildError::bad_request(format!(
                    "the context unpacks to more than {} bytes",
                    limits.bytes
                )));
            }
            let mut file = File::create(&target).map_err(internal)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = entry.read(&mut buf).map_err(|e| truncated(raw, &e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n]).map_err(internal)?;
            }
            let hash = hasher.finalize();
            let nanos = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) % 1_000_000_000;
            let secs = entry.header().mtime().unwrap_or(0);
            file.set_modified(UNIX_EPOCH + Duration::new(secs, nanos))
                .map_err(internal)?;
            file.set_permissions(fs::Permissions::from_mode(mode | 0o600))
                .map_err(internal)?;
        }
        EntryType::Symlink => {
            let link = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if link.is_empty() || escapes(root, parent, &link) {
                return Err(BuildError::bad_request(format!(
                    "entry {raw:?}: symlink target {link:?} escapes the context"
                )));
            }
            std::os::unix::fs::symlink(&link, &target).map_err(internal)?;
        }
        EntryType::Link => {
            let link = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let parts = clean(&link)?;
            let inside = parts.first().map(String::as_str) == Some("context") && parts.len() > 1;
            let source = parts
                .iter()
                .skip(1)
                .fold(root.to_path_buf(), |path, part| path.join(part));
            if !inside || !fs::symlink_metadata(&source).is_ok_and(|m| m.is_file()) {
                return Err(BuildError::bad_request(format!(
                    "entry {raw:?}: hardlink target {link:?} is not an earlier file in context/"
                )));
            }
            fs::hard_link(&source, &target).map_err(internal)?;
        }
        _ => {
            return Err(BuildError::bad_request(format!(
                "entry {raw:?}: only files, directories and links are allowed, not {kind:?}"
            )))
        }
    }
    Ok(())
}

/// Creates the directories of `dirs` under `root`, refusing to pass through a symlink.
fn ensure_dirs(root: &Path, dirs: &[String], raw: &str) -> Result<(), BuildError> {
    let mut path = root.to_path_buf();
    for dir in dirs {
        path.push(dir);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(BuildError::bad_request(format!(
                    "entry {raw:?}: a parent is not a directory"
                )))
            }
            Err(_) => fs::create_dir(&path).map_err(|e| BuildError::Internal {
                message: format!("unpacking {raw:?}: {e}"),
            })?,
        }
    }
    Ok(())
}

/// Whether a symlink in `dir` pointing at `link` resolves (lexically) outside `root`.
fn escapes(root: &Path, dir: &Path, link: &str) -> bool {
    let Ok(rel) = dir.strip_prefix(root) else {
        return true;
    };
    if link.starts_with('/') {
        return true;
    }
    let mut depth = rel.components().count();
    for component in Path::new(link).components() {
        match component {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}
