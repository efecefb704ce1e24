//! Every committed input of the fuzz corpora (`fuzz/corpus/<target>/`: seeds and the
//! regressions fuzzing found) through the same entry function its fuzz target calls, so a fixed
//! bug stays fixed without libFuzzer. The `stack` corpus replays in the CLI's own tests
//! (`cli/src/stack.rs`), which is a binary crate.
//! Run: `cargo test -p function-builder-tests --test fuzz_corpus`

use std::path::{Path, PathBuf};

use handler::internals;
use handler::sealed::OpeningKey;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_owned()
}

/// Runs `check` on each file of `fuzz/corpus/<target>`, naming the file that fails.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let dir = root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("a corpus file");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(outcome.is_ok(), "{} fails its target", file.display());
    }
}

#[test]
fn archive_index() {
    replay("archive_index", |data| {
        drop(internals::fuzz_archive_index(data))
    });
}

/// The seeds do what their names say: the well-formed ones are served, the hostile ones refused
/// for the reason they were made for.
#[test]
fn archive_seeds_are_served_or_refused_as_named() {
    let index = |name: &str| {
        let data = std::fs::read(root().join("fuzz/corpus/archive_index").join(name)).unwrap();
        internals::fuzz_archive_index(&data)
    };
    for served in [
        "seed-basic",
        "seed-basic-gzip",
        "seed-gzip-two-members",
        "seed-pax",
        "seed-gnu-long-name",
        "seed-dockerfile-via-link",
        "seed-link-inside-chain",
        "seed-hardlink-group",
        "seed-secrets",
    ] {
        assert!(index(served).is_ok(), "{served}: {:?}", index(served));
    }
    #[rustfmt::skip]
    let refused = [
        ("seed-dotdot", "`..` is not allowed"), ("seed-absolute", "absolute paths are not allowed"),
        ("seed-link-escapes", "escapes the context"), ("seed-link-absolute", "escapes the context"),
        ("seed-link-chain-climbs", "escapes the context"), ("seed-link-loop", "symlinks"),
        ("seed-entry-under-link", "is a symlink"), ("seed-hardlink-outside", "absolute paths"),
        ("seed-hardlink-dotdot", "`..` is not allowed"), ("seed-hardlink-later", "not an earlier file"),
        ("seed-hardlink-through-link", "not an earlier file"), ("seed-fifo", "only files"),
        ("seed-dir-replaced", "replaces a directory"), ("seed-file-then-dir", "replaces a file"),
        ("seed-outside-context", "outside context/"), ("seed-no-config", "missing"),
        ("seed-no-dockerfile", "not found"), ("seed-dockerfile-is-dir", "not a regular file"),
        ("seed-context-is-file", "must be a directory"), ("seed-truncated", "truncated"),
        ("seed-gzip-truncated", "gzip"),
    ];
    for (name, reason) in refused {
        let outcome = index(name);
        assert!(
            outcome.as_ref().is_err_and(|e| e.message.contains(reason)),
            "{name}: {outcome:?}, expected {reason:?}"
        );
    }
}

#[test]
fn dockerfile() {
    replay("dockerfile", internals::fuzz_dockerfile);
}

#[test]
fn build_config() {
    replay("build_config", internals::fuzz_build_config);
}

#[test]
fn signature() {
    replay("signature", internals::fuzz_signature);
}

#[test]
fn dockerignore() {
    replay("dockerignore", internals::fuzz_dockerignore);
}

#[test]
fn sealed() {
    let key = std::fs::read_to_string(root().join("tests/fixtures/sealed/key")).expect("the key");
    let key = OpeningKey::parse(&key).expect("the test key");
    replay("sealed", |data| internals::fuzz_sealed(&key, data));
}

#[test]
fn docker_config() {
    replay("docker_config", internals::fuzz_docker_config);
}
