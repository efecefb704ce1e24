//! What FileSync serves from: anything that can list a directory and open a file.

use std::io::{self, Read};

/// A tree of files the daemon can read through FileSync: a directory on disk ([`crate::DirTree`]),
/// or anything else that can list directories and open files (e.g. entries of a spooled tar).
///
/// Both methods block; the session calls them on blocking threads, never on the connection task.
pub trait SourceTree: Send + Sync + 'static {
    /// The entries directly inside `dir` (`""` is the root; otherwise a clean relative path with
    /// `/` separators), in any order.
    ///
    /// # Errors
    /// When the directory cannot be read; the transfer then fails with that message.
    fn read_dir(&self, dir: &str) -> io::Result<Vec<Entry>>;

    /// Opens the regular file at `path` for reading.
    ///
    /// # Errors
    /// When the file cannot be opened; the daemon then receives it empty, as with Go's sender.
    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>>;
}

/// One directory entry, with the metadata BuildKit's incremental transfer compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name within its directory (no `/`).
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Unix permission bits, with setuid, setgid and sticky (`mode & 0o7777`).
    pub permissions: u32,
    /// Size in bytes (files), 0 for directories; a symlink's is its target's length.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch. BuildKit decides whether a file
    /// changed by size, mode and this value, never by content.
    pub mtime_ns: i64,
    /// For a regular file that is one of several names of one inode (hardlinks): an id its
    /// other names share, unique within the tree. The walk sends the first name it keeps with the
    /// data and the others as hardlinks to it, as fsutil does for files of one inode number, so
    /// the daemon makes them one inode again. The tree gives every name the same metadata.
    pub link_group: Option<u64>,
}

/// The kinds of entry a build context may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target as written.
    Symlink {
        /// The link's target.
        target: String,
    },
    /// A fifo, socket or device: never sent.
    Other,
}
