//! Entry points into the builder's stages for fuzz targets and benchmarks (feature `internals`).
//! Not an API: each takes plain inputs and returns what a caller can check, nothing more.

use std::path::Path;

use bytes::Bytes;
use openfaas_runtime::Body;

/// The targets of the BuildKit crate: `.dockerignore` against the reference model, the walk
/// order, Docker's `config.json`.
pub use buildkit::internals::{check_dockerignore, fuzz_docker_config, fuzz_dockerignore};

/// Intake's first pass, as `POST /build` runs it: `chunks` streamed through the HMAC-SHA256
/// under `secret` and spooled to `spool` once they outgrow memory, then `signature` checked.
/// Returns the bytes received, or the error's message.
///
/// # Errors
/// The message of the `VerifyError` the request would have been refused with.
pub async fn verify_and_spool(
    chunks: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    spool: &Path,
    signature: &[u8],
    secret: &[u8],
) -> Result<u64, String> {
    crate::verify::verify(
        Body::from_stream(chunks),
        || std::fs::File::create(spool),
        u64::MAX,
        Some(signature),
        Some(secret),
    )
    .await
    .map(|verified| verified.len)
    .map_err(|e| e.to_string())
}

/// Limits of the archive fuzz target: small, so a gzip bomb costs little.
const FUZZ_LIMITS: crate::archive::Limits = crate::archive::Limits {
    entries: 1000,
    bytes: 1 << 20,
};

/// Where the archive fuzz target spools its inputs: a directory per thread (tests replay
/// corpora in parallel), kept for the thread's life.
fn fuzz_dir() -> std::path::PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("a temp dir for fuzz inputs");
    }
    DIR.with(|dir| dir.path().to_owned())
}

/// Any bytes as a spooled request (plain or gzipped tar), indexed with the Dockerfile at
/// `Dockerfile`: a refusal that is the caller's fault (never our spool's), or an index whose
/// every served path stays inside the context. Walks all of it through its `SourceTree` view:
/// clean unique names, directories that list, files that read exactly their size, symlinks that
/// resolve inside through the served entries alone, and, laid out on disk, nothing the kernel
/// resolves outside. Returns how many entries are served, or the refusal.
///
/// # Errors
/// The message the request would be refused with.
///
/// # Panics
/// On a violation.
pub fn fuzz_archive_index(data: &[u8]) -> Result<usize, Refusal> {
    use crate::archive::{Archive, IndexError};

    let dir = fuzz_dir();
    let spool = dir.join("request.tar");
    std::fs::write(&spool, data).expect("writing the fuzz spool");
    let indexed = Archive::index(&spool, "Dockerfile", FUZZ_LIMITS);
    let _ = std::fs::remove_file(spool.with_extension("plain.tar"));
    let archive = match indexed {
        Ok(archive) => archive,
        Err(IndexError::Spool { source }) => {
            panic!("a client's archive blamed on our spool: {source}")
        }
        Err(err) => {
            let message = err.to_string();
            assert!(!message.is_empty());
            return Err(Refusal { message });
        }
    };
    assert!(
        archive.head("Dockerfile", 1 << 20).is_some(),
        "an accepted archive has its Dockerfile"
    );
    let served = served(&archive);
    for (path, kind) in &served {
        if let buildkit::EntryKind::Symlink { .. } = kind {
            let lookup = |at: &str| lookup_served(&served, at);
            let resolved = buildkit::links::resolve(path, lookup);
            assert!(
                resolved.is_ok(),
                "symlink {path:?} accepted, but resolves {resolved:?}"
            );
        }
    }
    let outer = tempfile::tempdir_in(&dir).expect("a temp dir");
    let root = outer.path().join("context");
    std::fs::create_dir(&root).expect("the context dir");
    for (path, kind) in &served {
        let at = root.join(path);
        match kind {
            buildkit::EntryKind::Dir => std::fs::create_dir(&at).expect("a served dir"),
            buildkit::EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &at).expect("a served link");
            }
            _ => std::fs::write(&at, "x").expect("a served file"),
        }
    }
    let root = root.canonicalize().expect("the context dir");
    for path in served.keys() {
        if let Ok(real) = root.join(path).canonicalize() {
            assert!(
                real.starts_with(&root),
                "{path:?} leads to {}",
                real.display()
            );
        }
    }
    Ok(served.len())
}

/// Everything `archive` serves, by path, walked through `read_dir` and `open` only, in walk
/// order (a directory before its contents, so it can be laid out in this order); the files of a
/// link group checked to show one stat and one content.
fn served(
    archive: &crate::archive::Archive,
) -> std::collections::BTreeMap<String, buildkit::EntryKind> {
    use std::io::Read;

    use buildkit::{EntryKind, SourceTree};

    let mut served = std::collections::BTreeMap::new();
    let mut inodes = std::collections::HashMap::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let entries = archive
            .read_dir(&dir)
            .unwrap_or_else(|e| panic!("listed dir {dir:?} does not list: {e}"));
        let mut names = std::collections::BTreeSet::new();
        for entry in entries {
            let name = &entry.name;
            assert!(
                !matches!(name.as_str(), "" | "." | "..") && !name.contains(['/', '\0']),
                "name {name:?} in {dir:?}"
            );
            assert!(names.insert(name.clone()), "{name:?} twice in {dir:?}");
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            match &entry.kind {
                EntryKind::Dir => dirs.push(path.clone()),
                EntryKind::File => {
                    let mut bytes = Vec::new();
                    archive
                        .open(&path)
                        .and_then(|mut file| file.read_to_end(&mut bytes))
                        .unwrap_or_else(|e| panic!("file {path:?} does not read: {e}"));
                    assert_eq!(bytes.len() as u64, entry.size, "{path:?}'s size");
                    if let Some(group) = entry.link_group {
                        // The names of one inode show one stat and one content.
                        let inode = (entry.permissions, entry.mtime_ns, bytes);
                        let first = inodes.entry(group).or_insert_with(|| inode.clone());
                        assert_eq!(*first, inode, "{path:?} differs from its link group");
                    }
                }
                EntryKind::Symlink { target } => {
                    assert!(
                        !target.is_empty() && !target.starts_with('/'),
                        "{path:?} -> {target:?}"
                    );
                    assert!(archive.open(&path).is_err(), "symlink {path:?} opened");
                }
                EntryKind::Other => panic!("{path:?}: a fifo, socket or device is served"),
            }
            served.insert(path, entry.kind);
        }
    }
    served
}

fn lookup_served(
    served: &std::collections::BTreeMap<String, buildkit::EntryKind>,
    path: &str,
) -> buildkit::links::Node {
    use buildkit::{links::Node, EntryKind};

    match served.get(path) {
        None if path.is_empty() => Node::Dir,
        None => Node::Missing,
        Some(EntryKind::Dir) => Node::Dir,
        Some(EntryKind::Symlink { target }) => Node::Symlink(target.clone()),
        Some(_) => Node::File,
    }
}

/// Why the archive stage refused a request, in the words its answer would have.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The message.
    pub message: String,
}

/// Any bytes as `com.openfaas.docker.config`: a 400 naming a field, or a config whose every
/// reference, platform and build arg name passed the checks.
///
/// # Panics
/// On a violation.
pub fn fuzz_build_config(data: &[u8]) {
    use buildkit::ImageRef;

    use crate::buildconfig::BuildConfig;

    let config = match BuildConfig::parse(data) {
        Ok(config) => config,
        Err(err) => {
            let message = err.to_string();
            assert_eq!(
                crate::error::BuildError::from(err).status(),
                openfaas_runtime::http::StatusCode::BAD_REQUEST
            );
            assert!(!message.is_empty());
            return;
        }
    };
    assert!(config.skip_push || config.image.is_some());
    for reference in config.image.iter().chain(config.cache_refs()) {
        // Parsed once, normalised: the normal form and the given text both read back as it.
        for text in [reference.to_string(), reference.given().to_owned()] {
            let again: ImageRef = text.parse().expect("a reference reads back");
            assert_eq!(&again, reference, "{text:?}");
        }
        assert!(reference.is_within(&reference.as_prefix()));
        assert!(reference.is_within(&reference.namespace()));
        assert!(reference.repository().starts_with(reference.registry()));
    }
    for (index, platform) in config.platforms.iter().enumerate() {
        // Normal, and named once.
        assert_eq!(
            crate::platform::normalize(platform).as_ref(),
            Some(platform),
            "platform {platform:?}"
        );
        assert!(
            !config.platforms[..index].contains(platform),
            "{platform:?}"
        );
    }
    for name in config.build_args.keys() {
        assert!(!name.is_empty() && !name.contains(['=', '\0']), "{name:?}");
    }
}

/// Any bytes as an `X-Hub-Signature-256` header: malformed, or 32 bytes that the header spells
/// as `sha256=` and hex (whitespace around the hex allowed), and that spell the same header back.
///
/// # Panics
/// On a violation.
pub fn fuzz_signature(data: &[u8]) {
    use crate::verify::{parse_signature, VerifyError};

    match parse_signature(Some(data)) {
        Ok(digest) => {
            assert_eq!(digest.len(), 32);
            let hex = data
                .strip_prefix(b"sha256=")
                .expect("the prefix")
                .trim_ascii();
            assert!(hex.eq_ignore_ascii_case(hex::encode(&digest).as_bytes()));
            let again = format!("sha256={}", hex::encode(&digest));
            assert_eq!(parse_signature(Some(again.as_bytes())).ok(), Some(digest));
        }
        Err(VerifyError::MalformedSignature) => {}
        Err(other) => panic!("{data:?}: {other}"),
    }
}

/// Any bytes as `com.openfaas.secrets`, opened with `key`: a refusal, or values that seal and
/// open again unchanged. The bytes also go through as a secret's value, and come back whole.
///
/// # Panics
/// On a violation.
pub fn fuzz_sealed(key: &crate::sealed::OpeningKey, data: &[u8]) {
    use std::collections::BTreeMap;

    use zeroize::Zeroizing;

    match key.open(data) {
        Ok(values) => {
            let sealed = crate::sealed::seal(key.public(), &values).expect("opened names seal");
            assert_eq!(key.open(&sealed).expect("sealed to our key"), values);
        }
        Err(err) => {
            let message = err.to_string();
            assert!(!message.is_empty());
        }
    }
    let values = BTreeMap::from([("fuzz".to_owned(), Zeroizing::new(data.to_vec()))]);
    let sealed = crate::sealed::seal(key.public(), &values).expect("a valid name seals");
    assert_eq!(key.open(&sealed).expect("sealed to our key"), values);
}

/// Any bytes as a Dockerfile, scanned for the `ADD` sources the daemon would fetch itself: no
/// panic, every finding on a line of the text and either a URL (`scheme://`, `user@host:`) or
/// marked as only the daemon's to resolve, and every one-line `ADD <url> <dst>` (any case, any
/// indentation) found.
///
/// # Panics
/// On a violation.
pub fn fuzz_dockerfile(data: &[u8]) {
    use crate::dockerfile::remote_sources;

    let text = String::from_utf8_lossy(data);
    let found = remote_sources(&text);
    let lines = text.lines().count();
    for source in &found {
        assert!(source.line >= 1 && source.line <= lines, "{source:?}");
        assert!(
            source.variable
                || source.source.contains("://")
                || (source.source.contains('@') && source.source.contains(':')),
            "{source:?}"
        );
    }
    for (index, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let plain = words.len() == 3
            && words[0].eq_ignore_ascii_case("add")
            && words[1].contains("://")
            && !words[1].starts_with(['[', '-'])
            && !line.trim_end().ends_with(['\\', '`'])
            && index
                .checked_sub(1)
                .and_then(|i| text.lines().nth(i))
                .is_none_or(|prev| !prev.trim_end().ends_with(['\\', '`']));
        if plain {
            assert!(
                found.iter().any(|s| s.source == words[1]),
                "line {}: {line:?} not found in {found:?}",
                index + 1
            );
        }
    }
}
