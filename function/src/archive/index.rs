//! One pass over the spooled (verified) request tar: every entry's clean path, kind, mode and
//! where its bytes are in the spool. Nothing of the archive is ever created on the host: the
//! context is served from this index and the spool alone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use buildkit::links::{self, ResolveError};
use tar::{EntryType, PaxExtensions};
use xxhash_rust::xxh3::Xxh3;

pub(crate) use super::error::IndexError;
use super::error::{entry_error, format_error, tar_error, truncated};
use super::{Kind, Node};
use crate::wire::{CONFIG_NAME, CONTEXT_DIR, SECRETS_NAME};

/// Largest config (and sealed secrets) file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Longest entry name or link target, as Linux's `PATH_MAX`; also bounds GNU long-name records,
/// which are read into memory.
const MAX_NAME_BYTES: u64 = 4096;
/// Longest name component, as Linux's `NAME_MAX`: the daemon could not create a longer one.
const MAX_COMPONENT_BYTES: usize = 255;
/// Largest PAX extended header, read into memory.
const MAX_PAX_BYTES: u64 = 64 * 1024;
/// Bytes of paths looked up while resolving all the symlinks of one archive: a fraction of a
/// second of work in a release build, and room for 100,000 links of a real `node_modules`.
const LINK_BUDGET: u64 = 64 << 20;
/// Tar bytes a gzip body may decompress to per allowed entry, on top of the content limit:
/// a header and padding.
const TAR_OVERHEAD_PER_ENTRY: u64 = 1024;

/// Limits on what a request may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most tar entries, extension headers included.
    pub(crate) entries: u64,
    /// Most bytes of file content, long names and PAX records included.
    pub(crate) bytes: u64,
}

/// What the index pass found.
pub(crate) struct Indexed {
    /// The plain tar the nodes' offsets point into.
    pub(crate) spool: PathBuf,
    /// The context's entries by clean relative path (the root is not listed).
    pub(crate) nodes: BTreeMap<String, Node>,
    /// The raw `com.openfaas.docker.config`.
    pub(crate) config: Vec<u8>,
    /// The raw `com.openfaas.secrets` (sealed values), if sent.
    pub(crate) secrets: Option<Vec<u8>>,
}

/// Indexes the request at `spool` (plain or gzipped tar). A gzip body is first decompressed,
/// once, into `plain` (and `spool` removed); the index then points into that file.
///
/// # Errors
/// [`IndexError`] naming the entry or limit at fault, or the missing config or Dockerfile.
pub(crate) fn index(
    spool: &Path,
    plain: &Path,
    dockerfile: &str,
    limits: Limits,
) -> Result<Indexed, IndexError> {
    let spool = gunzip_if_needed(spool, plain, limits)?;
    let file = File::open(&spool)?;
    let mut indexer = Indexer {
        limits,
        buf: vec![0; 64 * 1024],
        nodes: BTreeMap::new(),
        config: None,
        secrets: None,
        entries: 0,
        bytes: 0,
    };
    indexer.read(BufReader::with_capacity(256 * 1024, file))?;
    indexer.check_links()?;
    check_dockerfile(&indexer.nodes, dockerfile)?;
    Ok(Indexed {
        spool,
        config: indexer.config.ok_or(IndexError::MissingConfig)?,
        secrets: indexer.secrets,
        nodes: indexer.nodes,
    })
}

/// `spool` itself when it is not gzip; otherwise `plain`, holding the decompressed tar, which
/// counts against the limits.
fn gunzip_if_needed(spool: &Path, plain: &Path, limits: Limits) -> Result<PathBuf, IndexError> {
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

/// Extension records waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

struct Indexer {
    limits: Limits,
    /// Reused for every file's bytes while hashing them.
    buf: Vec<u8>,
    nodes: BTreeMap<String, Node>,
    config: Option<Vec<u8>>,
    secrets: Option<Vec<u8>>,
    entries: u64,
    bytes: u64,
}

impl Indexer {
    fn count_bytes(&mut self, n: u64) -> Result<(), IndexError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.bytes {
            return Err(IndexError::TooManyBytes {
                limit: self.limits.bytes,
            });
        }
        Ok(())
    }

    fn read(&mut self, reader: impl Read) -> Result<(), IndexError> {
        let mut archive = tar::Archive::new(reader);
        // Raw: long names and PAX records come to us as entries, so we bound them before
        // reading them into memory (the crate would read them whole).
        let entries = archive
            .entries()
            .map_err(|e| format_error(format!("not a tar archive: {e}")))?
            .raw(true);
        let mut pending = Pending::default();
        let mut last = String::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_error(&last, &e))?;
            self.entries += 1;
            if self.entries > self.limits.entries {
                return Err(IndexError::TooManyEntries {
                    limit: self.limits.entries,
                });
            }
            let header_name = String::from_utf8_lossy(&entry.header().path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            let size = entry.size();
            let record = match kind {
                EntryType::GNULongName => Some((&mut pending.long_name, MAX_NAME_BYTES + 1)),
                EntryType::GNULongLink => Some((&mut pending.long_link, MAX_NAME_BYTES + 1)),
                EntryType::XHeader => Some((&mut pending.pax, MAX_PAX_BYTES)),
                EntryType::XGlobalHeader => {
                    // Global records (git archive's comment) describe no entry; skipped.
                    self.count_bytes(size)?;
                    continue;
                }
                _ => None,
            };
            if let Some((slot, max)) = record {
                if size > max {
                    return Err(entry_error(
                        &header_name,
                        format!("{kind:?} record of {size} bytes is larger than {max} bytes"),
                    ));
                }
                if slot.is_some() {
                    return Err(entry_error(
                        &header_name,
                        format!("two {kind:?} records for one entry"),
                    ));
                }
                self.count_bytes(size)?;
                let data = read_exactly(&mut entry, size, &header_name)?;
                *slot = Some(data);
                continue;
            }
            let described = std::mem::take(&mut pending);
            let entry_name = self.add(&mut entry, kind, described)?;
            last = entry_name;
        }
        if pending.long_name.is_some() || pending.long_link.is_some() || pending.pax.is_some() {
            return Err(format_error(format!(
                "truncated tar archive: an extension record after {last:?} describes no entry"
            )));
        }
        Ok(())
    }

    /// Adds one real entry (not an extension record); returns its name.
    fn add<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        pending: Pending,
    ) -> Result<String, IndexError> {
        let header = entry.header();
        let size = entry.size();
        let offset = entry.raw_file_position();
        let mut name = pending.long_name.map(trim_nul);
        let mut link = pending.long_link.map(trim_nul);
        let mut mtime: Option<i64> = None;
        let fallback = String::from_utf8_lossy(&header.path_bytes()).into_owned();
        if let Some(pax) = &pending.pax {
            for record in PaxExtensions::new(pax) {
                let record =
                    record.map_err(|_| entry_error(&fallback, "malformed PAX extended header"))?;
                let value = record.value_bytes();
                match record.key_bytes() {
                    b"path" => name = Some(value.to_vec()),
                    b"linkpath" => link = Some(value.to_vec()),
                    // The crate (raw) steps over the header's size; a PAX size that says
                    // otherwise would make two parsers see two archives.
                    b"size" if parse_u64(value) != Some(size) => {
                        return Err(entry_error(
                            &fallback,
                            "PAX size disagrees with the header size",
                        ));
                    }
                    b"mtime" => {
                        let secs = std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                            .ok_or_else(|| entry_error(&fallback, "PAX mtime is not a number"))?;
                        mtime = Some(secs);
                    }
                    _ => {}
                }
            }
        }
        let name = name.unwrap_or_else(|| header.path_bytes().into_owned());
        let raw = String::from_utf8(name).map_err(|e| {
            entry_error(&String::from_utf8_lossy(e.as_bytes()), "name is not UTF-8")
        })?;
        let parts = clean(&raw)?;
        match parts.first().map(String::as_str) {
            None => {}
            Some(CONFIG_NAME) if parts.len() == 1 => {
                if !kind.is_file() {
                    return Err(entry_error(&raw, "must be a regular file"));
                }
                if size > MAX_CONFIG_BYTES {
                    return Err(entry_error(
                        &raw,
                        format!("is larger than {MAX_CONFIG_BYTES} bytes"),
                    ));
                }
                self.count_bytes(size)?;
                self.config = Some(read_exactly(entry, size, &raw)?);
            }
            // Sealed build secrets: opened by intake, with the builder's key.
            Some(SECRETS_NAME) if parts.len() == 1 => {
                if !kind.is_file() || size > MAX_CONFIG_BYTES {
                    return Err(entry_error(
                        &raw,
                        format!("must be a regular file of at most {MAX_CONFIG_BYTES} bytes"),
                    ));
                }
                self.count_bytes(size)?;
                self.secrets = Some(read_exactly(entry, size, &raw)?);
            }
            Some(CONTEXT_DIR) if parts.len() == 1 && !kind.is_dir() => {
                return Err(entry_error(&raw, "must be a directory"));
            }
            Some(CONTEXT_DIR) if parts.len() == 1 => {}
            Some(CONTEXT_DIR) => {
                let path = parts[1..].join("/");
                let mode = header
                    .mode()
                    .map_err(|e| entry_error(&raw, format!("invalid mode: {e}")))?;
                let secs = match mtime {
                    Some(secs) => secs,
                    None => {
                        let secs = header
                            .mtime()
                            .map_err(|e| entry_error(&raw, format!("invalid mtime: {e}")))?;
                        i64::try_from(secs).map_err(|_| entry_error(&raw, "mtime out of range"))?
                    }
                };
                let link = match link {
                    Some(link) => Some(link),
                    None => header.link_name_bytes().map(|l| l.into_owned()),
                };
                let link = link
                    .map(String::from_utf8)
                    .transpose()
                    .map_err(|_| entry_error(&raw, "link target is not UTF-8"))?
                    .unwrap_or_default();
                let meta = Meta {
                    raw: &raw,
                    path,
                    mode: mode & 0o7777,
                    secs,
                };
                self.add_context_entry(entry, kind, meta, offset, size, &link)?;
            }
            Some(_) => return Err(IndexError::Outside { entry: raw }),
        }
        Ok(raw)
    }

    fn add_context_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        meta: Meta<'_>,
        offset: u64,
        size: u64,
        link: &str,
    ) -> Result<(), IndexError> {
        let raw = meta.raw;
        let mtime_ns = |nanos: u32| {
            meta.secs
                .checked_mul(1_000_000_000)
                .and_then(|ns| ns.checked_add(i64::from(nanos)))
                .ok_or_else(|| entry_error(raw, "mtime out of range"))
        };
        let node = match kind {
            EntryType::Directory => Node {
                kind: Kind::Dir,
                permissions: meta.mode,
                mtime_ns: mtime_ns(0)?,
            },
            EntryType::Regular | EntryType::Continuous => {
                self.count_bytes(size)?;
                let hash = hash_exactly(entry, size, raw, &mut self.buf)?;
                // BuildKit judges change by size, mode and mtime only, and reproducible packers
                // fix mtimes: nanoseconds from the content make every content change visible.
                let nanos = (hash % 1_000_000_000) as u32;
                Node {
                    kind: Kind::File { offset, size },
                    permissions: meta.mode,
                    mtime_ns: mtime_ns(nanos)?,
                }
            }
            EntryType::Symlink => {
                if link.is_empty() {
                    return Err(entry_error(raw, "symlink has an empty target"));
                }
                check_name_length(raw, link)?;
                Node {
                    kind: Kind::Symlink {
                        target: link.to_owned(),
                    },
                    permissions: meta.mode,
                    mtime_ns: mtime_ns(0)?,
                }
            }
            EntryType::Link => {
                // An alias of an earlier regular file of this archive, looked up in the index.
                let not_earlier = || {
                    entry_error(
                        raw,
                        format!("hardlink target {link:?} is not an earlier file in context/"),
                    )
                };
                let parts = clean(link).map_err(|err| match err {
                    IndexError::Entry { problem, .. } => {
                        entry_error(raw, format!("hardlink target {link:?}: {problem}"))
                    }
                    other => other,
                })?;
                if parts.len() < 2 || parts[0] != CONTEXT_DIR {
                    return Err(not_earlier());
                }
                match self.nodes.get(&parts[1..].join("/")) {
                    Some(
                        node @ Node {
                            kind: Kind::File { .. },
                            ..
                        },
                    ) => node.clone(),
                    _ => return Err(not_earlier()),
                }
            }
            other => {
                return Err(entry_error(
                    raw,
                    format!("only files, directories and links are allowed, not {other:?}"),
                ))
            }
        };
        self.insert(raw, meta.path, node)
    }

    /// Places `node` at `path`, implying its parent directories. A later entry for the same path
    /// replaces an earlier one (as extracting a tar does), but never turns a directory into
    /// something else or back, and no entry may sit below a file or a symlink.
    fn insert(&mut self, raw: &str, path: String, node: Node) -> Result<(), IndexError> {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let parent = &path[..end + slash];
            match self.nodes.get(parent) {
                None => {
                    self.nodes.insert(
                        parent.to_owned(),
                        Node {
                            kind: Kind::Dir,
                            permissions: 0o755,
                            mtime_ns: 0,
                        },
                    );
                }
                Some(Node {
                    kind: Kind::Dir, ..
                }) => {}
                Some(Node {
                    kind: Kind::Symlink { .. },
                    ..
                }) => {
                    return Err(entry_error(
                        raw,
                        format!("parent context/{parent} is a symlink"),
                    ))
                }
                Some(_) => {
                    return Err(entry_error(
                        raw,
                        format!("parent context/{parent} is not a directory"),
                    ))
                }
            }
            end += slash + 1;
        }
        let is_dir = matches!(node.kind, Kind::Dir);
        match self.nodes.get(&path) {
            Some(Node {
                kind: Kind::Dir, ..
            }) if !is_dir => Err(entry_error(raw, "replaces a directory")),
            Some(Node { kind, .. }) if is_dir && !matches!(kind, Kind::Dir) => {
                Err(entry_error(raw, "a directory replaces a file or link"))
            }
            _ => {
                self.nodes.insert(path, node);
                Ok(())
            }
        }
    }

    /// Every symlink, resolved through the other links of the final archive, stays inside.
    fn check_links(&self) -> Result<(), IndexError> {
        // One budget for all links: each alone is bounded (40 hops of 4096-byte targets), but
        // 100,000 of them crafted to be slow would hold a core for minutes.
        let mut budget = LINK_BUDGET;
        for (path, node) in &self.nodes {
            let Kind::Symlink { target } = &node.kind else {
                continue;
            };
            let from = match path.rsplit_once('/') {
                _ if target.starts_with('/') => Err(ResolveError::Escapes),
                Some((dir, _)) => Ok(format!("{dir}/{target}")),
                None => Ok(target.clone()),
            };
            let resolved = from.and_then(|from| {
                links::resolve_within(&from, &mut budget, |p| lookup(&self.nodes, p))
            });
            if let Err(err) = resolved {
                let problem = match err {
                    ResolveError::Escapes => {
                        format!("symlink target {target:?} escapes the context")
                    }
                    ResolveError::TooManyLinks | ResolveError::TooComplex => {
                        format!("symlink target {target:?} {err}")
                    }
                };
                return Err(entry_error(&format!("context/{path}"), problem));
            }
        }
        Ok(())
    }
}

/// What a path of the index is, for link resolution.
pub(crate) fn lookup(nodes: &BTreeMap<String, Node>, path: &str) -> links::Node {
    match nodes.get(path).map(|n| &n.kind) {
        None if path.is_empty() => links::Node::Dir,
        None => links::Node::Missing,
        Some(Kind::Dir) => links::Node::Dir,
        Some(Kind::File { .. }) => links::Node::File,
        Some(Kind::Symlink { target }) => links::Node::Symlink(target.clone()),
    }
}

fn check_dockerfile(nodes: &BTreeMap<String, Node>, dockerfile: &str) -> Result<(), IndexError> {
    let problem = match links::resolve(dockerfile, |p| lookup(nodes, p)) {
        Ok(resolved) => match resolved.node {
            links::Node::File => return Ok(()),
            links::Node::Missing => "not found".to_owned(),
            _ => "is not a regular file".to_owned(),
        },
        Err(err) => err.to_string(),
    };
    Err(IndexError::Dockerfile {
        path: dockerfile.to_owned(),
        problem,
    })
}

/// The parts of one entry's header that the index keeps.
struct Meta<'a> {
    raw: &'a str,
    path: String,
    mode: u32,
    secs: i64,
}

fn parse_u64(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

fn check_name_length(raw: &str, name: &str) -> Result<(), IndexError> {
    if name.len() as u64 > MAX_NAME_BYTES {
        return Err(entry_error(
            raw,
            format!("name longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A tar path as its components, without `.` and empty ones; absolute paths, `..`, NUL bytes and
/// over-long names refused.
pub(crate) fn clean(raw: &str) -> Result<Vec<String>, IndexError> {
    if raw.starts_with('/') {
        return Err(entry_error(raw, "absolute paths are not allowed"));
    }
    check_name_length(raw, raw)?;
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(entry_error(raw, "`..` is not allowed")),
            part if part.contains('\0') => return Err(entry_error(raw, "name holds a NUL byte")),
            part if part.len() > MAX_COMPONENT_BYTES => {
                return Err(entry_error(
                    raw,
                    format!("a name component is longer than {MAX_COMPONENT_BYTES} bytes"),
                ))
            }
            part => parts.push(part.to_owned()),
        }
    }
    Ok(parts)
}

/// Reads exactly `size` bytes of an entry (`size` already bounded by the caller).
fn read_exactly(entry: &mut impl Read, size: u64, raw: &str) -> Result<Vec<u8>, IndexError> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry
        .read_to_end(&mut data)
        .map_err(|e| truncated(raw, &e))?;
    if data.len() as u64 != size {
        return Err(truncated(raw, &io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(data)
}

/// A 64-bit XXH3 of exactly `size` bytes of an entry. It only has to tell edits apart for the
/// content-derived mtime (30 bits of it are kept, which anyone could match by trial whatever the
/// hash), so the fastest well-kept hash does: the index reads every byte of every request.
fn hash_exactly(
    entry: &mut impl Read,
    size: u64,
    raw: &str,
    buf: &mut [u8],
) -> Result<u64, IndexError> {
    let mut hasher = Xxh3::new();
    let mut seen = 0u64;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(truncated(raw, &err)),
        };
        hasher.update(&buf[..n]);
        seen += n as u64;
    }
    if seen != size {
        return Err(truncated(raw, &io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(hasher.digest())
}
