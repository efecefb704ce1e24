//! Compiles the project's BuildKit protos with protox (no system `protoc`).
//!
//! The protos live in the repository's `proto/` folder; in a shrinkwrapped build context
//! (`configuration.copy: [proto]` in stack.yml) faas-cli copies that folder into the handler
//! folder, so it is found at `../proto` there and at `../../proto` in the repository.

use std::path::{Path, PathBuf};

const FILES: &[&str] = &[
    "control.proto",
    "fsutil.proto",
    "filesync.proto",
    "auth.proto",
    "secrets.proto",
    "health.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = proto_dir()?;
    for file in FILES {
        println!("cargo:rerun-if-changed={}", dir.join(file).display());
    }
    let descriptors = protox::compile(FILES, [&dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        // A secret's bytes are handed out by reference, never copied into a buffer of ours
        // that outlives the build (the owner zeroes them).
        .bytes(".moby.buildkit.secrets.v1.GetSecretResponse.data")
        .compile_fds(descriptors)?;
    Ok(())
}

fn proto_dir() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let candidates = [manifest.join("../proto"), manifest.join("../../proto")];
    candidates
        .iter()
        .find(|dir| dir.join("control.proto").is_file())
        .cloned()
        .ok_or_else(|| {
            let tried: Vec<_> = candidates
                .iter()
                .map(|d| Path::display(d).to_string())
                .collect();
            format!(
                "proto/ with control.proto not found (tried {})",
                tried.join(", ")
            )
        })
}
