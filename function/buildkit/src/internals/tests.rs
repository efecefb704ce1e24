//! Properties of the context's paths: `.dockerignore` patterns against the reference model,
//! pattern cleaning against Go's `filepath.Clean`, the walk in fsutil's order, and link
//! resolution against the kernel's own.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::model;
use super::{check_dockerignore, check_order, check_pattern_syntax, fsutil_order, walked, MemTree};
use crate::fs::links::{self, Node};
use crate::fs::patterns::{self, Filter};

fn one_of(pieces: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(pieces).prop_map(str::to_owned)
}

/// A path of 1 to 3 names.
fn path(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(one_of(names), 1..4).prop_map(|p| p.join("/"))
}

/// A `.dockerignore` line: mostly inside the model's domain, sometimes outside it.
fn pattern_line() -> impl Strategy<Value = String> {
    let element = one_of(&[
        "a", "b", "docs", "x.md", "*", "**", "*.md", "?", "[ab]", "[a-c]x", "\\*", "..", ".",
        "a*b", "**x", "[^a]",
    ]);
    (
        one_of(&["", "", "", "!", "/", "./", " ", "!/"]),
        prop::collection::vec(element, 1..4),
    )
        .prop_map(|(prefix, elements)| format!("{prefix}{}", elements.join("/")))
}

const NAMES: &[&str] = &["a", "b", "docs", "x.md", "c", "ab", "a-b", "axb", "*"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn dockerignore_agrees_with_the_reference_model(
        exclude in prop::collection::vec(pattern_line(), 0..5),
        include in prop::collection::vec(pattern_line(), 0..3),
        paths in prop::collection::vec(path(NAMES), 1..12),
        comment in any::<bool>(),
    ) {
        let mut text = exclude.join("\n");
        if comment {
            text = format!("\u{feff}# a comment\n\n{text}\r\n");
        }
        check_dockerignore(&text, &include, &paths);
    }

    #[test]
    fn pattern_syntax_agrees_with_go(pieces in prop::collection::vec(
        one_of(&["a", "z", "[", "]", "^", "-", "\\", "*", "!", "/", "é", " ", "."]), 0..8,
    )) {
        check_pattern_syntax(&pieces.concat());
    }

    #[test]
    fn patterns_are_cleaned_as_go_cleans_them(pieces in prop::collection::vec(
        one_of(&["a", "b", ".", "..", "", "/", "//"]), 0..8,
    )) {
        let raw = pieces.concat();
        let cleaned = patterns::clean(&raw);
        prop_assert_eq!(&cleaned, &model::go_clean(&raw), "{:?}", raw);
        prop_assert_eq!(&patterns::clean(&cleaned), &cleaned, "not idempotent");
        let rooted = cleaned.starts_with('/');
        let body = cleaned.trim_start_matches('/');
        prop_assert!(cleaned == "." || body.is_empty() || body.split('/').all(|p| !p.is_empty() && p != "."));
        // A `..` survives only at the front of a relative path.
        let parts: Vec<&str> = body.split('/').collect();
        let leading = parts.iter().take_while(|p| **p == "..").count();
        prop_assert!(parts[leading..].iter().all(|p| *p != ".."), "{}", cleaned);
        prop_assert!(!rooted || leading == 0, "{}", cleaned);
    }

    #[test]
    fn the_walk_sends_everything_in_fsutil_order(paths in prop::collection::vec(
        path(&["a", "a-b", "a.txt", "b", "A", "~", "é", "a b", "a0"]), 1..16,
    )) {
        let tree = MemTree::new(&paths);
        let sent = walked(&tree, &Filter::new(&[], &[]).unwrap());
        check_order(&sent);
        let mut all: Vec<String> = tree.0.keys().cloned().collect();
        all.sort_by(|a, b| fsutil_order(a, b));
        let sent: Vec<String> = sent.into_iter().map(|(path, _)| path).collect();
        prop_assert_eq!(sent, all);
    }
}

/// One entry of a tree for link resolution.
#[derive(Debug, Clone)]
enum Made {
    Dir,
    File,
    Link(String),
}

fn made() -> impl Strategy<Value = Made> {
    let target = prop::collection::vec(one_of(&["..", ".", "a", "b", "l", "m", ""]), 1..5)
        .prop_map(|p| p.join("/"));
    prop_oneof![
        Just(Made::Dir),
        Just(Made::File),
        target.prop_map(Made::Link),
        Just(Made::Link("/tmp".to_owned())),
    ]
}

/// Lays `entries` out under `root`, skipping those whose parent is not a directory; returns
/// what resolution looks up.
fn lay_out(root: &Path, entries: &[(String, Made)]) -> BTreeMap<String, Node> {
    let mut tree = BTreeMap::new();
    for (path, made) in entries {
        if tree.contains_key(path) {
            continue;
        }
        let parents_are_dirs = path
            .match_indices('/')
            .all(|(i, _)| matches!(tree.get(&path[..i]), None | Some(Node::Dir)));
        if !parents_are_dirs {
            continue;
        }
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            let parent = &path[..at + slash];
            if !tree.contains_key(parent) {
                std::fs::create_dir(root.join(parent)).unwrap();
                tree.insert(parent.to_owned(), Node::Dir);
            }
            at += slash + 1;
        }
        let place = root.join(path);
        let node = match made {
            Made::Dir => {
                std::fs::create_dir(&place).unwrap();
                Node::Dir
            }
            Made::File => {
                std::fs::write(&place, "x").unwrap();
                Node::File
            }
            // An empty target is no link the kernel can make.
            Made::Link(target) if target.is_empty() => continue,
            Made::Link(target) => {
                std::os::unix::fs::symlink(target, &place).unwrap();
                Node::Symlink(target.clone())
            }
        };
        tree.insert(path.clone(), node);
    }
    tree
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever the links, a path the kernel resolves outside the root is refused, and one both
    /// resolve ends where the kernel ends.
    #[test]
    fn links_resolve_where_the_kernel_resolves_them(
        entries in prop::collection::vec((path(&["a", "b", "l", "m"]), made()), 0..10),
        queries in prop::collection::vec(
            prop::collection::vec(one_of(&["a", "b", "l", "m", "..", ".", "x"]), 1..5)
                .prop_map(|p| p.join("/")),
            1..8,
        ),
    ) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("ctx");
        std::fs::create_dir(&root).unwrap();
        let tree = lay_out(&root, &entries);
        let root = root.canonicalize().unwrap();
        let queries = queries.iter().map(String::as_str).chain(tree.keys().map(String::as_str));
        for query in queries {
            let ours = links::resolve(query, |p| match tree.get(p) {
                None if p.is_empty() => Node::Dir,
                None => Node::Missing,
                Some(node) => node.clone(),
            });
            let Ok(real) = root.join(query).canonicalize() else { continue };
            if !real.starts_with(&root) {
                prop_assert!(ours.is_err(), "{:?} leaves the root for {}", query, real.display());
                continue;
            }
            if let Ok(resolved) = ours {
                let ends = if resolved.path.is_empty() { root.clone() } else { root.join(&resolved.path) };
                prop_assert_eq!(&real, &ends, "{:?} with {:?}", query, tree);
                prop_assert_eq!(resolved.node == Node::Dir, real.is_dir(), "{:?}", query);
            }
        }
    }
}
