//! The listing FileSync sends: fsutil's walk order, filtered, with lazy parents.

use std::collections::{hash_map, HashMap};
use std::io;

use super::patterns::{Filter, Verdict};
use super::{go_mode, EntryKind, SourceTree};
use crate::proto::fs::Stat;

/// One entry of the listing, in the order it is sent; its index is the id the daemon requests
/// file contents by.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Walked {
    pub(crate) stat: Stat,
    /// Only regular files sent with their data may be requested.
    pub(crate) is_file: bool,
}

/// Walks `tree` in the order fsutil's receiver validates: pre-order, each directory's entries
/// sorted byte-wise by name (so `a/x` comes before `a-b`, unlike a sort of whole paths), every
/// entry after its parent directory. Entries the filter drops are not sent; a directory the filter
/// only descends into is sent just before its first kept descendant. Owners are sent as 0:0 like
/// the Go client, so files `COPY`d without `--chown` belong to root.
///
/// Of the files of one link group, the first one sent carries the data; each later one is a STAT
/// with `linkname` naming it, as fsutil sends a file whose inode it has sent before (and as its
/// filter re-points links whose first name was filtered out). fsutil's receiver refuses a
/// `linkname` naming anything but an earlier file sent with data, and BuildKit's content hash
/// gives each link its source's digest.
///
/// # Errors
/// When a directory cannot be read.
pub(crate) fn walk(tree: &dyn SourceTree, filter: &Filter) -> io::Result<Vec<Walked>> {
    let mut walker = Walker {
        tree,
        filter,
        pending: Vec::new(),
        first_sent: HashMap::new(),
        out: Vec::new(),
    };
    walker.walk_dir("")?;
    Ok(walker.out)
}

struct Walker<'a> {
    tree: &'a dyn SourceTree,
    filter: &'a Filter,
    /// Directories the filter only descends into, sent with their first kept descendant.
    pending: Vec<Walked>,
    /// The path sent first of each link group.
    first_sent: HashMap<u64, String>,
    out: Vec<Walked>,
}

impl Walker<'_> {
    fn walk_dir(&mut self, dir: &str) -> io::Result<()> {
        let mut entries = self.tree.read_dir(dir)?;
        entries.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        for entry in entries {
            if entry.kind == EntryKind::Other {
                tracing::debug!(dir, name = %entry.name, "skipping a fifo, socket or device");
                continue;
            }
            let path = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            let is_dir = entry.kind == EntryKind::Dir;
            let verdict = if self.filter.is_empty() {
                Verdict::Keep
            } else {
                self.filter.verdict(&path, is_dir)
            };
            if verdict == Verdict::Skip || (verdict == Verdict::Descend && !is_dir) {
                continue;
            }
            let mut walked = Walked {
                stat: Stat {
                    path: path.clone(),
                    mode: go_mode(&entry.kind, entry.permissions),
                    uid: 0,
                    gid: 0,
                    // fsutil sends no size for directories, whatever the tree reports.
                    size: if is_dir {
                        0
                    } else {
                        i64::try_from(entry.size).unwrap_or(i64::MAX)
                    },
                    mod_time: entry.mtime_ns,
                    linkname: match &entry.kind {
                        EntryKind::Symlink { target } => target.clone(),
                        _ => String::new(),
                    },
                    ..Stat::default()
                },
                is_file: entry.kind == EntryKind::File,
            };
            if verdict == Verdict::Keep {
                if let (EntryKind::File, Some(group)) = (&entry.kind, entry.link_group) {
                    self.link_to_first(group, &mut walked);
                }
                self.out.append(&mut self.pending);
                self.out.push(walked);
                if is_dir {
                    self.walk_dir(&path)?;
                }
            } else {
                let depth = self.pending.len();
                self.pending.push(walked);
                self.walk_dir(&path)?;
                // Still pending: nothing beneath was kept, so the directory is not sent either.
                self.pending.truncate(depth);
            }
        }
        Ok(())
    }

    /// Makes a kept file of `group` a hardlink to the group's first file sent, or that file.
    fn link_to_first(&mut self, group: u64, walked: &mut Walked) {
        match self.first_sent.entry(group) {
            hash_map::Entry::Occupied(first) => {
                // The receiver links it to the file it already has and never requests it. The
                // size stays: fsutil's stat keeps it for a link too (its `Size = 0` is overwritten),
                // and the receiver compares it with what it kept from the last transfer; a link
                // it took for changed would be linked again over the same inode, a rename that
                // does nothing, and BuildKit v0.8 then leaves a `.tmp.*` name in the context.
                walked.stat.linkname = first.get().clone();
                walked.is_file = false;
            }
            hash_map::Entry::Vacant(first) => {
                first.insert(walked.stat.path.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internals::MemTree;

    fn paths(tree: &MemTree, include: &[&str], exclude: &[&str]) -> Vec<String> {
        let own = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let filter = Filter::new(&own(include), &own(exclude)).unwrap();
        walk(tree, &filter)
            .unwrap()
            .into_iter()
            .map(|w| w.stat.path)
            .collect()
    }

    #[test]
    fn names_sort_per_directory_not_as_whole_paths() {
        let tree = MemTree::parse(&["a/x", "a-b", "a.txt", "Dockerfile", "b/", "a/y/z"]);
        // '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f), so a whole-path sort would put
        // `a-b` and `a.txt` before `a/x`; fsutil's receiver rejects that as out of order.
        assert_eq!(
            paths(&tree, &[], &[]),
            [
                "Dockerfile",
                "a",
                "a/x",
                "a/y",
                "a/y/z",
                "a-b",
                "a.txt",
                "b"
            ]
        );
    }

    #[test]
    fn stats_carry_go_modes_root_owner_and_link_targets() {
        let tree = MemTree::parse(&["dir/", "link -> dir/file", "dir/file"]);
        let walked = walk(&tree, &Filter::new(&[], &[]).unwrap()).unwrap();
        let stats: Vec<_> = walked
            .iter()
            .map(|w| (w.stat.path.as_str(), w.stat.mode, w.is_file))
            .collect();
        assert_eq!(
            stats,
            [
                ("dir", 0x8000_01ed, false),
                ("dir/file", 0o644, true),
                ("link", 0x0800_01a4, false)
            ]
        );
        assert!(walked
            .iter()
            .all(|w| w.stat.uid == 0 && w.stat.gid == 0 && w.stat.mod_time == 7));
        assert_eq!(walked[2].stat.linkname, "dir/file");
        assert_eq!(walked[0].stat.size, 0, "directories have no size");
    }

    #[test]
    fn excluded_entries_are_not_sent_and_parents_of_exceptions_are() {
        let tree = MemTree::parse(&[
            "Dockerfile",
            "docs/a.md",
            "docs/keep.txt",
            "node_modules/x/y.js",
            "src/main.rs",
        ]);
        let exclude = ["docs", "!docs/keep.txt", "node_modules"];
        assert_eq!(
            paths(&tree, &[], &exclude),
            ["Dockerfile", "docs", "docs/keep.txt", "src", "src/main.rs"]
        );
    }

    #[test]
    fn include_patterns_send_lazy_parents_only_for_kept_children() {
        let tree = MemTree::parse(&[
            "Dockerfile",
            "sub/Dockerfile.prod",
            "sub/other",
            "empty/",
            "deep/er/x",
        ]);
        assert_eq!(
            paths(&tree, &["sub/Dockerfile.prod"], &[]),
            ["sub", "sub/Dockerfile.prod"]
        );
        assert_eq!(
            paths(&tree, &["**/x"], &[]),
            ["deep", "deep/er", "deep/er/x"]
        );
        assert_eq!(paths(&tree, &["nothing"], &[]), Vec::<String>::new());
    }

    /// (path, linkname, size, requestable) of every file sent: a link has its file's size, as
    /// fsutil's stat gives it, and cannot be requested.
    fn files(
        tree: &MemTree,
        include: &[&str],
        exclude: &[&str],
    ) -> Vec<(String, String, i64, bool)> {
        let own = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let filter = Filter::new(&own(include), &own(exclude)).unwrap();
        walk(tree, &filter)
            .unwrap()
            .into_iter()
            .filter(|w| w.stat.mode & 0x8800_0000 == 0)
            .map(|w| (w.stat.path, w.stat.linkname, w.stat.size, w.is_file))
            .collect()
    }

    fn sent(path: &str, linkname: &str) -> (String, String, i64, bool) {
        let data = linkname.is_empty();
        (path.to_owned(), linkname.to_owned(), 3, data)
    }

    #[test]
    fn the_first_file_sent_of_a_link_group_carries_the_data_in_walk_order() {
        // Listed in the tree with `z/a` first, but walked `b/x` first: walk order decides.
        let tree = MemTree::parse(&["z/a", "b/x == z/a", "c == z/a", "lone", "d/y == lone"]);
        assert_eq!(
            files(&tree, &[], &[]),
            [
                sent("b/x", ""),
                sent("c", "b/x"),
                sent("d/y", ""),
                sent("lone", "d/y"),
                sent("z/a", "b/x"),
            ]
        );
    }

    #[test]
    fn a_filtered_first_member_passes_the_data_to_the_next_kept_one() {
        let tree = MemTree::parse(&["a", "b == a", "c == a", "sub/d == a", "Dockerfile"]);
        assert_eq!(
            files(&tree, &[], &["a"]),
            [
                sent("Dockerfile", ""),
                sent("b", ""),
                sent("c", "b"),
                sent("sub/d", "b")
            ]
        );
        // Include patterns (and follow paths, which become include patterns) likewise.
        assert_eq!(
            files(&tree, &["sub", "c"], &[]),
            [sent("c", ""), sent("sub/d", "c")]
        );
        assert_eq!(files(&tree, &["sub/d"], &[]), [sent("sub/d", "")]);
        // A group whose every member is filtered out sends nothing.
        assert_eq!(
            files(&tree, &[], &["a", "b", "c", "sub"]),
            [sent("Dockerfile", "")]
        );
    }
}
