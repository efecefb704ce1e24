//! `--vendor`: every crate a Rust context's cargo workspace needs, put into the context itself
//! (`vendor/`, with `.cargo/config.toml` pointing cargo there), so its image builds with no
//! network, as on a builder with `build_network: none`. `deploy/shrinkwrap --vendor` does the
//! same to a tree on disk.
//!
//! The layout is mirrored into a temp dir (folders made, files linked, the lock copied so cargo
//! never writes through to the user's), `cargo vendor` runs there, and what it made is laid over
//! the layout. A lock that lacks packages is completed by `cargo vendor` and sent completed: the
//! image builds with exactly the crates vendored.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::layout::{Layout, Links, Node};

/// The targets crates are kept for when `cargo-vendor-filterer` is installed: Linux, both libcs,
/// both architectures the template builds for.
const PLATFORMS: [&str; 4] = [
    "x86_64-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-gnu",
    "aarch64-unknown-linux-musl",
];

/// The config that makes cargo take every crate from `vendor/`.
const CARGO_CONFIG: &str = "\
# Written by function-builder --vendor: every crate comes from vendor/, nothing from the network.
[source.crates-io]
replace-with = \"vendored-sources\"

[source.vendored-sources]
directory = \"vendor\"

[net]
offline = true
";

/// Vendors the crates of the cargo workspace at the root of `layout` into it. The returned dir
/// holds the vendored files the layout now points at: keep it until the context is packed.
pub(crate) fn vendor(layout: &mut Layout) -> Result<TempDir> {
    if layout.file("Cargo.toml").is_none() {
        bail!("--vendor needs a cargo workspace: the build context has no Cargo.toml at its root");
    }
    for taken in ["vendor", ".cargo"] {
        if layout.root().contains_key(taken) {
            bail!("--vendor writes {taken}/, and the build context already has one");
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("function-builder-vendor")
        .tempdir()
        .context("creating a temp dir to vendor in")?;
    mirror(layout.root(), dir.path(), true)?;
    let filterer = Command::new("cargo")
        .args(["vendor-filterer", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut cargo = Command::new("cargo");
    if filterer {
        cargo.arg("vendor-filterer");
        cargo.args(PLATFORMS.map(|p| format!("--platform={p}")));
    } else {
        eprintln!(
            "note: cargo-vendor-filterer is not installed: vendoring the crates of every platform"
        );
        cargo.args(["vendor", "--quiet"]);
    }
    let status = cargo
        .args(["--versioned-dirs", "vendor"])
        .current_dir(dir.path())
        // cargo vendor prints the config to use on stdout; ours is written below.
        .stdout(Stdio::null())
        .status()
        .context("running cargo (is it installed?)")?;
    if !status.success() {
        bail!("cargo vendor failed ({status}): see its messages above");
    }
    let config = dir.path().join(".cargo");
    fs::create_dir(&config).context("writing .cargo/config.toml")?;
    fs::write(config.join("config.toml"), CARGO_CONFIG).context("writing .cargo/config.toml")?;
    for name in ["vendor", ".cargo", "Cargo.lock"] {
        layout.overlay(&dir.path().join(name), name, Links::Keep, &[])?;
    }
    Ok(dir)
}

/// Makes `children` under `at`: folders as folders, files as links to their sources (the lock as
/// a copy, which cargo may rewrite), links as links.
fn mirror(children: &BTreeMap<String, Node>, at: &Path, root: bool) -> Result<()> {
    for (name, node) in children {
        let path = at.join(name);
        match node {
            Node::Dir(grandchildren) => {
                fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
                mirror(grandchildren, &path, false)?;
            }
            Node::File { source, .. } if root && name == "Cargo.lock" => {
                fs::copy(source, &path).with_context(|| format!("copying {}", source.display()))?;
            }
            Node::File { source, .. } => std::path::absolute(source)
                .and_then(|source| std::os::unix::fs::symlink(source, &path))
                .with_context(|| format!("linking {}", source.display()))?,
            Node::Symlink(target) => std::os::unix::fs::symlink(target, &path)
                .with_context(|| format!("linking {}", path.display()))?,
        }
    }
    Ok(())
}
