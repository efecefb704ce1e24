//! Running a compiled pattern: a small NFA over its tokens, which answers both whether a path
//! (or one of its parents) matches and whether anything beneath a directory could.

use super::syntax::{Pattern, Token};

impl Pattern {
    /// patternmatcher's `MatchesOrParentMatches` for one pattern: the path or a parent matches.
    /// One pass: a parent is every prefix that ends just before a `/`.
    pub(super) fn matches_or_parent(&self, path: &str) -> bool {
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
    pub(super) fn could_match_under(&self, dir: &str) -> bool {
        let mut run = Run::new(&self.tokens);
        dir.chars().chain(['/']).for_each(|c| run.step(c));
        run.alive()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::patterns::testing::Rng;

    fn matches(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern)
            .expect("valid")
            .expect("not blank")
            .matches_or_parent(path)
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
}
