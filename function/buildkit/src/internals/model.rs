//! A reference model of Docker's `.dockerignore` rules: slow, simple, and written from the rules
//! as moby/patternmatcher and Go's `filepath.Match` document them, not from our matcher.
//!
//! - A file is read as `ignorefile.ReadAll` reads it: a UTF-8 BOM stripped, lines starting with
//!   `#` skipped, the rest trimmed, blank ones dropped, the pattern after a `!` cleaned (Go's
//!   `filepath.Clean`) and one leading `/` removed.
//! - A pattern is trimmed and cleaned again, then a leading `!` makes it an exception.
//! - It matches a path when it matches the path or one of the path's parents, element by
//!   element: `**` is any number of elements (at least one when it ends a longer pattern: `a/**`
//!   is what lies under `a`, not `a` itself), any other element matches one path element as
//!   `filepath.Match` matches a name (`*`, `?`, `[a-z]`, `\` escaping).
//! - Of the patterns matching a path, the last decides. With include patterns, a path is sent
//!   when it is included and not excluded; its parent directories go with it.
//!
//! Docker implements these rules by translating each pattern to a Go regexp, which departs from
//! them in corners: `**` inside an element (`a**b`, `**.log`), negated classes (which then also
//! match `/`), `\` before a letter (a regexp escape: `\d` is a digit), `^` outside a class, and
//! classes holding `*`, `?`, `[`, `\` or `/`. [`in_domain`] tells the patterns the model speaks
//! for; comparisons skip the others (our matcher follows the regexp there).

/// `ignorefile.ReadAll`.
pub(crate) fn read_ignore_file(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = if n == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        // Go's line scanner drops one `\r` before the newline; trimming drops it anyway.
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (invert, mut pattern) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim().to_owned()),
            None => (false, line.to_owned()),
        };
        if !pattern.is_empty() {
            pattern = go_clean(&pattern);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
        }
        out.push(if invert {
            format!("!{pattern}")
        } else {
            pattern
        });
    }
    out
}

/// Go's `filepath.Clean` on `/` paths, by its four documented rules.
pub(crate) fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut kept: Vec<&str> = Vec::new();
    for element in path.split('/') {
        if element.is_empty() || element == "." {
            continue;
        }
        if element == ".." {
            if kept.last().is_some_and(|last| *last != "..") {
                kept.pop();
                continue;
            }
            if rooted {
                continue;
            }
        }
        kept.push(element);
    }
    let body = kept.join("/");
    if rooted {
        format!("/{body}")
    } else if body.is_empty() {
        ".".to_owned()
    } else {
        body
    }
}

/// One pattern, compiled by the model.
#[derive(Debug)]
pub(crate) struct ModelPattern {
    /// `None` for `**`, else the pieces of the element; empty outside the domain.
    elements: Vec<Option<Vec<Piece>>>,
    exception: bool,
    /// Whether the model's reading is Docker's (see [`in_domain`]).
    pub(crate) in_domain: bool,
}

/// Why the model refuses a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

impl ModelPattern {
    /// patternmatcher's `New` for one pattern: `Ok(None)` when blank.
    pub(crate) fn new(raw: &str) -> Result<Option<Self>, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let cleaned = go_clean(trimmed);
        let (exception, body) = match cleaned.strip_prefix('!') {
            Some("") => return Err(Invalid),
            Some(body) => (true, body),
            None => (false, cleaned.as_str()),
        };
        if !valid_syntax(body) {
            return Err(Invalid);
        }
        let in_domain = in_domain(body);
        // Outside the domain an element may hold part of a class (`[/]`): not read, not matched.
        let elements = if in_domain {
            body.split('/')
                .map(|element| (element != "**").then(|| tokens(element)))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Some(Self {
            elements,
            exception,
            in_domain,
        }))
    }

    /// The pattern matches `path` (clean, relative, as elements) or one of its parents.
    pub(crate) fn matches_or_parent(&self, path: &[&str]) -> bool {
        (1..=path.len()).any(|n| self.matches(&path[..n]))
    }

    fn matches(&self, path: &[&str]) -> bool {
        assert!(self.in_domain, "the model does not read this pattern");
        let elements = &self.elements;
        // `done[i][j]`: elements[i..] match path[j..].
        let (m, n) = (elements.len(), path.len());
        let mut done = vec![vec![false; n + 1]; m + 1];
        done[m][n] = true;
        for i in (0..m).rev() {
            for j in (0..=n).rev() {
                done[i][j] = match &elements[i] {
                    None => {
                        // A final `**` after other elements needs an element to stand for.
                        let at_least = usize::from(m > 1 && i == m - 1);
                        (j + at_least..=n).any(|k| done[i + 1][k])
                    }
                    Some(pieces) => j < n && match_name(pieces, path[j]) && done[i + 1][j + 1],
                };
            }
        }
        done[0][0]
    }
}

/// Whether the model's reading of a cleaned pattern (without its `!`) is Docker's: see the
/// module's comment for what is left out.
pub(crate) fn in_domain(body: &str) -> bool {
    if body
        .split('/')
        .any(|element| element != "**" && element.contains("**"))
    {
        return false;
    }
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '^' => return false,
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() && escaped != '/' => {}
                _ => return false,
            },
            '[' => {
                let mut low = None;
                while let Some(inner) = chars.next() {
                    match inner {
                        ']' => break,
                        '*' | '?' | '[' | '\\' | '^' | '/' => return false,
                        // A range over `/` (`[+-0]`) matches it, joining two elements.
                        '-' if low.is_some() => match chars.next() {
                            Some(high) if low <= Some('/') && '/' <= high => return false,
                            _ => low = None,
                        },
                        c => low = Some(c),
                    }
                }
            }
            _ => {}
        }
    }
    true
}

/// `filepath.Match`'s syntax check (`ErrBadPattern`), plus a reversed range, which Docker's
/// regexp fails to compile.
fn valid_syntax(pattern: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 == chars.len() => return false,
            '\\' => i += 2,
            '[' => match class_end(&chars, i + 1) {
                Some(end) => i = end,
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

/// Reads the class whose body starts at `chars[from]`; the index just past its `]`, or `None`
/// when Go would call it malformed.
fn class_end(chars: &[char], from: usize) -> Option<usize> {
    let mut i = from;
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    let mut items = 0;
    loop {
        if chars.get(i) == Some(&']') && items > 0 {
            return Some(i + 1);
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        if lo > hi {
            return None;
        }
        items += 1;
    }
}

/// Go's `getEsc`: one character of a class (or `None`), and where the class goes on.
fn class_char(chars: &[char], at: usize) -> Option<(char, usize)> {
    let mut i = at;
    match chars.get(i)? {
        '-' | ']' => return None,
        '\\' => i += 1,
        _ => {}
    }
    let c = *chars.get(i)?;
    // A class must still be closed after this character.
    if i + 1 >= chars.len() {
        return None;
    }
    Some((c, i + 1))
}

/// `filepath.Match` of one pattern element against one name (neither holds `/`).
fn match_name(tokens: &[Piece], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    // `done[i][j]`: tokens[i..] match name[j..].
    let (m, n) = (tokens.len(), name.len());
    let mut done = vec![vec![false; n + 1]; m + 1];
    done[m][n] = true;
    for i in (0..m).rev() {
        for j in (0..=n).rev() {
            done[i][j] = match &tokens[i] {
                Piece::Star => (j..=n).any(|k| done[i + 1][k]),
                piece => j < n && piece.accepts(name[j]) && done[i + 1][j + 1],
            };
        }
    }
    done[0][0]
}

#[derive(Debug)]
enum Piece {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Piece {
    fn accepts(&self, c: char) -> bool {
        match self {
            Self::Char(want) => c == *want,
            Self::Any => true,
            Self::Star => unreachable!("a star matches runs, not one character"),
            Self::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
            }
        }
    }
}

/// The pieces of a pattern element whose syntax [`valid_syntax`] accepted.
fn tokens(pattern: &str) -> Vec<Piece> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        out.push(match c {
            '*' => Piece::Star,
            '?' => Piece::Any,
            '\\' => {
                i += 1;
                Piece::Char(chars[i - 1])
            }
            '[' => {
                let negated = chars[i] == '^';
                i += usize::from(negated);
                let mut ranges = Vec::new();
                while chars[i] != ']' || ranges.is_empty() {
                    let lo = escaped(&chars, &mut i);
                    let hi = if chars[i] == '-' {
                        i += 1;
                        escaped(&chars, &mut i)
                    } else {
                        lo
                    };
                    ranges.push((lo, hi));
                }
                i += 1;
                Piece::Class { negated, ranges }
            }
            c => Piece::Char(c),
        });
    }
    out
}

fn escaped(chars: &[char], i: &mut usize) -> char {
    if chars[*i] == '\\' {
        *i += 1;
    }
    *i += 1;
    chars[*i - 1]
}

/// The include and exclude lists of a walk, as the model reads them.
pub(crate) struct ModelFilter {
    include: Option<Vec<ModelPattern>>,
    exclude: Vec<ModelPattern>,
}

impl ModelFilter {
    /// `Err` when any pattern is malformed.
    pub(crate) fn new(include: &[String], exclude: &[String]) -> Result<Self, Invalid> {
        let compile = |list: &[String]| -> Result<Vec<ModelPattern>, Invalid> {
            let mut out = Vec::new();
            for raw in list {
                out.extend(ModelPattern::new(raw)?);
            }
            Ok(out)
        };
        Ok(Self {
            include: if include.is_empty() {
                None
            } else {
                Some(compile(include)?)
            },
            exclude: compile(exclude)?,
        })
    }

    /// Whether every pattern is one the model speaks for.
    pub(crate) fn in_domain(&self) -> bool {
        self.include
            .iter()
            .flatten()
            .chain(&self.exclude)
            .all(|p| p.in_domain)
    }

    /// Whether `path` (clean and relative) is sent for itself.
    pub(crate) fn keeps(&self, path: &str) -> bool {
        let elements: Vec<&str> = path.split('/').collect();
        let last_says_yes = |patterns: &[ModelPattern]| {
            patterns
                .iter()
                .rev()
                .find(|p| p.matches_or_parent(&elements))
                .is_some_and(|p| !p.exception)
        };
        let included = self.include.as_deref().is_none_or(last_says_yes);
        included && !last_says_yes(&self.exclude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        let p = ModelPattern::new(pattern).unwrap().unwrap();
        p.matches_or_parent(&path.split('/').collect::<Vec<_>>())
    }

    /// The model, on the documented examples (Docker's `.dockerignore` reference and
    /// patternmatcher's own table, where the model's domain covers them).
    #[test]
    fn reads_the_documented_examples() {
        #[rustfmt::skip]
        let cases = [
            ("*/temp*", "somedir/temporary.txt", true), ("*/temp*", "temp", false),
            ("*/*/temp*", "somedir/subdir/temporary.txt", true), ("temp?", "tempa", true),
            ("**/*.go", "a/b/c.go", true), ("**/*.go", "c.go", true), ("**", "file", true),
            ("**/", "dir/file", true), ("**/**", "dir/file", true), ("dir/**", "dir/dir2/file", true),
            ("abc/**", "abc", false), ("**/dir", "dir/file", true), ("**/dir2/*", "dir/dir2/file", true),
            ("**/**/*.txt", "file.txt", true), ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("a/*.txt", "a/dir/file.txt", false), ("a[b-d]e", "ae", false), ("a[b-d]e", "ace", true),
            (".*", "foo", false), ("abc.def", "abcZdef", false), ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true), ("a\\*b", "a*b", true), ("**/foo/bar", "foo/bar", true),
            ("**/.foo", "bar.foo", false), ("a.|)$(}+{bc", "a.|)$(}+{bc", true), ("foo", "foo/x", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(matches(pattern, path), want, "{pattern:?} against {path:?}");
        }
        for bad in ["[", "a\\", "[]", "[a-]", "[z-a]", "!", "!/", "[^]"] {
            assert_eq!(ModelPattern::new(bad).unwrap_err(), Invalid, "{bad:?}");
        }
        assert_eq!(
            read_ignore_file("\u{feff}# c\n /a/../b/ \n! ./c\n!\n\n/\n#x"),
            ["b", "!c", "!", "/"]
        );
        // Classes that hold or span `/`, negation, `**` inside an element: not the model's.
        for outside in [
            "a[/]b", "a[+-0]b", "[^a]", "a**", "**.log", "\\d", "a^b", "[*]",
        ] {
            let pattern = ModelPattern::new(outside).unwrap().unwrap();
            assert!(!pattern.in_domain, "{outside:?}");
        }
        assert_eq!(go_clean("a/../../b/./c/"), "../b/c");
        assert_eq!(go_clean("/../x"), "/x");
    }
}
