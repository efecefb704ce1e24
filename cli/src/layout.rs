//! The build context as a tree of names pointing at files on disk: one folder as it is, or a
//! template with a handler and extra paths laid over it the way `faas-cli build --shrinkwrap`
//! copies them, without copying anything.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One entry of the context.
pub(crate) enum Node {
    /// Children by name; a `BTreeMap` so every walk is in byte order.
    Dir(BTreeMap<String, Node>),
    /// A regular file, read when the tar is written.
    File { source: PathBuf, executable: bool },
    /// A symbolic link, kept as a link.
    Symlink(PathBuf),
}

/// How symlinks found on disk enter the context.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Kept as links, as `docker build` sends them.
    Keep,
    /// Replaced by what they point at, as faas-cli's copy does.
    Follow,
}

/// The context root.
pub(crate) struct Layout {
    root: BTreeMap<String, Node>,
}

impl Layout {
    pub(crate) fn new() -> Self {
        Self {
            root: BTreeMap::new(),
        }
    }

    /// Entries of the context root, in byte order.
    pub(crate) fn root(&self) -> &BTreeMap<String, Node> {
        &self.root
    }

    /// The file at `rel` (slash separated), if it is a regular file.
    pub(crate) fn file(&self, rel: &str) -> Option<&Path> {
        let mut dir = &self.root;
        let mut parts = rel.split('/').peekable();
        while let Some(part) = parts.next() {
            match (dir.get(part)?, parts.peek()) {
                (Node::Dir(children), Some(_)) => dir = children,
                (Node::File { source, .. }, None) => return Some(source),
                _ => return None,
            }
        }
        None
    }

    /// Lays `src` (a file or a folder) at `dest` (slash separated, "" for the root), over
    /// whatever is there: a file replaces a file, a folder merges into a folder. `skip` names
    /// top-level entries of a folder `src` to leave out.
    pub(crate) fn overlay(
        &mut self,
        src: &Path,
        dest: &str,
        links: Links,
        skip: &[&str],
    ) -> Result<()> {
        let parts: Vec<&str> = dest.split('/').filter(|p| !p.is_empty()).collect();
        let mut dir = &mut self.root;
        let mut at = String::new();
        let mut walk = Walk {
            links,
            open: Vec::new(),
        };
        let Some((last, parents)) = parts.split_last() else {
            let meta = fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
            if !meta.is_dir() {
                bail!("{} is not a folder", src.display());
            }
            use std::os::unix::fs::MetadataExt;
            walk.open.push((meta.dev(), meta.ino()));
            return walk.add_dir_entries(&mut self.root, src, "", skip);
        };
        for part in parents {
            at = join(&at, part);
            let node = dir
                .entry((*part).to_owned())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            let Node::Dir(children) = node else {
                bail!("{at} is a file, but {} goes inside it", src.display());
            };
            dir = children;
        }
        walk.add(dir, src, &join(&at, last), last, skip)
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// One overlay's walk over the disk.
struct Walk {
    links: Links,
    /// Device and inode of the folders being walked, outermost first: a followed link back to
    /// one of them would never end.
    open: Vec<(u64, u64)>,
}

impl Walk {
    /// Adds `src` as `name` (context path `rel`) into `dir`.
    fn add(
        &mut self,
        dir: &mut BTreeMap<String, Node>,
        src: &Path,
        rel: &str,
        name: &str,
        skip: &[&str],
    ) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = match self.links {
            Links::Keep => fs::symlink_metadata(src),
            Links::Follow => fs::metadata(src),
        }
        .with_context(|| format!("reading {}", src.display()))?;
        if meta.is_dir() {
            let node = dir
                .entry(name.to_owned())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            let Node::Dir(children) = node else {
                bail!(
                    "{rel} is a file in one layer and a folder in {}",
                    src.display()
                );
            };
            let id = (meta.dev(), meta.ino());
            if self.open.contains(&id) {
                bail!("{} links back to a folder that contains it", src.display());
            }
            self.open.push(id);
            let added = self.add_dir_entries(children, src, rel, skip);
            self.open.pop();
            return added;
        }
        if let Some(Node::Dir(_)) = dir.get(name) {
            bail!(
                "{rel} is a folder in one layer and a file in {}",
                src.display()
            );
        }
        let node = if meta.file_type().is_symlink() {
            let target =
                fs::read_link(src).with_context(|| format!("reading {}", src.display()))?;
            Node::Symlink(target)
        } else if meta.is_file() {
            Node::File {
                source: src.to_owned(),
                executable: meta.permissions().mode() & 0o111 != 0,
            }
        } else {
            // Sockets, fifos and devices are not build context; BuildKit skips them too.
            return Ok(());
        };
        dir.insert(name.to_owned(), node);
        Ok(())
    }

    fn add_dir_entries(
        &mut self,
        dir: &mut BTreeMap<String, Node>,
        src: &Path,
        rel: &str,
        skip: &[&str],
    ) -> Result<()> {
        let entries = fs::read_dir(src).with_context(|| format!("reading {}", src.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", src.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                bail!("{}: file names must be UTF-8", entry.path().display());
            };
            if skip.contains(&name) {
                continue;
            }
            self.add(dir, &entry.path(), &join(rel, name), name, &[])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn listing(dir: &BTreeMap<String, Node>, prefix: &str, out: &mut Vec<String>) {
        for (name, node) in dir {
            let rel = join(prefix, name);
            match node {
                Node::Dir(children) => {
                    out.push(format!("{rel}/"));
                    listing(children, &rel, out);
                }
                Node::File { source, .. } => {
                    out.push(format!("{rel} = {}", fs::read_to_string(source).unwrap()))
                }
                Node::Symlink(target) => out.push(format!("{rel} -> {}", target.display())),
            }
        }
    }

    #[test]
    fn later_layers_replace_files_and_merge_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        write(t, "template/Dockerfile", "template");
        write(t, "template/function/handler.py", "scaffold");
        write(t, "template/function/keep.txt", "kept");
        write(t, "handler/handler.py", "mine");
        write(t, "handler/build/junk", "skipped");
        write(t, "common/lib.txt", "shared");
        std::os::unix::fs::symlink("../common/lib.txt", t.join("handler/link")).unwrap();

        let mut layout = Layout::new();
        layout
            .overlay(&t.join("template"), "", Links::Follow, &[])
            .unwrap();
        layout
            .overlay(
                &t.join("handler"),
                "function",
                Links::Follow,
                &["build", "template"],
            )
            .unwrap();
        layout
            .overlay(&t.join("common"), "function/common", Links::Follow, &[])
            .unwrap();
        let mut out = Vec::new();
        listing(layout.root(), "", &mut out);
        assert_eq!(
            out,
            [
                "Dockerfile = template",
                "function/",
                "function/common/",
                "function/common/lib.txt = shared",
                "function/handler.py = mine",
                "function/keep.txt = kept",
                "function/link = shared",
            ]
        );
        assert_eq!(
            layout.file("function/keep.txt"),
            Some(&*t.join("template/function/keep.txt"))
        );
        assert_eq!(layout.file("function"), None);
    }

    #[test]
    fn keeps_links_as_links_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "ctx/a", "a");
        std::os::unix::fs::symlink("a", tmp.path().join("ctx/b")).unwrap();
        let mut layout = Layout::new();
        layout
            .overlay(&tmp.path().join("ctx"), "", Links::Keep, &[])
            .unwrap();
        let mut out = Vec::new();
        listing(layout.root(), "", &mut out);
        assert_eq!(out, ["a = a", "b -> a"]);
    }

    #[test]
    fn a_followed_link_back_up_is_an_error_not_an_endless_walk() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "ctx/sub/a", "a");
        std::os::unix::fs::symlink("..", tmp.path().join("ctx/sub/up")).unwrap();
        let mut layout = Layout::new();
        let err = layout
            .overlay(&tmp.path().join("ctx"), "", Links::Follow, &[])
            .unwrap_err();
        let want = format!(
            "{} links back to a folder that contains it",
            tmp.path().join("ctx/sub/up").display()
        );
        assert_eq!(err.to_string(), want);
        // Kept as a link, it is just a link.
        let mut layout = Layout::new();
        layout
            .overlay(&tmp.path().join("ctx"), "", Links::Keep, &[])
            .unwrap();
    }

    #[test]
    fn a_file_over_a_folder_is_an_error_naming_both() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "one/x/y", "y");
        write(tmp.path(), "two/x", "x");
        let mut layout = Layout::new();
        layout
            .overlay(&tmp.path().join("one"), "", Links::Follow, &[])
            .unwrap();
        let err = layout
            .overlay(&tmp.path().join("two"), "", Links::Follow, &[])
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x is a folder in one layer and a file in "),
            "{err}"
        );
    }
}
