//! Entry points for the fuzz targets and the corpus replay (feature `internals`): each runs one
//! parser of this crate on untrusted bytes and panics when an invariant breaks. Not an API.

mod model;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use crate::fs::patterns::{parse_dockerignore, Filter};
use crate::fs::{walk, Entry, EntryKind, SourceTree};
use crate::DockerConfig;
use model::{ModelFilter, ModelPattern};

/// Patterns and paths looked at per input: more only makes an execution slower.
const MAX_ITEMS: usize = 64;

/// Paths checked when an input names none.
const DEFAULT_PATHS: [&str; 12] = [
    "Dockerfile",
    "README.md",
    "a",
    "a/b",
    "a/b/c.txt",
    "a-b",
    "a.txt",
    "docs/keep.txt",
    "docs/x.md",
    "node_modules/x/y.js",
    "src/main.rs",
    "src/gen/z.rs",
];

/// A `.dockerignore` fuzz input: `ignore file \0 paths, one a line \0 include patterns, one a
/// line`; see [`check_dockerignore`].
pub fn fuzz_dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut sections = text.splitn(3, '\0');
    let ignore = sections.next().unwrap_or_default();
    let paths: Vec<String> = sections
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(clean_path)
        .take(MAX_ITEMS)
        .collect();
    let include: Vec<String> = sections
        .next()
        .unwrap_or_default()
        .lines()
        .take(MAX_ITEMS)
        .map(str::to_owned)
        .collect();
    let paths = if paths.is_empty() {
        DEFAULT_PATHS.map(str::to_owned).to_vec()
    } else {
        paths
    };
    check_dockerignore(ignore, &include, &paths);
}

/// A path as a context holds it: clean and relative; `None` when nothing is left.
fn clean_path(line: &str) -> Option<String> {
    let parts: Vec<&str> = line
        .split('/')
        .filter(|part| !matches!(*part, "" | "." | ".."))
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Our `.dockerignore` reading and our walk against the reference model in `model.rs`: the
/// same pattern list, the same patterns refused, and, where the model speaks for every pattern,
/// a walk of a tree holding `paths` (clean, relative) that sends exactly what the model keeps
/// plus the parents of those, in the order fsutil's receiver validates.
///
/// # Panics
/// On any disagreement.
pub fn check_dockerignore(ignore: &str, include: &[String], paths: &[String]) {
    let exclude = parse_dockerignore(ignore);
    assert_eq!(
        exclude,
        model::read_ignore_file(ignore),
        "the ignore file {ignore:?} reads differently"
    );
    let exclude = &exclude[..exclude.len().min(MAX_ITEMS)];
    let ours = Filter::new(include, exclude);
    let model = ModelFilter::new(include, exclude);
    let (ours, model) = match (ours, model) {
        (Ok(ours), Ok(model)) => (ours, model),
        (Err(_), Err(_)) => return,
        (ours, model) => panic!(
            "include {include:?} exclude {exclude:?}: ours {:?}, the model {}",
            ours.err(),
            if model.is_ok() { "accepts" } else { "refuses" }
        ),
    };
    if !model.in_domain() {
        // Still: whatever the patterns, the walk never panics and keeps fsutil's order.
        let tree = MemTree::new(paths);
        check_order(&walked(&tree, &ours));
        return;
    }
    for path in paths {
        let keeps = model.keeps(path);
        for is_dir in [false, true] {
            let verdict = ours.verdict(path, is_dir);
            assert_eq!(
                verdict == crate::Verdict::Keep,
                keeps,
                "{path:?} (dir: {is_dir}) with include {include:?} exclude {exclude:?}: {verdict:?}"
            );
        }
    }
    let tree = MemTree::new(paths);
    let sent = walked(&tree, &ours);
    check_order(&sent);
    let mut expected = BTreeMap::new();
    for (path, is_dir) in &tree.0 {
        if model.keeps(path) {
            expected.insert(path.clone(), *is_dir == EntryKind::Dir);
            let mut parent = path.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                expected.insert(up.to_owned(), true);
                parent = up;
            }
        }
    }
    let mut expected: Vec<(String, bool)> = expected.into_iter().collect();
    expected.sort_by(|a, b| fsutil_order(&a.0, &b.0));
    assert_eq!(
        sent, expected,
        "walk with include {include:?} exclude {exclude:?}"
    );
}

/// The walk's listing as (path, is a directory).
fn walked(tree: &MemTree, filter: &Filter) -> Vec<(String, bool)> {
    walk(tree, filter)
        .expect("an in-memory tree lists")
        .into_iter()
        .map(|w| (w.stat.path, w.stat.mode & (1 << 31) != 0))
        .collect()
}

/// The order fsutil's receiver wants: paths compared element by element, each by its bytes, so
/// a directory comes just before its contents.
pub fn fsutil_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/')
        .map(str::as_bytes)
        .cmp(b.split('/').map(str::as_bytes))
}

/// fsutil's `Validator`, as the protocol notes describe it: every entry's parent was sent as a
/// directory and is still open (pre-order), and names within a directory strictly increase.
///
/// # Panics
/// When `sent` breaks it.
pub fn check_order(sent: &[(String, bool)]) {
    // Open directories from the root down, each with the last name sent in it.
    let mut open: Vec<(String, Option<String>)> = vec![(String::new(), None)];
    for (path, is_dir) in sent {
        assert!(
            !path.is_empty() && !path.starts_with('/') && !path.ends_with('/'),
            "unclean path {path:?}"
        );
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        assert!(!matches!(name, "" | "." | ".."), "unclean path {path:?}");
        while open.last().is_some_and(|(dir, _)| dir != parent) {
            open.pop();
        }
        let (_, last) = open.last_mut().unwrap_or_else(|| {
            panic!("{path:?}: its parent was not sent as a directory, or was left already")
        });
        assert!(
            last.as_deref()
                .is_none_or(|last| last.as_bytes() < name.as_bytes()),
            "{path:?} out of order after {last:?}"
        );
        *last = Some(name.to_owned());
        if *is_dir {
            open.push((path.clone(), None));
        }
    }
}

/// An in-memory tree: paths to kinds, every proper prefix of a path a directory, and the link
/// group of files that are hardlinks of one another. Shared with the walk's unit tests.
pub(crate) struct MemTree(BTreeMap<String, EntryKind>, BTreeMap<String, u64>);

impl MemTree {
    /// The given paths as files (any string is a path: the fuzz targets' trees).
    pub(crate) fn new<S: AsRef<str>>(paths: &[S]) -> Self {
        let mut tree = Self(BTreeMap::new(), BTreeMap::new());
        for path in paths {
            tree.add(path.as_ref(), EntryKind::File);
        }
        tree
    }

    /// Paths as written in tests: `dir/` a directory, `link -> target` a symlink, `name == file`
    /// a hardlink of an earlier-listed file, the rest files.
    #[cfg(test)]
    pub(crate) fn parse(specs: &[&str]) -> Self {
        let mut tree = Self(BTreeMap::new(), BTreeMap::new());
        for spec in specs {
            if let Some((name, file)) = spec.split_once(" == ") {
                let next = tree.1.len() as u64;
                let group = *tree.1.entry(file.to_owned()).or_insert(next);
                tree.1.insert(name.to_owned(), group);
                tree.add(name, EntryKind::File);
                continue;
            }
            match (spec.strip_suffix('/'), spec.split_once(" -> ")) {
                (Some(dir), _) => tree.add(dir, EntryKind::Dir),
                (None, Some((link, target))) => tree.add(
                    link,
                    EntryKind::Symlink {
                        target: target.to_owned(),
                    },
                ),
                (None, None) => tree.add(spec, EntryKind::File),
            }
        }
        tree
    }

    fn add(&mut self, path: &str, kind: EntryKind) {
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            self.0.insert(path[..at + slash].to_owned(), EntryKind::Dir);
            at += slash + 1;
        }
        self.0.entry(path.to_owned()).or_insert(kind);
    }
}

impl SourceTree for MemTree {
    fn read_dir(&self, dir: &str) -> io::Result<Vec<Entry>> {
        // Reverse order on purpose: the walk must sort, not trust the tree's order.
        Ok(self
            .0
            .iter()
            .rev()
            .filter_map(|(path, kind)| {
                let name = match path.rsplit_once('/') {
                    Some((parent, name)) if parent == dir => name,
                    None if dir.is_empty() => path,
                    _ => return None,
                };
                let permissions = if *kind == EntryKind::Dir {
                    0o755
                } else {
                    0o644
                };
                Some(Entry {
                    name: name.to_owned(),
                    kind: kind.clone(),
                    permissions,
                    size: 3,
                    mtime_ns: 7,
                    link_group: self.1.get(path).copied(),
                })
            })
            .collect())
    }

    fn open(&self, _path: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::empty()))
    }
}

/// Every pattern the model refuses is refused by ours, and the other way round: exposed for the
/// property tests of callers that generate their own patterns.
///
/// # Panics
/// On a disagreement.
pub fn check_pattern_syntax(pattern: &str) {
    let ours = Filter::new(&[], &[pattern.to_owned()]).is_ok();
    let model = ModelPattern::new(pattern).is_ok();
    assert_eq!(ours, model, "pattern {pattern:?}: ours accepts it: {ours}");
}

/// A Docker `config.json`: parsed, or refused with an error that quotes nothing of the file but
/// its keys; once parsed, every host's credentials and push header come without a panic, the
/// header is base64url of a JSON object, and an `auth` entry's user and password come back as
/// decoded. Hosts served by a credential helper are not looked up (that would run a program).
///
/// # Panics
/// On a violation.
pub fn fuzz_docker_config(data: &[u8]) {
    use base64::Engine as _;
    use futures_util::FutureExt as _;

    let config = match DockerConfig::from_json(data, Path::new("config.json")) {
        Ok(config) => config,
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.starts_with("invalid docker config config.json: ")
                    || message.starts_with("docker config config.json: auth for "),
                "{message}"
            );
            return;
        }
    };
    if config.has_helpers() {
        return;
    }
    let mut hosts = config.hosts();
    hosts.extend(
        [
            "docker.io",
            "registry-1.docker.io",
            "127.0.0.1:5000",
            "ghcr.io",
        ]
        .map(str::to_owned),
    );
    for host in hosts.iter().take(MAX_ITEMS) {
        // Without a helper nothing is awaited: the lookups are ready at their first poll.
        let credentials = (config.credentials(host).now_or_never())
            .expect("no helper is run, so nothing waits")
            .expect("no helper is run");
        let header = (config.registry_auth_header(host).now_or_never())
            .expect("no helper is run, so nothing waits")
            .expect("no helper is run");
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(&header)
            .unwrap_or_else(|e| panic!("header {header:?} for {host:?}: {e}"));
        let json: serde_json::Value = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("header {header:?} for {host:?}: {e}"));
        let object = json.as_object().expect("an AuthConfig object");
        assert_eq!(
            credentials.is_anonymous(),
            object.is_empty(),
            "{host:?}: credentials {credentials:?} but header {json}"
        );
        if !credentials.username.is_empty() {
            assert_eq!(
                object.get("username").and_then(|v| v.as_str()),
                Some(credentials.username.as_str())
            );
        }
    }
}
