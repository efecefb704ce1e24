//! Resolving a path through the symlinks of a tree, without ever leaving the tree's root.
//!
//! The same rules decide both whether a request's symlinks stay inside its context and which
//! files a follow path (the Dockerfile) brings along, so both use this one function.

use super::{EntryKind, SourceTree};

/// Symlinks followed at most while resolving one path, as Linux's `MAXSYMLINKS`.
pub const MAX_LINK_HOPS: usize = 40;

/// What a path of the tree is, as far as resolution cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Nothing at that path.
    Missing,
    /// A directory.
    Dir,
    /// A file (or anything else that is not a directory or a link).
    File,
    /// A symbolic link, with its target as written.
    Symlink(String),
}

/// Where a path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The clean path it ends at (`""` is the root), relative to the root.
    pub path: String,
    /// What is there.
    pub node: Node,
    /// The symlinks passed through, in order.
    pub links: Vec<String>,
}

/// Why a path cannot be resolved inside the tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A `..` above the root or an absolute link target.
    #[error("leaves the context")]
    Escapes,
    /// More than [`MAX_LINK_HOPS`] symlinks.
    #[error("passes through more than {MAX_LINK_HOPS} symlinks")]
    TooManyLinks,
    /// The resolution spent its whole budget (see [`resolve_within`]).
    #[error("takes too long to resolve through the archive's links")]
    TooComplex,
}

/// Work one [`resolve`] may do: bytes of the paths it looks up along the way.
pub const DEFAULT_BUDGET: u64 = 16 << 20;

/// Resolves `path` (relative to the root, `/`-separated; may hold `.`, `..` and links) component
/// by component, asking `lookup` what each clean path is. A `..` climbs the path resolved so far,
/// as the kernel does, so a link's `..` is taken from where the link really points. Components
/// past a missing entry or a file are taken as written: such a path names nothing, but it still
/// may not climb out.
///
/// # Errors
/// [`ResolveError::Escapes`] when any step would leave the root; [`ResolveError::TooManyLinks`]
/// for link cycles and chains longer than [`MAX_LINK_HOPS`].
pub fn resolve(path: &str, lookup: impl FnMut(&str) -> Node) -> Result<Resolved, ResolveError> {
    resolve_within(path, &mut DEFAULT_BUDGET.clone(), lookup)
}

/// [`resolve`], charging `budget` with the bytes of every path it looks up: a caller resolving
/// many links (each up to 40 hops of 4096-byte targets) bounds the work of all of them together.
///
/// # Errors
/// As [`resolve`]; [`ResolveError::TooComplex`] when `budget` runs out.
pub fn resolve_within(
    path: &str,
    budget: &mut u64,
    mut lookup: impl FnMut(&str) -> Node,
) -> Result<Resolved, ResolveError> {
    if path.starts_with('/') {
        return Err(ResolveError::Escapes);
    }
    // Components still to walk, the next one last.
    let mut todo: Vec<String> = path.split('/').rev().map(str::to_owned).collect();
    let mut at: Vec<String> = Vec::new();
    let mut links = Vec::new();
    let mut node = Node::Dir;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if at.pop().is_none() {
                    return Err(ResolveError::Escapes);
                }
                node = Node::Dir;
                continue;
            }
            _ => at.push(part),
        }
        let here = at.join("/");
        *budget = budget
            .checked_sub(here.len() as u64 + 1)
            .ok_or(ResolveError::TooComplex)?;
        node = lookup(&here);
        if let Node::Symlink(target) = &node {
            if links.len() == MAX_LINK_HOPS {
                return Err(ResolveError::TooManyLinks);
            }
            if target.starts_with('/') {
                return Err(ResolveError::Escapes);
            }
            todo.extend(target.split('/').rev().map(str::to_owned));
            links.push(here);
            at.pop();
            node = Node::Dir;
        }
    }
    Ok(Resolved {
        path: at.join("/"),
        node,
        links,
    })
}

/// What a follow path brings along, as fsutil adds to the include patterns: each symlink on its
/// way and the path it ends at (nothing when it is no link, or resolves outside the tree).
pub(crate) fn follow(tree: &dyn SourceTree, path: &str) -> Vec<String> {
    let lookup = |at: &str| {
        let (dir, name) = at.rsplit_once('/').unwrap_or(("", at));
        let entry = tree
            .read_dir(dir)
            .ok()
            .and_then(|entries| entries.into_iter().find(|e| e.name == name));
        match entry.map(|e| e.kind) {
            None => Node::Missing,
            Some(EntryKind::Dir) => Node::Dir,
            Some(EntryKind::Symlink { target }) => Node::Symlink(target),
            Some(EntryKind::File | EntryKind::Other) => Node::File,
        }
    };
    match resolve(path, lookup) {
        Ok(resolved) if !resolved.links.is_empty() => {
            let mut paths = resolved.links;
            paths.push(resolved.path);
            paths
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn tree(entries: &[(&str, Node)]) -> BTreeMap<String, Node> {
        entries
            .iter()
            .map(|(p, n)| ((*p).to_owned(), n.clone()))
            .collect()
    }

    fn run(t: &BTreeMap<String, Node>, path: &str) -> Result<Resolved, ResolveError> {
        resolve(path, |p| t.get(p).cloned().unwrap_or(Node::Missing))
    }

    fn link(target: &str) -> Node {
        Node::Symlink(target.to_owned())
    }

    #[test]
    fn follows_links_and_records_them() {
        let t = tree(&[
            ("Dockerfile", link("build/Dockerfile")),
            ("build", Node::Dir),
            ("build/Dockerfile", link("../real/df")),
            ("real", Node::Dir),
            ("real/df", Node::File),
        ]);
        assert_eq!(
            run(&t, "Dockerfile"),
            Ok(Resolved {
                path: "real/df".into(),
                node: Node::File,
                links: vec!["Dockerfile".into(), "build/Dockerfile".into()],
            })
        );
    }

    #[test]
    fn a_chain_of_inside_links_that_climbs_out_together_escapes() {
        // Each link alone stays inside; together they climb one level per link.
        let mut entries = vec![("l0".to_owned(), link("."))];
        for i in 1..15 {
            entries.push((format!("l{i}"), link(&format!("l{}/..", i - 1))));
        }
        let t: BTreeMap<_, _> = entries.into_iter().collect();
        assert_eq!(
            run(&t, "l0"),
            Ok(Resolved {
                path: String::new(),
                node: Node::Dir,
                links: vec!["l0".into()]
            })
        );
        assert_eq!(run(&t, "l1").unwrap_err(), ResolveError::Escapes);
        assert_eq!(
            run(&t, "l14/etc/passwd").unwrap_err(),
            ResolveError::Escapes
        );
    }

    #[test]
    fn dotdot_is_taken_from_where_a_link_points() {
        let t = tree(&[
            ("a", Node::Dir),
            ("a/b", Node::Dir),
            ("up", link("a/b")),
            ("x", Node::File),
        ]);
        // Lexically `up/../x` is `x`; through the link it is `a/x`.
        assert_eq!(run(&t, "up/../x").unwrap().path, "a/x");
        assert_eq!(run(&t, "up/../../..").unwrap_err(), ResolveError::Escapes);
    }

    #[test]
    fn absolute_targets_cycles_and_missing_paths() {
        let t = tree(&[
            ("abs", link("/etc")),
            ("loop1", link("loop2")),
            ("loop2", link("loop1")),
            ("dangling", link("nothing/../../x")),
            ("fine", link("nothing/here")),
        ]);
        assert_eq!(run(&t, "abs").unwrap_err(), ResolveError::Escapes);
        assert_eq!(run(&t, "loop1").unwrap_err(), ResolveError::TooManyLinks);
        assert_eq!(run(&t, "dangling").unwrap_err(), ResolveError::Escapes);
        assert_eq!(run(&t, "fine").unwrap().node, Node::Missing);
        assert_eq!(run(&t, "..").unwrap_err(), ResolveError::Escapes);
        assert_eq!(run(&t, "/x").unwrap_err(), ResolveError::Escapes);
        let mut budget = 10;
        let deep = resolve_within("a/b/c/d/e/f", &mut budget, |_| Node::Dir);
        assert_eq!(deep.unwrap_err(), ResolveError::TooComplex);
        assert_eq!(run(&t, "").unwrap().node, Node::Dir);
    }
}
