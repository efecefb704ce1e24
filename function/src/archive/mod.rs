//! The request archive as a build context: indexed once ([`index`]), then served to BuildKit
//! straight from the spool ([`Archive`] is a [`SourceTree`]). No entry of a request is ever
//! created, opened or resolved on the host: the only host files the builder opens are its own
//! spool files.

mod error;
mod gunzip;
mod index;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use buildkit::{Entry, EntryKind, SourceTree};

pub(crate) use index::{IndexError, Limits};

/// One entry of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    /// `mode & 0o7777`.
    pub(crate) permissions: u32,
    /// Nanoseconds since the epoch; a file's nanoseconds come from its content.
    pub(crate) mtime_ns: i64,
}

/// What an entry is. A hardlink is one more name of the file it aliases: the same bytes, the
/// same `inode`, and (once indexed) the same permissions and mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    /// `size` bytes at `offset` of the spool; `inode` numbers the archive's regular-file
    /// entries, and is shared by the hardlinks to one.
    File {
        offset: u64,
        size: u64,
        inode: u64,
    },
    Symlink {
        target: String,
    },
}

/// A verified request, indexed: its context served from the spool, and its raw config.
pub(crate) struct Archive {
    spool: Arc<File>,
    /// Files opened and bytes read by the daemon so far: what the transfer really cost.
    sent: Arc<Sent>,
    nodes: BTreeMap<String, Node>,
    /// Each directory's entries (`""` is the root), made once for FileSync's walk.
    dirs: HashMap<String, Vec<Entry>>,
    /// The raw `com.openfaas.docker.config`.
    pub(crate) config: Vec<u8>,
    /// The raw `com.openfaas.secrets` (sealed values), if sent.
    pub(crate) secrets: Option<Vec<u8>>,
}

impl Archive {
    /// The newest mtime of the context's entries, in whole seconds since 1970 (0 for older).
    pub(crate) fn newest_mtime(&self) -> u64 {
        let newest = self.nodes.values().map(|n| n.mtime_ns).max().unwrap_or(0);
        u64::try_from(newest.div_euclid(1_000_000_000)).unwrap_or(0)
    }

    /// Indexes the spooled request at `spool` (a gzip body is decompressed once, into a second
    /// file beside it). `dockerfile` must resolve to a regular file of the context.
    ///
    /// # Errors
    /// [`IndexError`] naming the entry or limit at fault.
    pub(crate) fn index(
        spool: &Path,
        dockerfile: &str,
        limits: Limits,
    ) -> Result<Self, IndexError> {
        let plain = spool.with_extension("plain.tar");
        let indexed = index::index(spool, &plain, dockerfile, limits)?;
        let spool = Arc::new(File::open(&indexed.spool)?);
        // Names per inode: an inode of one name is no link group.
        let mut names: HashMap<u64, u32> = HashMap::new();
        for node in indexed.nodes.values() {
            if let Kind::File { inode, .. } = node.kind {
                *names.entry(inode).or_default() += 1;
            }
        }
        let mut dirs: HashMap<String, Vec<Entry>> = HashMap::new();
        dirs.insert(String::new(), Vec::new());
        for (path, node) in &indexed.nodes {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            if node.kind == Kind::Dir {
                dirs.entry(path.clone()).or_default();
            }
            let link_group = match node.kind {
                Kind::File { inode, .. } if names[&inode] > 1 => Some(inode),
                _ => None,
            };
            dirs.entry(parent.to_owned())
                .or_default()
                .push(entry(name, node, link_group));
        }
        Ok(Self {
            spool,
            sent: Arc::default(),
            nodes: indexed.nodes,
            dirs,
            config: indexed.config,
            secrets: indexed.secrets,
        })
    }

    /// The first `limit` bytes of the regular file `path` resolves to within the context (the
    /// Dockerfile, for the policy); `None` when it resolves to no file.
    pub(crate) fn head(&self, path: &str, limit: u64) -> Option<Vec<u8>> {
        let resolved = buildkit::links::resolve(path, |p| tree::lookup(&self.nodes, p)).ok()?;
        let Some(Node {
            kind: Kind::File { offset, size, .. },
            ..
        }) = self.nodes.get(&resolved.path)
        else {
            return None;
        };
        let mut out = vec![0; usize::try_from((*size).min(limit)).ok()?];
        self.spool.read_exact_at(&mut out, *offset).ok()?;
        Some(out)
    }

    /// Files and bytes of the context sent to the daemon so far (an incremental transfer sends
    /// only what changed since the last build under the same shared key).
    pub(crate) fn sent(&self) -> (u64, u64) {
        (
            self.sent.files.load(Ordering::Relaxed),
            self.sent.bytes.load(Ordering::Relaxed),
        )
    }

    /// Every path of the context, with its node (for tests).
    #[cfg(test)]
    pub(crate) fn nodes(&self) -> &BTreeMap<String, Node> {
        &self.nodes
    }
}

fn entry(name: &str, node: &Node, link_group: Option<u64>) -> Entry {
    let (kind, size) = match &node.kind {
        Kind::Dir => (EntryKind::Dir, 0),
        Kind::File { size, .. } => (EntryKind::File, *size),
        Kind::Symlink { target } => (
            EntryKind::Symlink {
                target: target.clone(),
            },
            target.len() as u64,
        ),
    };
    Entry {
        name: name.to_owned(),
        kind,
        permissions: node.permissions,
        size,
        mtime_ns: node.mtime_ns,
        link_group,
    }
}

impl SourceTree for Archive {
    fn read_dir(&self, dir: &str) -> io::Result<Vec<Entry>> {
        self.dirs.get(dir).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {dir:?} in the context"),
            )
        })
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        match self.nodes.get(path) {
            Some(Node {
                kind: Kind::File { offset, size, .. },
                ..
            }) => {
                self.sent.files.fetch_add(1, Ordering::Relaxed);
                Ok(Box::new(Span {
                    spool: Arc::clone(&self.spool),
                    sent: Arc::clone(&self.sent),
                    at: *offset,
                    end: offset + size,
                }))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {path:?} in the context"),
            )),
        }
    }
}

#[derive(Default)]
struct Sent {
    files: AtomicU64,
    bytes: AtomicU64,
}

/// A file of the context: positioned reads of its bytes in the spool, no copy, no seek shared
/// with other readers.
struct Span {
    spool: Arc<File>,
    sent: Arc<Sent>,
    at: u64,
    end: u64,
}

impl Read for Span {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.spool.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.at += n as u64;
        self.sent.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
