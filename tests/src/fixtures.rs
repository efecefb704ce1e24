//! Build contexts for the BuildKit tests, made in temp dirs.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Size of the big file of [`tricky_context`].
pub const BIG_FILE_LEN: usize = 64 * 1024 * 1024;

/// A context that exercises FileSync: nested dirs, an empty dir, a symlink, an executable, names
/// that sort between `a` and `a/` (`a-b`, `a.txt` beside dir `a`), a 64 MiB file and a
/// `.dockerignore` with an exception. Returns the dir and the big file's SHA-256 (hex).
///
/// # Panics
/// When the temp dir cannot be written.
pub fn tricky_context(base_image: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    write(
        root,
        "Dockerfile",
        &format!("FROM {base_image}\nRUN echo built-by-run > /built.txt\nCOPY . /ctx/\n"),
    );
    write(root, "a/b/c/deep.txt", "deep\n");
    write(root, "a-b", "dash\n");
    write(root, "a.txt", "dot\n");
    write(root, "bin/run.sh", "#!/bin/sh\necho run\n");
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    symlink("a/b/c/deep.txt", root.join("link")).unwrap();
    write(root, "ignored.txt", "must not be sent\n");
    write(root, "secret/key", "must not be sent\n");
    write(root, "debug.log", "must not be sent\n");
    write(root, "keep.log", "kept by an exception\n");
    write(
        root,
        ".dockerignore",
        "ignored.txt\nsecret\n*.log\n!keep.log\n",
    );
    let mut big = Vec::with_capacity(BIG_FILE_LEN);
    for i in 0..BIG_FILE_LEN / 4096 {
        big.extend(std::iter::repeat_n((i % 253) as u8, 4096));
    }
    let digest = format!("{:x}", Sha256::digest(&big));
    fs::write(root.join("big.bin"), big).unwrap();
    (dir, digest)
}

/// A context holding only `dockerfile` as its Dockerfile.
///
/// # Panics
/// When the temp dir cannot be written.
pub fn dockerfile_context(dockerfile: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "Dockerfile", dockerfile);
    dir
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}
