//! Helpers shared by the CLI's test files.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_function-builder");

pub fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Runs the CLI; returns (success, stdout, stderr).
pub async fn cli(args: Vec<String>) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs the CLI with extra environment variables; returns (success, stdout, stderr).
pub async fn cli_env(args: Vec<String>, env: Vec<(String, String)>) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(&args).envs(env).output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each entry of a tar: its path, then `/` for a folder, ` -> target` for a link, or
/// ` (mode) = content` for a file.
pub fn tar_listing(tar: &[u8]) -> Vec<String> {
    use std::io::Read;
    let mut out = Vec::new();
    for entry in tar::Archive::new(tar).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let header = entry.header();
        let line = match header.entry_type() {
            tar::EntryType::Directory => format!("{path}/"),
            tar::EntryType::Symlink => {
                format!(
                    "{path} -> {}",
                    header.link_name().unwrap().unwrap().display()
                )
            }
            _ => {
                let mode = header.mode().unwrap();
                let mut content = String::new();
                entry.read_to_string(&mut content).unwrap();
                format!("{path} ({mode:o}) = {content}")
            }
        };
        out.push(line);
    }
    out
}
