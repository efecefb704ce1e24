//! `.dockerignore` parsing and the include/exclude filter of a FileSync walk, with Docker's
//! semantics (moby/patternmatcher, tonistiigi/fsutil `filter.go`), which are not gitignore's: a
//! pattern matches the whole relative path, `foo` is only the top-level `foo`, and a path is also
//! matched when one of its parent directories is.
//!
//! Docker turns each pattern into a Go regexp; here a pattern is a token list run as a small NFA,
//! which also answers the question the walk needs and a regexp cannot: could the pattern match
//! anything *beneath* a directory (so an excluded `node_modules` need not be walked).

use std::fmt;

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

/// A pattern Docker would reject, named as it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub(crate) pattern: String,
    pub(crate) reason: Reason,
}

/// Why a pattern is bad: the cases Go's `filepath.Match` reports as `ErrBadPattern` (which
/// patternmatcher checks every pattern with), plus a lone `!` and a reversed range, which
/// Docker's regexp would fail to compile on the first match of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    UnterminatedClass,
    MisplacedClassChar,
    ReversedRange,
    TrailingBackslash,
    LoneExclamation,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnterminatedClass => "unterminated character class",
            Self::MisplacedClassChar => "'-' or ']' where a character class expects a character",
            Self::ReversedRange => "character class range out of order",
            Self::TrailingBackslash => "trailing backslash escapes nothing",
            Self::LoneExclamation => "exclusion pattern without a path",
        })
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// One step of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: nothing, or anything ending in `/` (Docker's `(.*/)?`).
    AnyDirs,
    /// `**` at the end: anything at all, `/` included.
    AnyRest,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled pattern; `exception` for a `!pattern`.
#[derive(Debug, Clone)]
struct Pattern {
    tokens: Vec<Token>,
    exception: bool,
}

impl Pattern {
    /// Trims and cleans like patternmatcher's `New`: `None` for a blank pattern. The `!` is looked
    /// at after cleaning, as Docker does (so `!./x` stays `./x` and matches nothing).
    fn parse(raw: &str) -> Result<Option<Self>, PatternError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let cleaned = clean(trimmed);
        let error = |reason| PatternError {
            pattern: trimmed.to_owned(),
            reason,
        };
        let (exception, body) = match cleaned.strip_prefix('!') {
            Some("") => return Err(error(Reason::LoneExclamation)),
            Some(body) => (true, body),
            None => (false, cleaned.as_str()),
        };
        let tokens = compile(body).map_err(error)?;
        Ok(Some(Self { tokens, exception }))
    }

    /// patternmatcher's `MatchesOrParentMatches` for one pattern: the path or a parent matches.
    /// One pass: a parent is every prefix that ends just before a `/`.
    fn matches_or_parent(&self, path: &str) -> bool {
        let mut run = Run::new(&self.tokens);
        for c in path.chars() {
            if c == '/' && run.accepts() {
                return true;
            }
            run.step(c);
            if !run.alive() {
                return false;
            }
        }
        run.accepts()
    }

    /// Whether some path beneath `dir` could match. It may say yes too often (a walk that finds
    /// nothing costs time only), never no too often (that would drop files).
    fn could_match_under(&self, dir: &str) -> bool {
        let mut run = Run::new(&self.tokens);
        dir.chars().chain(['/']).for_each(|c| run.step(c));
        run.alive()
    }
}

/// Turns a cleaned pattern into tokens, the way patternmatcher's `compile` reads it, with the
/// syntax checks of `filepath.Match` (whose rules the character classes follow).
fn compile(pattern: &str) -> Result<Vec<Token>, Reason> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                let slash = chars.get(i) == Some(&'/');
                if slash {
                    i += 1;
                }
                let rest = &chars[i..];
                // A leading `**` before plain text takes patternmatcher's suffix fast path, a plain
                // string suffix test: `**.log` matches `a/b.log`, `**foo` matches `barfoo`. (After
                // `**/` that test is what `AnyDirs` does anyway.)
                let suffix = !slash
                    && i == 2
                    && !rest
                        .iter()
                        .any(|c| matches!(c, '*' | '?' | '[' | ']' | '\\'));
                tokens.push(if rest.is_empty() || suffix {
                    Token::AnyRest
                } else {
                    Token::AnyDirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => {
                let escaped = *chars.get(i).ok_or(Reason::TrailingBackslash)?;
                i += 1;
                tokens.push(Token::Lit(escaped));
            }
            '[' => tokens.push(class(&chars, &mut i)?),
            // Everything else is itself, regexp metacharacters included (Docker escapes them).
            _ => tokens.push(Token::Lit(c)),
        }
    }
    Ok(tokens)
}

/// A `[...]` class, `*i` just past the `[`. Only `^` negates: Docker hands the class to Go's
/// regexp, where `[!a]` is the set of `!` and `a`.
fn class(chars: &[char], i: &mut usize) -> Result<Token, Reason> {
    let negated = chars.get(*i) == Some(&'^');
    if negated {
        *i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(*i) == Some(&']') && !ranges.is_empty() {
            *i += 1;
            return Ok(Token::Class { negated, ranges });
        }
        let lo = class_char(chars, i)?;
        let hi = if chars.get(*i) == Some(&'-') {
            *i += 1;
            class_char(chars, i)?
        } else {
            lo
        };
        if lo > hi {
            return Err(Reason::ReversedRange);
        }
        ranges.push((lo, hi));
    }
}

/// One character of a class, `\` escaping the next (Go's `getEsc`).
fn class_char(chars: &[char], i: &mut usize) -> Result<char, Reason> {
    let c = match chars.get(*i) {
        None => return Err(Reason::UnterminatedClass),
        Some('-' | ']') => return Err(Reason::MisplacedClassChar),
        Some('\\') => {
            *i += 1;
            *chars.get(*i).ok_or(Reason::UnterminatedClass)?
        }
        Some(&c) => c,
    };
    *i += 1;
    Ok(c)
}

/// The NFA over a token list: `at[i]` is "token `i` is next", `inside[i]` is "within an
/// `AnyDirs` at `i`, past its start but not at a `/`" (it may not be skipped from there).
struct Run<'a> {
    tokens: &'a [Token],
    at: Vec<bool>,
    inside: Vec<bool>,
    next_at: Vec<bool>,
    next_inside: Vec<bool>,
}

impl<'a> Run<'a> {
    fn new(tokens: &'a [Token]) -> Self {
        let states = vec![false; tokens.len() + 1];
        let mut run = Self {
            tokens,
            at: states.clone(),
            inside: states.clone(),
            next_at: states.clone(),
            next_inside: states,
        };
        run.at[0] = true;
        run.skip_empty();
        run
    }

    /// Tokens that may match nothing can be stepped over; they only lead forward, so one pass.
    fn skip_empty(&mut self) {
        for (i, token) in self.tokens.iter().enumerate() {
            if self.at[i] && matches!(token, Token::Star | Token::AnyDirs | Token::AnyRest) {
                self.at[i + 1] = true;
            }
        }
    }

    fn step(&mut self, c: char) {
        self.next_at.fill(false);
        self.next_inside.fill(false);
        for (i, token) in self.tokens.iter().enumerate() {
            let (at, inside) = (self.at[i], self.inside[i]);
            match token {
                Token::Lit(lit) if at && c == *lit => self.next_at[i + 1] = true,
                Token::One if at && c != '/' => self.next_at[i + 1] = true,
                Token::Class { negated, ranges }
                    if at && ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated =>
                {
                    self.next_at[i + 1] = true;
                }
                Token::Star if at && c != '/' => self.next_at[i] = true,
                Token::AnyRest if at => self.next_at[i] = true,
                Token::AnyDirs if at || inside => {
                    self.next_inside[i] = true;
                    if c == '/' {
                        self.next_at[i + 1] = true;
                    }
                }
                _ => {}
            }
        }
        std::mem::swap(&mut self.at, &mut self.next_at);
        std::mem::swap(&mut self.inside, &mut self.next_inside);
        self.skip_empty();
    }

    fn accepts(&self) -> bool {
        self.at[self.tokens.len()]
    }

    fn alive(&self) -> bool {
        self.at.iter().chain(&self.inside).any(|&state| state)
    }
}

/// Include/exclude filtering of a directory walk, the way fsutil's `FilterFS` does it.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `None` when no include patterns were given. `Some` of an empty list (every pattern blank)
    /// keeps nothing, as in fsutil, whose include matcher exists but matches nothing.
    include: Option<Vec<Pattern>>,
    exclude: Vec<Pattern>,
}

/// What the walk does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send this entry (and for a directory, walk into it).
    Keep,
    /// A directory that is not sent by itself but must be walked: some descendant may be kept
    /// (the walker then sends this directory lazily, just before its first kept descendant).
    Descend,
    /// Neither sent nor (for a directory) walked.
    Skip,
}

impl Filter {
    /// `include`: if non-empty, only paths that match an include pattern, or lie under a
    /// directory that does, are kept. `exclude`: paths that match (or whose parent matches) are
    /// dropped, the last matching pattern wins and `!pattern` re-includes.
    ///
    /// # Errors
    /// The first pattern of either list that Docker would reject.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, PatternError> {
        let compile_all = |raw: &[String]| -> Result<Vec<Pattern>, PatternError> {
            raw.iter()
                .filter_map(|p| Pattern::parse(p).transpose())
                .collect()
        };
        let include = if include.is_empty() {
            None
        } else {
            Some(compile_all(include)?)
        };
        Ok(Self {
            include,
            exclude: compile_all(exclude)?,
        })
    }

    /// True when neither list has a pattern (the walker can skip all checks).
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }

    /// The verdict for `path`, relative to the root, `/`-separated and clean.
    ///
    /// A directory whose own verdict is negative is still walked when a pattern of the other
    /// polarity could match beneath it: only such a pattern can change a descendant's outcome,
    /// since every pattern matching the directory also matches (as a parent) each descendant.
    /// fsutil asks the same question but answers "maybe" for any glob character.
    pub fn verdict(&self, path: &str, is_dir: bool) -> Verdict {
        let mut descend_only = false;
        if let Some(include) = &self.include {
            if !last_match_is_positive(include, path) {
                if !(is_dir && any_under(include, path, false)) {
                    return Verdict::Skip;
                }
                descend_only = true;
            }
        }
        if last_match_is_positive(&self.exclude, path) {
            return if is_dir && any_under(&self.exclude, path, true) {
                Verdict::Descend
            } else {
                Verdict::Skip
            };
        }
        if descend_only {
            Verdict::Descend
        } else {
            Verdict::Keep
        }
    }
}

/// patternmatcher's verdict: the last pattern matching the path (or a parent) decides, `!`
/// meaning no; no match means no. fsutil's walk uses a cached variant of this
/// (`MatchesUsingParentResults`) that can differ when a pattern repeats after an exception.
fn last_match_is_positive(patterns: &[Pattern], path: &str) -> bool {
    patterns
        .iter()
        .rev()
        .find(|p| p.matches_or_parent(path))
        .is_some_and(|p| !p.exception)
}

fn any_under(patterns: &[Pattern], dir: &str, exception: bool) -> bool {
    patterns
        .iter()
        .any(|p| p.exception == exception && p.could_match_under(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Descend, Keep, Skip};

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        let owned = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        Filter::new(&owned(include), &owned(exclude)).expect("valid patterns")
    }

    fn matches(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern)
            .expect("valid")
            .expect("not blank")
            .matches_or_parent(path)
    }

    /// `entries` as `(path, is_dir, verdict)`.
    fn assert_verdicts(f: &Filter, entries: &[(&str, bool, Verdict)]) {
        for &(path, is_dir, want) in entries {
            assert_eq!(f.verdict(path, is_dir), want, "{path} (dir: {is_dir})");
        }
    }

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

    /// Cases from moby/patternmatcher's `TestMatches` table (run there through `MatchesOrParentMatches`).
    #[test]
    fn agrees_with_the_patternmatcher_table() {
        #[rustfmt::skip]
        let cases = [
            ("**", "file", true), ("**", "dir/file/", true), ("**/", "dir/file", true), ("**/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true), ("abc/**", "abc", false), ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file/", true), ("**file", "dir/dir/file", true), ("**/**/*.txt", "file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true), ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("a**/*.txt", "a/dir/dir/file.txt", true), ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt**", "a/file.txt", true), ("a[b-d]e", "ae", false), ("a[b-d]e", "ace", true),
            ("a[^b-d]e", "aze", true), (".*", "foo", false), ("abc.def", "abcZdef", false),
            ("abc?def", "abcdef", false), ("a\\\\", "a\\", true), ("a\\*b", "a*b", true),
            ("**/foo/bar", "foo/bar", true), ("**/.foo", "bar.foo", false), ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(matches(pattern, path), want, "{pattern:?} against {path:?}");
        }
        let f = filter(&[], &["**", "!util/docker/web", "util/docker/web/foo"]);
        assert_verdicts(
            &f,
            &[
                ("util/docker/web/foo", false, Skip),
                ("util/docker/web/bar", false, Keep),
            ],
        );
    }

    #[test]
    fn star_question_and_double_star() {
        assert!(matches("*.go", "a.go") && !matches("*.go", "x/a.go"));
        assert!(matches("?.go", "a.go") && !matches("?.go", "ab.go") && !matches("a?b", "a/b"));
        assert!(matches("**/*.go", "a.go") && matches("**/*.go", "x/y/a.go"));
        assert!(
            matches("a/**/b", "a/b") && matches("a/**/b", "a/x/y/b") && !matches("a/**/b", "a/xb")
        );
        // patternmatcher's suffix fast path: a leading `**` before plain text is a string suffix.
        assert!(
            matches("**.log", "deep/dir/app.log")
                && matches("**foo", "barfoo")
                && !matches("**/foo", "barfoo")
        );
    }

    #[test]
    fn classes_and_escapes() {
        assert!(matches("[abc].txt", "b.txt") && !matches("[abc].txt", "d.txt"));
        assert!(matches("[a-c]x", "cx") && !matches("[a-c]x", "dx"));
        assert!(matches("[^a]x", "bx") && !matches("[^a]x", "ax"));
        // Only `^` negates: Go's regexp reads `[!a]` as the set of `!` and `a`.
        assert!(matches("[!a]x", "!x") && matches("[!a]x", "ax") && !matches("[!a]x", "bx"));
        assert!(matches("[\\]]", "]") && matches("[\\-]", "-") && matches("[é-ë]t", "êt"));
        assert!(matches("\\*", "*") && !matches("\\*", "a"));
        assert!(matches("a\\?b", "a?b") && !matches("a\\?b", "axb"));
    }

    #[test]
    fn a_bare_name_is_top_level_only_but_covers_its_subtree() {
        let f = filter(&[], &["foo", "node_modules"]);
        #[rustfmt::skip]
        assert_verdicts(&f, &[
            ("foo", false, Skip), ("a/foo", false, Keep), ("node_modules", true, Skip),
            ("node_modules/a/b.js", false, Skip), ("src/node_modules", true, Keep),
        ]);
    }

    #[test]
    fn exceptions_reinclude() {
        let f = filter(&[], &["*.md", "!README.md"]);
        assert_verdicts(
            &f,
            &[
                ("README.md", false, Keep),
                ("CHANGELOG.md", false, Skip),
                ("docs/x.md", false, Keep),
            ],
        );
    }

    #[test]
    fn an_excluded_dir_is_walked_only_when_an_exception_reaches_into_it() {
        let f = filter(&[], &["docs", "!docs/keep.txt", "node_modules"]);
        #[rustfmt::skip]
        assert_verdicts(&f, &[
            ("docs", true, Descend), ("docs", false, Skip), ("docs/keep.txt", false, Keep), ("docs/other", false, Skip),
            ("docs/sub", true, Skip), ("node_modules", true, Skip),
        ]);
        let f = filter(&[], &["build", "!**/*.keep"]);
        #[rustfmt::skip]
        assert_verdicts(&f, &[
            ("build", true, Descend), ("build/x", true, Descend), ("build/x/y.keep", false, Keep),
            ("build/y.txt", false, Skip),
        ]);
        // An exception anchored elsewhere cannot reach in (fsutil would walk: it has a glob) ...
        assert_eq!(
            filter(&[], &["build", "!src/*.keep"]).verdict("build", true),
            Skip
        );
        // ... nor can one that matches the dir itself but is overridden later.
        assert_eq!(filter(&[], &["!a/b", "a"]).verdict("a/b", true), Skip);
    }

    #[test]
    fn the_last_matching_pattern_wins() {
        assert_eq!(
            filter(&[], &["!a.txt", "*.txt"]).verdict("a.txt", false),
            Skip
        );
        assert_eq!(
            filter(&[], &["*.txt", "!a.txt"]).verdict("a.txt", false),
            Keep
        );
        // A repeat after an exception excludes again (fsutil's cached walk would let `a/x` through).
        assert_eq!(filter(&[], &["a", "!a/x", "a"]).verdict("a/x", false), Skip);
        let f = filter(&[], &["foo", "!foo/bar", "foo/bar/baz", "!foo/bar/baz/x"]);
        #[rustfmt::skip]
        assert_verdicts(&f, &[
            ("foo", true, Descend), ("foo/other", false, Skip), ("foo/bar", true, Keep), ("foo/bar/y", false, Keep),
            ("foo/bar/baz", true, Descend), ("foo/bar/baz/x", false, Keep), ("foo/bar/baz/z", false, Skip),
        ]);
    }

    #[test]
    fn include_descends_only_towards_possible_matches() {
        #[rustfmt::skip]
        assert_verdicts(&filter(&["a/b/*.txt"], &[]), &[
            ("a", true, Descend), ("a", false, Skip), ("a/b", true, Descend), ("a/b/c.txt", false, Keep),
            ("a/b/c.md", false, Skip), ("a/b/d", true, Skip), ("a/c", true, Skip), ("c", true, Skip),
        ]);
        #[rustfmt::skip]
        assert_verdicts(&filter(&["src", "**/x"], &[]), &[
            ("src", true, Keep), ("src/deep/file", false, Keep), ("q", true, Descend), ("q/r/x", false, Keep),
            ("q/r/y", false, Skip),
        ]);
    }

    #[test]
    fn exclusion_applies_on_top_of_inclusion() {
        #[rustfmt::skip]
        assert_verdicts(&filter(&["src"], &["src/gen", "**/*.tmp"]), &[
            ("src", true, Keep), ("src/a.rs", false, Keep), ("src/gen", true, Skip), ("src/x.tmp", false, Skip),
            ("other", true, Skip),
        ]);
        assert_eq!(filter(&["a/b/*.txt"], &["a"]).verdict("a", true), Skip);
    }

    #[test]
    fn emptiness() {
        assert!(filter(&[], &[]).is_empty());
        assert!(filter(&[], &["", "  "]).is_empty());
        assert!(!filter(&["a"], &[]).is_empty());
        // Include patterns that are all blank keep nothing, as in fsutil.
        let blank = filter(&[""], &[]);
        assert!(!blank.is_empty());
        assert_eq!(blank.verdict("a", true), Skip);
    }

    #[test]
    fn bad_patterns_are_named() {
        use Reason::*;
        #[rustfmt::skip]
        let cases = [
            ("[a", UnterminatedClass), ("[\\", UnterminatedClass), ("a\\", TrailingBackslash),
            ("[]", MisplacedClassChar), ("[a-]", MisplacedClassChar), ("[-a]", MisplacedClassChar),
            ("[z-a]", ReversedRange), ("!", LoneExclamation), ("!/", LoneExclamation),
        ];
        for (pattern, reason) in cases {
            let err = Filter::new(&[], &["ok".into(), pattern.into()]).expect_err(pattern);
            assert_eq!(
                err,
                PatternError {
                    pattern: pattern.into(),
                    reason
                }
            );
        }
        let err = Filter::new(&[" src/[ab ".into()], &[]).expect_err("bad include");
        assert_eq!(
            err.to_string(),
            "invalid pattern \"src/[ab\": unterminated character class"
        );
    }

    /// A deterministic generator (an LCG), so failures reproduce without a property-test crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(self.0 >> 33).expect("31 bits fit") % n
        }

        fn string(&mut self, pieces: &[&str], max: usize) -> String {
            (0..self.below(max + 1))
                .map(|_| pieces[self.below(pieces.len())])
                .collect()
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let pieces = [
            "a", "/", "*", "**", "?", "[", "]", "\\", "!", "^", "-", ".", "..", "é", "日本",
            "\u{feff}", " ", "\n", "#",
        ];
        let mut rng = Rng(7);
        for _ in 0..5_000 {
            let patterns: Vec<String> = (0..rng.below(4)).map(|_| rng.string(&pieces, 6)).collect();
            parse_dockerignore(&patterns.join("\n"));
            let split = rng.below(patterns.len() + 1);
            let Ok(f) = Filter::new(&patterns[..split], &patterns[split..]) else {
                continue;
            };
            for _ in 0..5 {
                let path = rng.string(&pieces, 6);
                f.verdict(&path, true);
                f.verdict(&path, false);
            }
        }
        Filter::new(&[String::new()], &[])
            .expect("blank is fine")
            .verdict("", true);
    }

    /// A slow, obviously correct backtracking matcher over the same tokens.
    fn naive(tokens: &[Token], s: &[char]) -> bool {
        let Some((token, rest)) = tokens.split_first() else {
            return s.is_empty();
        };
        let first = |accept: &dyn Fn(char) -> bool| {
            s.first().is_some_and(|&c| accept(c)) && naive(rest, &s[1..])
        };
        match token {
            Token::Lit(lit) => first(&|c| c == *lit),
            Token::One => first(&|c| c != '/'),
            Token::Class { negated, ranges } => {
                first(&|c| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated)
            }
            Token::Star => {
                (0..=s.iter().take_while(|&&c| c != '/').count()).any(|n| naive(rest, &s[n..]))
            }
            Token::AnyRest => (0..=s.len()).any(|n| naive(rest, &s[n..])),
            Token::AnyDirs => {
                naive(rest, s) || (0..s.len()).any(|n| s[n] == '/' && naive(rest, &s[n + 1..]))
            }
        }
    }

    #[test]
    fn the_nfa_agrees_with_backtracking_and_never_misses_a_subtree() {
        let (pattern_pieces, path_pieces) = (
            ["a", "b", "/", "*", "**", "?", "[ab]", "[^a]", "."],
            ["a", "b", "/", ".", "ab"],
        );
        let mut rng = Rng(11);
        let mut matched = 0;
        for _ in 0..20_000 {
            let Ok(Some(pattern)) = Pattern::parse(&rng.string(&pattern_pieces, 5)) else {
                continue;
            };
            let path = rng.string(&path_pieces, 6);
            let chars: Vec<char> = path.chars().collect();
            let whole = naive(&pattern.tokens, &chars);
            let parent =
                (0..chars.len()).any(|k| chars[k] == '/' && naive(&pattern.tokens, &chars[..k]));
            assert_eq!(
                pattern.matches_or_parent(&path),
                whole || parent,
                "{:?} against {path:?}",
                pattern.tokens
            );
            if whole {
                matched += 1;
                for (k, _) in path.match_indices('/') {
                    assert!(
                        pattern.could_match_under(&path[..k]),
                        "{:?} under {:?}",
                        pattern.tokens,
                        &path[..k]
                    );
                }
            }
        }
        assert!(
            matched > 1_000,
            "the generator should produce matches, got {matched}"
        );
    }

    #[test]
    fn a_kept_entry_never_has_a_skipped_ancestor() {
        let (pieces, names) = (
            ["a", "b", "docs", "*.md", "x.md", "*", "**", "[ab]", "?"],
            ["a", "b", "docs", "x.md", "c"],
        );
        let mut rng = Rng(3);
        let mut descended = 0;
        for _ in 0..3_000 {
            let random_pattern = |rng: &mut Rng| {
                let segments: Vec<&str> = (0..=rng.below(3))
                    .map(|_| pieces[rng.below(pieces.len())])
                    .collect();
                format!(
                    "{}{}",
                    if rng.below(3) == 0 { "!" } else { "" },
                    segments.join("/")
                )
            };
            let include: Vec<String> = (0..rng.below(3))
                .map(|_| random_pattern(&mut rng))
                .collect();
            let exclude: Vec<String> = (0..rng.below(4))
                .map(|_| random_pattern(&mut rng))
                .collect();
            let f = Filter::new(&include, &exclude).expect("valid patterns");
            for _ in 0..20 {
                let path: Vec<&str> = (0..=rng.below(4))
                    .map(|_| names[rng.below(names.len())])
                    .collect();
                if f.verdict(&path.join("/"), rng.below(2) == 0) != Keep {
                    continue;
                }
                for depth in 1..path.len() {
                    let ancestor = path[..depth].join("/");
                    let verdict = f.verdict(&ancestor, true);
                    assert_ne!(
                        verdict, Skip,
                        "{ancestor} skipped above {path:?} (include {include:?}, exclude {exclude:?})"
                    );
                    descended += usize::from(verdict == Descend);
                }
            }
        }
        assert!(
            descended > 100,
            "the generator should need Descend, got {descended}"
        );
    }
}
