//! Include/exclude filtering of a directory walk, the way fsutil's `FilterFS` does it: the last
//! matching pattern decides, and a directory is walked when a pattern could still change the
//! verdict of something beneath it.

use super::syntax::{Pattern, PatternError};

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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::patterns::parse_dockerignore;
    use crate::fs::patterns::testing::Rng;
    use Verdict::{Descend, Keep, Skip};

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        let owned = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
        Filter::new(&owned(include), &owned(exclude)).expect("valid patterns")
    }

    /// `entries` as `(path, is_dir, verdict)`.
    fn assert_verdicts(f: &Filter, entries: &[(&str, bool, Verdict)]) {
        for &(path, is_dir, want) in entries {
            assert_eq!(f.verdict(path, is_dir), want, "{path} (dir: {is_dir})");
        }
    }

    /// The case of moby/patternmatcher's `TestMatches` table that takes several patterns.
    #[test]
    fn a_reinclusion_under_a_double_star_exclusion() {
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
