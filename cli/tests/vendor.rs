//! Offline builds of Rust functions: the builder's shrinkwrapped lock pins what the repository's
//! lock pins, and `--vendor` sends every crate, gzipped, with cargo pointed at them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use common::{cli, strings};
use function_builder_tests::bed::repo_root as repo;

/// Package name → versions, of a Cargo.lock.
fn packages(lock: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            out.entry(n)
                .or_default()
                .insert(v.trim_matches('"').to_owned());
        }
    }
    out
}

/// `pack -f stack.yml` of the repository's own stack file, with `args`, into `out`.
async fn pack_stack(args: &[&str], out: &std::path::Path) -> (bool, String, String) {
    let mut all = strings(&["pack", "-f", repo().join("stack.yml").to_str().unwrap()]);
    all.extend(strings(args));
    all.extend(strings(&["-o", out.to_str().unwrap()]));
    cli(all).await
}

#[test]
fn the_builders_shrinkwrap_lock_pins_the_versions_of_the_repository_lock() {
    let root = packages(&std::fs::read_to_string(repo().join("Cargo.lock")).unwrap());
    let wrapped =
        packages(&std::fs::read_to_string(repo().join("deploy/function-builder.lock")).unwrap());
    let stale: Vec<String> = wrapped
        .iter()
        .filter(|(name, versions)| root.get(*name).is_some_and(|r| !versions.is_subset(r)))
        .map(|(name, versions)| format!("{name} {versions:?} (Cargo.lock: {:?})", root[name]))
        .collect();
    assert!(
        stale.is_empty(),
        "deploy/function-builder.lock is stale, run deploy/shrinkwrap --update-lock: {stale:?}"
    );
    // What only the template workspace resolves is pinned too.
    assert!(wrapped.contains_key("trybuild"), "{wrapped:?}");
    assert!(wrapped.contains_key("tonic") && wrapped.contains_key("openfaas-runtime"));
}

#[tokio::test]
async fn vendor_sends_every_crate_gzipped_with_cargo_pointed_at_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("request.tar.gz");
    let (ok, _, stderr) = pack_stack(
        &[
            "--vendor",
            "--image",
            "registry.example.com/function-builder:1",
        ],
        &out,
    )
    .await;
    assert!(ok, "{stderr}");
    let body = std::fs::read(&out).unwrap();
    assert_eq!(body[..2], [0x1f, 0x8b], "not gzip");
    let mut files = BTreeMap::new();
    let mut names = BTreeSet::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&body[..]));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if ["context/.cargo/config.toml", "context/Cargo.lock"].contains(&name.as_str()) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            files.insert(name.clone(), text);
        }
        names.insert(name);
    }
    let config = &files["context/.cargo/config.toml"];
    assert!(
        config.contains("replace-with = \"vendored-sources\""),
        "{config}"
    );
    assert!(config.contains("directory = \"vendor\""), "{config}");
    // Every package of the lock sent (completed from the template's own lock) is in vendor/,
    // but the workspace's own.
    let lock = packages(&files["context/Cargo.lock"]);
    assert!(
        lock.contains_key("tonic"),
        "the lock was not completed: {lock:?}"
    );
    let local = [
        "handler",
        "buildkit",
        "openfaas-runtime",
        "openfaas-macros",
        "server",
    ];
    for (name, versions) in lock.iter().filter(|(n, _)| !local.contains(&n.as_str())) {
        for version in versions {
            let manifest = format!("context/vendor/{name}-{version}/Cargo.toml");
            assert!(names.contains(&manifest), "{manifest} not sent");
        }
    }
    // The user's template lock is untouched (cargo completed a copy).
    let (ok, _, _) = pack_stack(&["--image", "x/y:1"], &dir.path().join("plain.tar")).await;
    assert!(ok);
    let template_lock =
        std::fs::read_to_string(repo().join("template/rust-http/Cargo.lock")).unwrap();
    assert!(!packages(&template_lock).contains_key("tonic"));
}

#[tokio::test]
async fn vendor_needs_a_cargo_workspace_at_the_context_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let (ok, _, stderr) = cli(strings(&[
        "pack",
        dir.path().to_str().unwrap(),
        "--vendor",
        "--image",
        "x/y:1",
        "-o",
        dir.path().join("r.tar").to_str().unwrap(),
    ]))
    .await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "error: --vendor needs a cargo workspace: the build context has no Cargo.toml at its root"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("r.tar").exists());
}
