//! The documentation holds together: every relative link in every Markdown file of the repository
//! reaches a file that exists (and, with `#anchor`, a heading of it, by GitHub's slugs), and the
//! README stays short. Needs no test bed.
//! Run: `cargo test -p function-builder-tests --test docs`

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

/// The README is the front page: what it is, one request, the pipeline, the quickstart, the test
/// command and links. Everything else lives in `docs/`.
const README_MAX_LINES: usize = 150;

/// Folders never searched, by name: git's own, build output, vendored crates.
const SKIP_NAMES: [&str; 4] = [".git", "target", "vendor", "node_modules"];

/// Folders never searched, by path from the root: shrinkwrapped copies (`deploy/shrinkwrap`
/// writes `build/`), whose links point back into a repository they are not in, and fuzz inputs.
const SKIP_PATHS: [&str; 4] = ["build", "fuzz/corpus", "fuzz/artifacts", "fuzz/coverage"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

#[test]
fn every_relative_link_in_every_markdown_file_resolves() {
    let root = repo();
    let files = markdown_files(&root);
    // A walk that found nothing would pass: make sure it saw the documents it must check.
    for must in ["README.md", "docs/api.md", "cli/README.md"] {
        assert!(
            files.iter().any(|f| f.ends_with(must)),
            "{must} not among the Markdown files found: {files:?}"
        );
    }
    let broken = broken_links(&root, &files);
    assert!(
        broken.is_empty(),
        "{} broken link(s), as file:line: link\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

#[test]
fn the_readme_is_at_most_150_lines() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move detail into docs/"
    );
}

#[test]
fn slugs_are_githubs() {
    let text = "# Offline builds: vendored crates\n\
                ## The BuildKit client (`function/buildkit`)\n\
                ### Settings (environment variables, see stack.yml)\n\
                ## **Bold** and [a link](x.md) — dash\n\
                ```\n# not a heading\n```\n\
                ## Soak\n## Soak\n";
    let got = anchors(text);
    for want in [
        "offline-builds-vendored-crates",
        "the-buildkit-client-functionbuildkit",
        "settings-environment-variables-see-stackyml",
        "bold-and-a-link--dash",
        "soak",
        "soak-1",
    ] {
        assert!(got.contains(want), "{want:?} not in {got:?}");
    }
    assert!(!got.contains("not-a-heading"), "{got:?}");
}

#[test]
fn the_checker_reports_each_broken_link_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/b.md"), "# Title\n\n## A section\n").unwrap();
    std::fs::write(root.join("code.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        root.join("a.md"),
        "# Top\n\
         [ok](docs/b.md) [ok](docs/b.md#a-section) [ok](#top) [ok](./docs/) [ok](code.rs#L1)\n\
         [ok](https://example.com/x.md) [ok](mailto:a@b.c) ![ok](<docs/b.md> \"title\")\n\
         `[code](nowhere.md)` and a [broken](missing.md)\n\
         ```sh\n[fenced](nowhere.md)\n```\n\
         [bad anchor](docs/b.md#nope) [bad self](#bottom) [outside](../x.md)\n\
         [ref]: docs/missing.md\n",
    )
    .unwrap();
    let files = markdown_files(root);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        broken_links(root, &files),
        [
            "a.md:4: missing.md",
            "a.md:8: docs/b.md#nope",
            "a.md:8: #bottom",
            "a.md:8: ../x.md",
            "a.md:9: docs/missing.md",
        ]
    );
}

/// Every `.md` file under `root`, sorted, outside the skipped folders.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            let relative = path.strip_prefix(root).unwrap();
            if kind.is_dir() {
                let name = entry.file_name();
                let skipped = SKIP_NAMES.iter().any(|n| name == *n)
                    || SKIP_PATHS.iter().any(|p| relative == Path::new(p));
                if !skipped {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `file:line: link` for every relative link in `files` that does not resolve inside `root`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut anchors_of: BTreeMap<PathBuf, HashSet<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        for (line, link) in links(&text) {
            if !resolves(root, file, &link, &mut anchors_of) {
                broken.push(format!("{shown}:{line}: {link}"));
            }
        }
    }
    broken
}

/// Whether `link`, found in `file`, names a file (and anchor) inside `root`. Links with a scheme
/// (`https:`, `mailto:`) are not ours to check.
fn resolves(
    root: &Path,
    file: &Path,
    link: &str,
    anchors_of: &mut BTreeMap<PathBuf, HashSet<String>>,
) -> bool {
    if has_scheme(link) || link.starts_with("//") {
        return true;
    }
    let (path, fragment) = link.split_once('#').unwrap_or((link, ""));
    let path = path.split('?').next().unwrap_or_default();
    let path = percent_decode(path);
    let target = if path.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root.join(from_root)
    } else {
        file.parent().unwrap().join(&path)
    };
    let Some(target) = normalise(&target) else {
        return false;
    };
    if !target.starts_with(root) || !target.exists() {
        return false;
    }
    // Anchors are checked in Markdown only; GitHub's `#L10` line anchors of code are not ours.
    if fragment.is_empty() || target.extension().is_none_or(|e| e != "md") {
        return true;
    }
    let anchors = anchors_of
        .entry(target.clone())
        .or_insert_with(|| anchors(&std::fs::read_to_string(&target).unwrap_or_default()));
    anchors.contains(&percent_decode(fragment))
}

fn has_scheme(link: &str) -> bool {
    let Some((scheme, _)) = link.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// `path` with `.` and `..` applied, without touching the file system; `None` when `..` climbs
/// above its start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lines of `text` outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fence: Option<(char, usize)> = None;
    text.lines().enumerate().filter_map(move |(n, line)| {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match (fence, marker) {
            (None, Some(c)) if run >= 3 && indent <= 3 => {
                fence = Some((c, run));
                None
            }
            (Some((c, open)), Some(m))
                if m == c && run >= open && trimmed[run..].trim().is_empty() =>
            {
                fence = None;
                None
            }
            (Some(_), _) => None,
            (None, _) => Some((n + 1, line)),
        }
    })
}

/// `line` without its inline code spans (a backtick run up to the next run of the same length).
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|c| *c == '`').count();
        let ticks = &rest[start..start + run];
        let after = &rest[start + run..];
        match find_run(after, ticks) {
            Some(end) => rest = &after[end + run..],
            // An unmatched run is literal text.
            None => {
                out.push_str(ticks);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where a backtick run of exactly `ticks` starts in `text`.
fn find_run(text: &str, ticks: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(ticks) {
        let at = from + i;
        let end = at + ticks.len();
        let longer = text[end..].starts_with('`') || text[..at].ends_with('`');
        if !longer {
            return Some(at);
        }
        from = end + text[end..].chars().take_while(|c| *c == '`').count();
    }
    None
}

/// The link destinations of `text`, with their line numbers: inline links and images
/// (`[text](dest)`, `![alt](<dest> "title")`) and reference definitions (`[id]: dest`), outside
/// code.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in prose_lines(text) {
        let line = without_code(line);
        let trimmed = line.trim_start();
        let definition = trimmed
            .strip_prefix('[')
            .and_then(|after| after.split_once("]:"))
            .filter(|(label, _)| !label.contains(']'));
        if let Some((_, dest)) = definition {
            if let Some(dest) = dest.split_whitespace().next() {
                found.push((n, dest.trim_matches(['<', '>']).to_owned()));
            }
            continue;
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let (dest, used) = destination(rest);
            if !dest.is_empty() {
                found.push((n, dest));
            }
            rest = &rest[used..];
        }
    }
    found
}

/// The destination at the start of `text` (just after `](`) and how many bytes it took.
fn destination(text: &str) -> (String, usize) {
    let text_trimmed = text.trim_start();
    let skipped = text.len() - text_trimmed.len();
    if let Some(inner) = text_trimmed.strip_prefix('<') {
        return match inner.find('>') {
            Some(end) => (inner[..end].to_owned(), skipped + end + 2),
            None => (String::new(), skipped),
        };
    }
    let mut depth = 0usize;
    for (i, c) in text_trimmed.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return (text_trimmed[..i].to_owned(), skipped + i),
            ')' => depth -= 1,
            c if c.is_whitespace() => return (text_trimmed[..i].to_owned(), skipped + i),
            _ => {}
        }
    }
    (text_trimmed.to_owned(), text.len())
}

/// The anchors GitHub gives the headings of `text`, and any explicit `id`/`name` anchors.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = HashSet::new();
    for (_, line) in prose_lines(text) {
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(i) = rest.find(attr) {
                rest = &rest[i + attr.len()..];
                if let Some(end) = rest.find('"') {
                    anchors.insert(rest[..end].to_owned());
                }
            }
        }
        let Some(title) = heading(line) else {
            continue;
        };
        let base = slug(&title);
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        };
        *count += 1;
        anchors.insert(anchor);
    }
    anchors
}

/// The text of an ATX heading (`## Title ##`), if `line` is one.
fn heading(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.chars().take_while(|c| *c == '#').count();
    let rest = &trimmed[level..];
    if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim();
    let closed = rest.trim_end_matches('#');
    let rest = if closed.is_empty() || closed.ends_with([' ', '\t']) {
        closed.trim_end()
    } else {
        rest
    };
    Some(rest.to_owned())
}

/// GitHub's slug of a heading: its rendered text (links as their text, no code ticks or emphasis
/// stars) lower-cased, punctuation dropped except `-` and `_`, spaces as `-`.
fn slug(title: &str) -> String {
    let mut text = String::new();
    let mut rest = title;
    // `[text](dest)` renders as `text`.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let (_, used) = destination(&rest[close + 2..]);
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        let after = close + 2 + used;
        rest = rest[after..].strip_prefix(')').unwrap_or(&rest[after..]);
    }
    text.push_str(rest);
    text.chars()
        .filter(|c| !matches!(c, '`' | '*'))
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
