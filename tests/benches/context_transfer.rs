//! Context transfer benchmark: a 200 MB / 20,000-file context sent into a `COPY` by our FileSync
//! sender, and by the Docker CLI against the same Engine (BuildKit's Go FileSync client, and the
//! classic builder's tar upload), measured in the same run. Prints MB/s, wall time and ratios.
//!
//! Run inside the test bed: `tests/run cargo bench -p function-builder-tests --bench context_transfer`

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use buildkit::{BuildRequest, Client, DirTree, NetworkMode, Output};
use function_builder_tests::bed::Bed;

const FILES: usize = 20_000;
const FILE_LEN: usize = 10_000;
const ROUNDS: usize = 3;

fn main() {
    let bed = Bed::get();
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..FILES {
        let sub = dir.path().join(format!("d{:03}", i / 100));
        fs::create_dir_all(&sub).unwrap();
        fs::write(
            sub.join(format!("f{i:05}.bin")),
            vec![(i % 251) as u8; FILE_LEN],
        )
        .unwrap();
    }
    let total_mb = (FILES * FILE_LEN) as f64 / 1e6;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(Client::connect(
            &buildkit::Address::Docker(bed.docker_socket.clone()),
            None,
        ))
        .expect("connect to the bed's dockerd");

    let mut ours = Vec::new();
    let mut go_filesync = Vec::new();
    let mut tar_upload = Vec::new();
    for round in 0..ROUNDS {
        // A new nonce each round: the COPY is never a cache hit and a new shared key means a
        // full (not incremental) transfer.
        let nonce = format!("{}-{round}", std::process::id());
        fs::write(dir.path().join("nonce"), &nonce).unwrap();
        fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {}\nCOPY . /ctx/\n", bed.base_image),
        )
        .unwrap();

        let mut req = BuildRequest::new(
            Arc::new(DirTree::new(dir.path())),
            Output::Tag(format!("bench/ours:{nonce}")),
        );
        req.network = NetworkMode::None;
        req.shared_key = format!("bench-{nonce}");
        let (events, mut rx) = tokio::sync::mpsc::channel(256);
        let start = Instant::now();
        runtime.block_on(async {
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            client.build(req, events).await.expect("our build")
        });
        ours.push(start.elapsed().as_secs_f64());

        fs::write(dir.path().join("nonce"), format!("{nonce}-go")).unwrap();
        go_filesync.push(docker_build(
            &bed,
            dir.path(),
            "1",
            &format!("bench/go:{nonce}"),
        ));
        fs::write(dir.path().join("nonce"), format!("{nonce}-tar")).unwrap();
        tar_upload.push(docker_build(
            &bed,
            dir.path(),
            "0",
            &format!("bench/tar:{nonce}"),
        ));
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (ours, go, tar) = (best(&ours), best(&go_filesync), best(&tar_upload));
    println!("context: {FILES} files, {total_mb:.0} MB; best of {ROUNDS} rounds, wall time of the whole build");
    println!(
        "ours (FileSync, Rust)              {ours:7.2} s  {:7.1} MB/s",
        total_mb / ours
    );
    println!(
        "docker build, BuildKit (Go FileSync) {go:5.2} s  {:7.1} MB/s  ratio {:.2}x",
        total_mb / go,
        go / ours
    );
    println!(
        "docker build, classic (tar upload)   {tar:5.2} s  {:7.1} MB/s  ratio {:.2}x",
        total_mb / tar,
        tar / ours
    );
    println!("(ratio > 1: ours is faster)");
}

/// `docker build` of `dir` with `DOCKER_BUILDKIT` set to `buildkit`; returns its wall time.
fn docker_build(bed: &Bed, dir: &std::path::Path, buildkit: &str, tag: &str) -> f64 {
    let start = Instant::now();
    let out = Command::new("/usr/bin/docker")
        .env(
            "DOCKER_HOST",
            format!("unix://{}", bed.docker_socket.display()),
        )
        .env("DOCKER_BUILDKIT", buildkit)
        .args(["build", "-q", "--network", "none", "-t", tag])
        .arg(dir)
        .output()
        .expect("run docker build");
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed().as_secs_f64()
}
