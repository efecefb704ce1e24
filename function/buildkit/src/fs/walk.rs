//! The listing FileSync sends: fsutil's walk order, filtered, with lazy parents.

use std::io;

use super::patterns::{Filter, Verdict};
use super::{go_mode, EntryKind, SourceTree};
use crate::proto::fs::Stat;

/// One entry of the listing, in the order it is sent; its index is the id the daemon requests
/// file contents by.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Walked {
    pub(crate) stat: Stat,
    /// Only regular files may be requested.
    pub(crate) is_file: bool,
}

/// Walks `tree` in the order fsutil's receiver validates: pre-order, each directory's entries
/// sorted byte-wise by name (so `a/x` comes before `a-b`, unlike a sort of whole paths), every
/// entry after its parent directory. Entries the filter drops are not sent; a directory the filter
/// only descends into is sent just before its first kept descendant. Owners are sent as 0:0 like
/// the Go client, so files `COPY`d without `--chown` belong to root.
///
/// # Errors
/// When a directory cannot be read.
pub(crate) fn walk(tree: &dyn SourceTree, filter: &Filter) -> io::Result<Vec<Walked>> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    walk_dir(tree, filter, "", &mut pending, &mut out)?;
    Ok(out)
}

fn walk_dir(
    tree: &dyn SourceTree,
    filter: &Filter,
    dir: &str,
    pending: &mut Vec<Walked>,
    out: &mut Vec<Walked>,
) -> io::Result<()> {
    let mut entries = tree.read_dir(dir)?;
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
        let verdict = if filter.is_empty() {
            Verdict::Keep
        } else {
            filter.verdict(&path, is_dir)
        };
        if verdict == Verdict::Skip || (verdict == Verdict::Descend && !is_dir) {
            continue;
        }
        let walked = Walked {
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
            out.append(pending);
            out.push(walked);
            if is_dir {
                walk_dir(tree, filter, &path, pending, out)?;
            }
        } else {
            let depth = pending.len();
            pending.push(walked);
            walk_dir(tree, filter, &path, pending, out)?;
            // Still pending: nothing beneath was kept, so the directory is not sent either.
            pending.truncate(depth);
        }
    }
    Ok(())
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
}
