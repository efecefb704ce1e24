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
/// quotes or escapes, which the daemon resolves), in order. Read four ways, with both escape
/// characters (`\\` and the backtick an `escape` directive may name) and with a line's trailing
/// CR kept (BuildKit v0.8) or dropped (later), so that no reading of the directives or line ends
/// hides an instruction; heredoc bodies are read as instructions too (daemons before BuildKit
/// v0.10 have no heredocs): each reading may find more than the daemon sees, never less.
pub(crate) fn remote_sources(text: &str) -> Vec<RemoteSource> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut found = Vec::new();
    for escape in ['\\', '`'] {
        for keep_cr in [false, true] {
            for source in scan(text, escape, keep_cr) {
                if !found.contains(&source) {
                    found.push(source);
                }
            }
        }
    }
    found.sort_by_key(|s: &RemoteSource| s.line);
    found
}

/// The part of `line` before the escape char that continues it onto the next line, as
/// BuildKit's parser decides: the escape char, not itself escaped, followed only by spaces and
/// tabs.
fn continued(line: &str, escape: char) -> Option<&str> {
    let rest = line.trim_end_matches([' ', '\t']).strip_suffix(escape)?;
    (!rest.ends_with(escape)).then_some(rest)
}

fn scan(text: &str, escape: char, keep_cr: bool) -> Vec<RemoteSource> {
    // Lines BuildKit skips inside an instruction: comments and blank lines.
    let skipped = |line: &str| {
        let line = line.trim_start();
        line.is_empty() || line.starts_with('#')
    };
    let mut found = Vec::new();
    let mut lines = text
        .split('\n')
        .map(|line| match keep_cr {
            true => line,
            false => line.strip_suffix('\r').unwrap_or(line),
        })
        .enumerate();
    while let Some((index, first)) = lines.next() {
        if skipped(first) {
            continue;
        }
        // One instruction: its physical lines joined while each continues.
        let mut logical = String::new();
        let mut part = first;
        loop {
            match continued(part, escape) {
                Some(rest) => {
                    logical.push_str(rest);
                    logical.push(' ');
                }
                None => {
                    logical.push_str(part);
                    break;
                }
            }
            match lines.by_ref().find(|(_, l)| !skipped(l)) {
                Some((_, next)) => part = next,
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

/// The sources of an `ADD`: every argument but the flags (`--name[=value]` words before the
/// first other one) and the destination, in the JSON form, else (as BuildKit falls back) the
/// plain one. An `ADD` with fewer than two arguments is an error to BuildKit: no source.
fn sources(args: &str) -> Vec<String> {
    let mut rest = args.trim_start();
    while rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    let mut all: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
        Ok(list) => list,
        Err(_) => rest.split_whitespace().map(str::to_owned).collect(),
    };
    all.pop();
    all
}

/// Whether BuildKit reads `source` as remote: a URL of any scheme, or git's scp-like
/// `user@host:path` (`^[A-Za-z0-9-_]+@[A-Za-z0-9-.]+:`, as BuildKit's sshutil matches it).
fn is_url(source: &str) -> bool {
    if source.contains("://") {
        return true;
    }
    let Some((user, rest)) = source.split_once('@') else {
        return false;
    };
    let Some((host, _)) = rest.split_once(':') else {
        return false;
    };
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    !user.is_empty()
        && user.chars().all(word)
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
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

    #[test]
    fn continuations_flags_and_scp_sources_are_read_as_buildkit_reads_them() {
        // An escaped escape ends the line; trailing form feeds do not continue it.
        let text = "FROM b\nENV A=\\\\\nADD \\\n http://h/m /m\n";
        assert_eq!(found(text), [(3, "http://h/m", false)]);
        // Flags, then JSON.
        assert_eq!(
            found("ADD --chown=0 [\"http://h/x\",\"/x\"]\n"),
            [(1, "http://h/x", false)]
        );
        // JSON that is not is read as plain words, as BuildKit falls back to them.
        assert_eq!(
            found("ADD -- [\"http://h/j\", /j\n"),
            [(1, "[\"http://h/j\",", true)]
        );
        // Any user name in an scp-like git source.
        assert_eq!(
            found("ADD deploy@evil.example:r.git /x\n"),
            [(1, "deploy@evil.example:r.git", false)]
        );
        assert_eq!(found("ADD a@b.txt /x\n"), []);
        // A CR before the newline, kept by BuildKit v0.8 (the line does not continue), dropped
        // by later ones (it does): both read.
        assert_eq!(
            found("RUN echo \\\r\nADD http://h/cr /c\r\n"),
            [(2, "http://h/cr", false)]
        );
    }
}
