//! A pattern's syntax: the checks by which Docker rejects one, and its compilation into the
//! tokens that `matching` runs.

use std::fmt;

use super::dockerignore::clean;

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
pub(super) enum Token {
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
pub(super) struct Pattern {
    pub(super) tokens: Vec<Token>,
    pub(super) exception: bool,
}

impl Pattern {
    /// Trims and cleans like patternmatcher's `New`: `None` for a blank pattern. The `!` is looked
    /// at after cleaning, as Docker does (so `!./x` stays `./x` and matches nothing).
    pub(super) fn parse(raw: &str) -> Result<Option<Self>, PatternError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::patterns::Filter;

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
}
