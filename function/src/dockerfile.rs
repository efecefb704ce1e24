//! What a Dockerfile asks the daemon to fetch by itself: the sources of its `ADD` instructions
//! that are URLs (HTTP(S) files, git repositories) or that depend on a variable. Read as
//! BuildKit's parser reads it (the `escape` directive, line continuations, comments, heredocs,
//! JSON arguments, `ONBUILD ADD`), and conservatively: what it cannot tell is a variable.

/// Largest Dockerfile the check reads whole; a larger one cannot be proved harmless.
pub(crate) const MAX_CHECKED: usize = 1 << 20;

/// An `ADD` source the daemon would fetch itself, or might.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteSource {
    /// The line its instruction starts on, 1-based.
    pub(crate) line: usize,
    /// The source as written.
    pub(crate) source: String,
    /// Whether only the daemon can tell what it is: a variable (`$U`, `${U}`), or quotes and
    /// escapes that its word processing removes.
    pub(crate) variable: bool,
}

/// The `ADD` sources of `text` that are URLs or that the check cannot read for sure (a variable,
/// quotes or escapes, which the daemon resolves), in order. Read with both escape characters
/// (`\` and the backtick an `escape` directive may name), so that no reading of the directives
/// hides an instruction; heredoc bodies are read as instructions too (daemons before BuildKit
/// v0.10 have no heredocs): either may find more than the daemon sees, never less.
pub(crate) fn remote_sources(text: &str) -> Vec<RemoteSource> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut found = Vec::new();
    for escape in ['\\', '`'] {
        for source in scan(text, escape) {
            if !found.contains(&source) {
                found.push(source);
            }
        }
    }
    found.sort_by_key(|s: &RemoteSource| s.line);
    found
}

fn scan(text: &str, escape: char) -> Vec<RemoteSource> {
    // Lines BuildKit skips inside an instruction: comments and blank lines.
    let skipped = |line: &str| {
        let line = line.trim_start();
        line.is_empty() || line.starts_with('#')
    };
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        if skipped(first) {
            continue;
        }
        // One instruction: its physical lines joined while each ends with the escape char.
        let mut logical = String::new();
        let mut part = first.to_owned();
        loop {
            let body = part.trim_end();
            match body.strip_suffix(escape) {
                Some(rest) => {
                    logical.push_str(rest);
                    logical.push(' ');
                }
                None => {
                    logical.push_str(body);
                    break;
                }
            }
            match lines.by_ref().find(|(_, l)| !skipped(l)) {
                Some((_, next)) => part = next.to_owned(),
                None => break,
            }
        }
        let mut words = logical.split_whitespace();
        let mut instruction = words.next().unwrap_or_default();
        let mut args = logical.trim_start()[instruction.len()..].trim_start();
        if instruction.eq_ignore_ascii_case("onbuild") {
            instruction = words.next().unwrap_or_default();
            args = args[instruction.len()..].trim_start();
        }
        if !instruction.eq_ignore_ascii_case("add") {
            continue;
        }
        for source in sources(args) {
            let variable = source.contains(['$', '"', '\'', '\\', '`']);
            if variable || is_url(&source) {
                found.push(RemoteSource {
                    line: index + 1,
                    source,
                    variable,
                });
            }
        }
    }
    found
}

/// The sources of an `ADD`: every argument but the destination and the flags, in the JSON form
/// or the plain one.
fn sources(args: &str) -> Vec<String> {
    let mut all: Vec<String> = match serde_json::from_str::<Vec<String>>(args) {
        Ok(list) => list,
        Err(_) => args
            .split_whitespace()
            .filter(|word| !word.starts_with("--"))
            .map(str::to_owned)
            .collect(),
    };
    all.pop();
    all
}

/// Whether BuildKit reads `source` as remote: a URL of any scheme, or git's `git@host:path`.
fn is_url(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(usize, &'static str, bool)> {
        remote_sources(text)
            .into_iter()
            .map(|s| (s.line, &*s.source.leak(), s.variable))
            .collect()
    }

    #[test]
    fn finds_url_and_variable_sources_in_every_form() {
        let text = "\
FROM base AS one
ADD http://h/a /a
add --chown=1:1 https://h/b /b
ARG U=http://h/c
ADD $U /c
ADD [\"${U}\", \"/d\"]
ADD local.txt /e
FROM base
ONBUILD ADD git@github.com:a/b.git /f
ADD \\
  # a comment inside the instruction
  https://h/g \\
  /g
COPY http://h/h /h
";
        assert_eq!(
            found(text),
            [
                (2, "http://h/a", false),
                (3, "https://h/b", false),
                (5, "$U", true),
                (6, "${U}", true),
                (9, "git@github.com:a/b.git", false),
                (10, "https://h/g", false),
            ]
        );
    }

    #[test]
    fn every_reading_of_escapes_and_heredocs_is_checked() {
        // With the directive the backtick continues; without it (a comment before the
        // directive ends directives) the backslash does: both readings are checked.
        let text = "\
# a comment
# escape=`
FROM base
RUN echo `
ADD http://h/one /a
RUN echo \\
ADD http://h/two /b
RUN <<EOF
ADD http://h/three /c
EOF
ADD \\

  http://h/four /d
";
        let sources: Vec<&str> = found(text).iter().map(|f| f.1).collect();
        assert_eq!(
            sources,
            [
                "http://h/one",
                "http://h/two",
                "http://h/three",
                "http://h/four"
            ]
        );
        assert_eq!(found("FROM b\nADD a.txt b.txt /dst/\n"), []);
        assert_eq!(
            found("ADD http:/\"\"/h/x /y\nADD 'x' /z\n"),
            [(1, "http:/\"\"/h/x", true), (2, "'x'", true)]
        );
    }
}
