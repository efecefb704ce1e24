//! One pass over the spooled (verified) request tar: every entry's clean path, kind, mode and
//! where its bytes are in the spool. Nothing of the archive is ever created on the host: the
//! context is served from this index and the spool alone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use tar::{EntryType, PaxExtensions};
use xxhash_rust::xxh3::Xxh3;

pub(crate) use super::error::IndexError;
use super::error::{entry_error, format_error, tar_error, truncated};
use super::gunzip::gunzip_if_needed;
use super::tree::{self, check_name_length, clean, MAX_NAME_BYTES};
use super::{Kind, Node};
use crate::wire::{CONFIG_NAME, CONTEXT_DIR, SECRETS_NAME};

/// Largest config (and sealed secrets) file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest PAX extended header, read into memory.
const MAX_PAX_BYTES: u64 = 64 * 1024;

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
        inodes: Vec::new(),
        config: None,
        secrets: None,
        entries: 0,
        bytes: 0,
    };
    indexer.read(BufReader::with_capacity(256 * 1024, file))?;
    indexer.share_inode_stats();
    tree::check_links(&indexer.nodes)?;
    tree::check_dockerfile(&indexer.nodes, dockerfile)?;
    Ok(Indexed {
        spool,
        config: indexer.config.ok_or(IndexError::MissingConfig)?,
        secrets: indexer.secrets,
        nodes: indexer.nodes,
    })
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
    /// The final permissions and mtime of each regular file's inode (`Kind::File::inode`).
    inodes: Vec<Inode>,
    config: Option<Vec<u8>>,
    secrets: Option<Vec<u8>>,
    entries: u64,
    bytes: u64,
}

/// What all the names of one inode show.
struct Inode {
    permissions: u32,
    mtime_ns: i64,
}

impl Indexer {
    /// Gives every name of an inode its inode's final permissions and mtime. Docker extracts a
    /// tar context with chmod and chtimes after each entry, so a hardlink whose header says
    /// otherwise than its target's changes the one inode all its names share: the last header
    /// naming the inode decides. Each name must show the same, or BuildKit's content hash (which
    /// gives a link its source's digest) would not describe what the daemon made.
    fn share_inode_stats(&mut self) {
        for node in self.nodes.values_mut() {
            if let Kind::File { inode, .. } = node.kind {
                let shared = &self.inodes[inode as usize];
                node.permissions = shared.permissions;
                node.mtime_ns = shared.mtime_ns;
            }
        }
    }

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
                let inode = Inode {
                    permissions: meta.mode,
                    mtime_ns: mtime_ns(nanos)?,
                };
                let node = Node {
                    kind: Kind::File {
                        offset,
                        size,
                        inode: self.inodes.len() as u64,
                    },
                    permissions: inode.permissions,
                    mtime_ns: inode.mtime_ns,
                };
                self.inodes.push(inode);
                node
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
                let (node, inode) = match self.nodes.get(&parts[1..].join("/")) {
                    Some(
                        node @ Node {
                            kind: Kind::File { inode, .. },
                            ..
                        },
                    ) => (node.clone(), *inode),
                    _ => return Err(not_earlier()),
                };
                // This header's mode and mtime are now the inode's; its nanoseconds still come
                // from the content.
                let shared = &mut self.inodes[inode as usize];
                shared.permissions = meta.mode;
                shared.mtime_ns = mtime_ns(shared.mtime_ns.rem_euclid(1_000_000_000) as u32)?;
                node
            }
            other => {
                return Err(entry_error(
                    raw,
                    format!("only files, directories and links are allowed, not {other:?}"),
                ))
            }
        };
        tree::insert(&mut self.nodes, raw, meta.path, node)
    }
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
