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

/// One entry of a context given as tar headers (see [`hardlink_tree`]).
#[derive(Debug, Clone)]
pub enum Header {
    /// A directory (mode 0755).
    Dir(String),
    /// A regular file: path, mode, mtime (seconds), content.
    File(String, u32, u64, String),
    /// A hardlink: path, the earlier path it names, mode, mtime (seconds).
    Link(String, String, u32, u64),
}

/// Mtimes of [`hardlink_tree`].
pub const T0: u64 = 1_600_000_000;
/// The hardlink group `a`'s own header.
pub const T1: u64 = 1_610_000_000;
/// Its second name's header.
pub const T2: u64 = 1_700_000_000;
/// Its third (and last) name's header: the one that counts.
pub const T3: u64 = 1_650_000_000;

/// A context of hardlinks, as tar headers in order: `a` with two more names in other
/// directories whose headers carry other modes and mtimes (0755 at [`T2`], then 0600 at [`T3`]);
/// `0ign`, which `.dockerignore` leaves out, with two names kept (`y` and `sub/x`); `z/d`, whose
/// one other name `sub/e` comes first in the walk. `content_a` is `a`'s content; `dockerignore`
/// the `.dockerignore` (`"0ign\n"` leaves `0ign` out).
pub fn hardlink_tree(base_image: &str, content_a: &str, dockerignore: &str) -> Vec<Header> {
    let file =
        |path: &str, mode, mtime, data: &str| Header::File(path.into(), mode, mtime, data.into());
    let link = |path: &str, target: &str, mode, mtime| {
        Header::Link(path.into(), target.into(), mode, mtime)
    };
    vec![
        file(".dockerignore", 0o644, T0, dockerignore),
        file(
            "Dockerfile",
            0o644,
            T0,
            &format!("FROM {base_image}\nCOPY . /ctx/\n"),
        ),
        file("0ign", 0o644, T0, "ignored-first\n"),
        file("a", 0o640, T1, content_a),
        Header::Dir("sub".into()),
        link("sub/b", "a", 0o755, T2),
        link("sub/x", "0ign", 0o644, T0),
        link("y", "0ign", 0o644, T0),
        Header::Dir("z".into()),
        link("z/c", "a", 0o600, T3),
        file("z/d", 0o644, T0, "data-d\n"),
        link("sub/e", "z/d", 0o644, T0),
    ]
}

/// `headers` as a tar, every name and link target under `prefix` (`""`, or `"context/"` for a
/// request), after a `com.openfaas.docker.config` of `config` when given. Owners are 0:0.
///
/// # Panics
/// When a header cannot be written.
pub fn headers_tar(headers: &[Header], prefix: &str, config: Option<&str>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |kind, path: &str, target: Option<&str>, mode, mtime, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(data.len() as u64);
        match target {
            Some(target) => builder
                .append_link(&mut header, path, format!("{prefix}{target}"))
                .unwrap(),
            None => builder.append_data(&mut header, path, data).unwrap(),
        }
    };
    if let Some(config) = config {
        let name = "com.openfaas.docker.config";
        append(
            tar::EntryType::Regular,
            name,
            None,
            0o644,
            T0,
            config.as_bytes(),
        );
        append(tar::EntryType::Directory, "context", None, 0o755, T0, &[]);
    }
    for header in headers {
        match header {
            Header::Dir(path) => {
                let path = format!("{prefix}{path}");
                append(tar::EntryType::Directory, &path, None, 0o755, T0, &[]);
            }
            Header::File(path, mode, mtime, data) => {
                let path = format!("{prefix}{path}");
                let kind = tar::EntryType::Regular;
                append(kind, &path, None, *mode, *mtime, data.as_bytes());
            }
            Header::Link(path, target, mode, mtime) => {
                let path = format!("{prefix}{path}");
                let kind = tar::EntryType::Link;
                append(kind, &path, Some(target), *mode, *mtime, &[]);
            }
        }
    }
    builder.into_inner().unwrap()
}

/// `headers` laid out in `root` as Docker's tar extraction (`pkg/archive`) leaves them: a
/// hardlink is one more name of its target's inode, and each header's mode and mtime are set on
/// the inode after it, so the last header naming an inode decides.
///
/// # Panics
/// When `root` cannot be written.
pub fn lay_out(headers: &[Header], root: &Path) {
    let stamp = |path: &Path, mode: u32, mtime: u64| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        fs::File::options()
            .write(true)
            .open(path)
            .and_then(|file| file.set_modified(when))
            .unwrap();
    };
    for header in headers {
        match header {
            Header::Dir(path) => fs::create_dir_all(root.join(path)).unwrap(),
            Header::File(path, mode, mtime, data) => {
                write(root, path, data);
                stamp(&root.join(path), *mode, *mtime);
            }
            Header::Link(path, target, mode, mtime) => {
                fs::hard_link(root.join(target), root.join(path)).unwrap();
                stamp(&root.join(path), *mode, *mtime);
            }
        }
    }
}
