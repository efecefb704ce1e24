//! A directory on disk as a [`SourceTree`].

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Entry, EntryKind, SourceTree};

/// Serves the directory at `root`. Symlinks are sent as symlinks, never followed.
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    /// A tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

impl SourceTree for DirTree {
    fn read_dir(&self, dir: &str) -> io::Result<Vec<Entry>> {
        let path = self.path(dir);
        let mut entries = Vec::new();
        for item in fs::read_dir(&path)? {
            let item = item?;
            let name = item.file_name().into_string().map_err(|raw| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file name {raw:?} in {} is not UTF-8", path.display()),
                )
            })?;
            entries.push(entry(name, &item.path())?);
        }
        Ok(entries)
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(self.path(path))?))
    }
}

fn entry(name: String, path: &Path) -> io::Result<Entry> {
    let meta = fs::symlink_metadata(path)?;
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_file() {
        EntryKind::File
    } else if file_type.is_symlink() {
        let target = fs::read_link(path)?;
        let target = target.into_os_string().into_string().map_err(|raw| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("symlink target {raw:?} is not UTF-8"),
            )
        })?;
        EntryKind::Symlink { target }
    } else {
        EntryKind::Other
    };
    Ok(Entry {
        name,
        kind,
        permissions: meta.permissions().mode() & 0o7777,
        size: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        // The inode number alone, as fsutil keys them: a context spans one file system.
        link_group: (file_type.is_file() && meta.nlink() > 1).then(|| meta.ino()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_one_inode_share_a_link_group_and_lone_files_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("a"), "a").unwrap();
        fs::hard_link(root.join("a"), root.join("sub/b")).unwrap();
        fs::write(root.join("lone"), "l").unwrap();
        let tree = DirTree::new(root);
        let group = |dir: &str, name: &str| {
            let entries = tree.read_dir(dir).unwrap();
            entries
                .into_iter()
                .find(|e| e.name == name)
                .unwrap()
                .link_group
        };
        let a = group("", "a");
        assert!(a.is_some());
        assert_eq!(group("sub", "b"), a);
        assert_eq!(group("", "lone"), None);
        assert_eq!(group("", "sub"), None, "directories have no group");
    }
}
