//! Why a request archive is refused: one error type for the index, each message naming the
//! entry or limit at fault.

use std::io;

use crate::wire::{CONFIG_NAME, SECRETS_NAME};

/// Why a request archive is refused. All but [`IndexError::Spool`] are the caller's fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexError {
    /// One entry breaks a rule; the message names it.
    #[error("entry {entry:?}: {problem}")]
    Entry {
        /// The entry's name as written in the tar.
        entry: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An entry outside the accepted names.
    #[error("entry {entry:?} is outside context/ (only {CONFIG_NAME}, {SECRETS_NAME} and context/ are accepted)")]
    Outside {
        /// The entry's name.
        entry: String,
    },
    /// Not a tar (or gzip) at all, or one cut short.
    #[error("{message}")]
    Format {
        /// What is wrong.
        message: String,
    },
    /// More entries than `max_entries`.
    #[error("the tar has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// More bytes than `max_unpacked_bytes`.
    #[error("the context unpacks to more than {limit} bytes")]
    TooManyBytes {
        /// The limit.
        limit: u64,
    },
    /// No config file.
    #[error("missing {CONFIG_NAME}")]
    MissingConfig,
    /// The Dockerfile does not resolve to a regular file.
    #[error("context/{path} {problem}")]
    Dockerfile {
        /// Its path in the context.
        path: String,
        /// `not found`, `is not a regular file`.
        problem: String,
    },
    /// Our own spool could not be read or written: not the caller's fault.
    #[error("reading the spooled body: {source}")]
    Spool {
        /// The I/O error.
        #[from]
        source: io::Error,
    },
}

pub(super) fn entry_error(entry: &str, problem: impl Into<String>) -> IndexError {
    IndexError::Entry {
        entry: entry.to_owned(),
        problem: problem.into(),
    }
}

pub(super) fn format_error(message: impl Into<String>) -> IndexError {
    IndexError::Format {
        message: message.into(),
    }
}

pub(super) fn truncated(raw: &str, err: &io::Error) -> IndexError {
    entry_error(raw, format!("truncated tar: {err}"))
}

/// The tar crate's parse errors: the archive's fault, worded for the caller.
pub(super) fn tar_error(after: &str, err: &io::Error) -> IndexError {
    let text = err.to_string();
    let at = if after.is_empty() {
        String::new()
    } else {
        format!(" after entry {after:?}")
    };
    if err.kind() == io::ErrorKind::UnexpectedEof || text.contains("unexpected EOF") {
        format_error(format!("truncated tar archive{at}: {text}"))
    } else {
        format_error(format!("not a valid tar archive{at}: {text}"))
    }
}
