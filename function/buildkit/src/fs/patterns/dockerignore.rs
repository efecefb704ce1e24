//! `.dockerignore` files read as moby reads them, and the lexical cleaning (Go's
//! `filepath.Clean`) that every pattern gets.

/// Parses a `.dockerignore` file the way moby's `ignorefile.ReadAll` does: a UTF-8 BOM is
/// stripped, lines starting with `#` (before trimming) are comments, the rest are trimmed, blank
/// ones dropped, and each pattern (after a `!`) is cleaned like Go's `filepath.Clean` with one
/// leading `/` removed. Nothing else is dropped: `.` stays `.` (it matches no entry) and a lone
/// `!` stays `!` so that [`Filter::new`] rejects it, as Docker does.
pub fn parse_dockerignore(content: &str) -> Vec<String> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut patterns = Vec::new();
    for line in content.lines().filter(|line| !line.starts_with('#')) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (bang, body) = match line.strip_prefix('!') {
            Some(rest) => ("!", rest.trim()),
            None => ("", line),
        };
        let mut body = if body.is_empty() {
            String::new()
        } else {
            clean(body)
        };
        if body.len() > 1 && body.starts_with('/') {
            body.remove(0);
        }
        patterns.push(format!("{bang}{body}"));
    }
    patterns
}

/// Go's `filepath.Clean` for `/`-separated paths: the shortest equivalent path, lexically.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            // `/..` is `/`; a relative path keeps its leading `..`s.
            ".." if rooted => {}
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_strips_bom_comments_and_blank_lines() {
        let parsed = parse_dockerignore(
            "\u{feff}# comment\n\n  \n*.md\r\n  # not a comment\n\tsecret.txt  \n",
        );
        assert_eq!(parsed, ["*.md", "# not a comment", "secret.txt"]);
    }

    #[test]
    fn dockerignore_cleans_patterns_and_keeps_negation() {
        let parsed = parse_dockerignore(
            "/leading\n./x\na//b/../c/\n!README.md\n! /docs/keep.txt\n/\n./\n!\n../up",
        );
        assert_eq!(
            parsed,
            [
                "leading",
                "x",
                "a/c",
                "!README.md",
                "!docs/keep.txt",
                "/",
                ".",
                "!",
                "../up"
            ]
        );
    }

    #[test]
    fn clean_matches_go_filepath_clean() {
        #[rustfmt::skip]
        let cases = [
            ("", "."), (".", "."), ("./", "."), ("a/./b", "a/b"), ("a//b/", "a/b"), ("a/../..", ".."),
            ("../a/..", ".."), ("/../a", "/a"), ("/", "/"), ("//a", "/a"), ("a/b/../../c", "c"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }
}
