//! The shape of the source tree: the builder's modules form no import circle (the pipeline only
//! calls downward), and no source file outgrows 600 lines (tests aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest a source file may be; tests and generated code aside.
const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `.rs` files under `dir`, skipping `target/` and test folders.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | "tests" | "ui" | "build") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The text of a file before its `#[cfg(test)] mod tests`: what the module itself uses.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]\nmod tests") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// The top-level modules of the crate whose `src` is `src` that `text` names through `crate::`,
/// in paths (`crate::intake::prepare`) and in `use crate::{a, b::c}` groups.
fn uses(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(ident));
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|name| modules.contains(name));
    found
}

/// A circle in `graph`, as the path that closes it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Each top-level module of `src` (a `name.rs` or a `name/` folder) and the modules it uses.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(stem.as_str(), "lib" | "main") {
            continue;
        }
        let mut found = Vec::new();
        if path.is_dir() {
            sources(&path, &mut found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path.clone());
        }
        files.entry(stem).or_default().extend(found);
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, paths)| {
            let mut used = BTreeSet::new();
            for path in paths {
                used.extend(uses(&code(path), &modules));
            }
            used.remove(module);
            (module.clone(), used)
        })
        .collect()
}

#[test]
fn the_builders_modules_form_no_import_circle() {
    for src in ["function/src", "function/buildkit/src"] {
        let graph = module_graph(&root().join(src));
        assert!(graph.contains_key("verify") || graph.contains_key("solve"));
        if let Some(circle) = circle(&graph) {
            panic!("{src}: an import circle: {}", circle.join(" → "));
        }
    }
    let graph = module_graph(&root().join("function/src"));
    // The driver's stages in order: none names a later one.
    let stages = ["intake", "run", "respond"];
    for (i, stage) in stages.iter().enumerate() {
        for later in &stages[i + 1..] {
            assert!(
                !graph[*stage].contains(*later),
                "{stage} uses {later}, a later stage"
            );
        }
    }
    assert!(stages.iter().all(|s| graph["build"].contains(*s)));
}

#[test]
fn the_circle_finder_finds_circles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).to_owned())
                .or_default()
                .insert((*b).to_owned());
        }
        g
    };
    assert_eq!(
        circle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(circle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    let modules: BTreeSet<String> = ["intake", "policy", "id"].map(String::from).into();
    assert_eq!(
        uses(
            "use crate::{intake::x, policy};\nlet a = crate::id::unique();",
            &modules
        ),
        modules
    );
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut files = Vec::new();
    for dir in ["function", "cli/src", "template/rust-http", "tests/src"] {
        sources(&root().join(dir), &mut files);
    }
    assert!(files.len() > 50, "{files:?}");
    let long: Vec<String> = files
        .iter()
        .filter(|path| path.file_name().is_some_and(|n| n != "tests.rs"))
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines}", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}
