//! Context transfer benchmark, every sender cold: a 200 MB / 20,000-file context into a `COPY`,
//! through our Builder API (a signed request tar POSTed to the builder, served from its spool),
//! through our BuildKit client alone (a directory on disk), and through the Docker Engine's own
//! `POST /build?version=2` with the same context as a tar body, all against the bed's dockerd in
//! the same run. Every run uses a new nonce (no cache hit) and a new shared key or repository
//! (a full transfer). Prints medians with min–max over `BENCH_RUNS` runs (default 3), ratios, and
//! the process CPU per API build over `BENCH_CPU_BUILDS` consecutive builds (default 10). The API's intake alone (upload, HMAC,
//! spool, index) is timed with the same request refused right after the index.
//!
//! Run inside the test bed: `tests/run cargo bench -p function-builder-tests --bench context_transfer`

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use buildkit::{BuildRequest, Client, DirTree, NetworkMode, Output};
use function_builder_tests::api::{sign, Server, SECRET};
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{full, read_body, send_tcp, send_unix};

const FILES: usize = 20_000;
const FILE_LEN: usize = 10_240;

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let consecutive: usize = std::env::var("BENCH_CPU_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let bed = Bed::get();
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..FILES {
        let sub = dir.path().join(format!("d{:03}", i / 100));
        fs::create_dir_all(&sub).unwrap();
        let mut data = vec![(i % 251) as u8; FILE_LEN];
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        fs::write(sub.join(format!("f{i:05}.bin")), data).unwrap();
    }
    let total_mb = (FILES * FILE_LEN) as f64 / 1e6;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(Client::connect(
            &buildkit::Address::Docker(bed.docker_socket.clone()),
            None,
        ))
        .expect("connect to the bed's dockerd");
    let server = runtime.block_on(Server::start(&bed, |s| {
        s.max_request_bytes = 1 << 30;
        s.max_unpacked_bytes = 1 << 30;
        s.max_entries = 100_000;
    }));

    let (mut api, mut api_cpu, mut alone, mut engine) = (vec![], vec![], vec![], vec![]);
    let mut intake = vec![];
    for run in 0..runs.max(consecutive) {
        let nonce = format!("{}-{run}", std::process::id());
        fs::write(dir.path().join("nonce"), &nonce).unwrap();
        fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {}\nCOPY . /ctx/\n", bed.base_image),
        )
        .unwrap();

        // The API: a new repository per run, so its per-repository shared key is new.
        let config = format!(r#"{{"image":"bench/api-{nonce}:1","skipPush":true}}"#);
        let request = signed(request_tar(dir.path(), &config));
        let cpu = cpu_seconds();
        let start = Instant::now();
        let (status, answer) = runtime.block_on(post(&server, request));
        api.push(start.elapsed().as_secs_f64());
        api_cpu.push(cpu_seconds() - cpu);
        assert_eq!(status, 200, "API build: {answer}");
        if run >= runs {
            continue; // the remaining API runs only measure CPU across consecutive builds
        }

        // The API's intake alone: the same request with a config refused after the index.
        let config =
            format!(r#"{{"image":"bench/api-{nonce}:1","skipPush":true,"platforms":["x"]}}"#);
        let request = signed(request_tar(dir.path(), &config));
        let start = Instant::now();
        let (status, answer) = runtime.block_on(post(&server, request));
        intake.push(start.elapsed().as_secs_f64());
        assert_eq!(status, 400, "intake only: {answer}");

        fs::write(dir.path().join("nonce"), format!("{nonce}-alone")).unwrap();
        let mut req = BuildRequest::new(
            Arc::new(DirTree::new(dir.path())),
            Output::Tag(format!("bench/alone:{nonce}")),
        );
        req.network = NetworkMode::None;
        req.shared_key = format!("bench-{nonce}");
        let (events, mut rx) = tokio::sync::mpsc::channel(256);
        let start = Instant::now();
        runtime.block_on(async {
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            client.build(req, events).await.expect("our client's build")
        });
        alone.push(start.elapsed().as_secs_f64());

        fs::write(dir.path().join("nonce"), format!("{nonce}-engine")).unwrap();
        let context = context_tar(dir.path());
        let start = Instant::now();
        runtime.block_on(engine_build(
            &bed,
            context,
            &format!("bench/engine:{nonce}"),
        ));
        engine.push(start.elapsed().as_secs_f64());
    }

    // Warm: the first run's repository again (its shared key), with one file changed.
    let first = format!("{}-0", std::process::id());
    fs::write(dir.path().join("nonce"), &first).unwrap();
    fs::write(dir.path().join("d000/f00000.bin"), vec![7u8; FILE_LEN]).unwrap();
    let config = format!(r#"{{"image":"bench/api-{first}:1","skipPush":true}}"#);
    let request = signed(request_tar(dir.path(), &config));
    let start = Instant::now();
    let (status, answer) = runtime.block_on(post(&server, request));
    let warm = start.elapsed().as_secs_f64();
    assert_eq!(status, 200, "warm API build: {answer}");
    let sent_line = |answer: &str| {
        let json: serde_json::Value = serde_json::from_str(answer).unwrap();
        json["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| {
                l.as_str()?
                    .split_once("context: sent ")
                    .map(|(_, s)| s.to_owned())
            })
            .next_back()
            .unwrap_or_default()
    };

    println!("context: {FILES} files x {FILE_LEN} B = {total_mb:.0} MB, COPY . /ctx/, cold; median (min-max) of {runs} runs");
    let api_times = &api[..runs];
    let row = |name: &str, v: &[f64]| {
        let (med, min, max) = stats(v);
        println!(
            "{name:<44} {med:6.2} s ({min:.2}-{max:.2})  {:6.1} MB/s",
            total_mb / med
        );
    };
    row(
        "Builder API (POST signed tar, served from spool)",
        api_times,
    );
    row("  of which intake (upload, HMAC, spool, index)", &intake);
    row("our BuildKit client alone (dir on disk)", &alone);
    row("Docker Engine POST /build?version=2 (tar body)", &engine);
    let (api_med, alone_med, engine_med) = (stats(api_times).0, stats(&alone).0, stats(&engine).0);
    println!(
        "API / client alone: {:.2}x   API / Engine: {:.2}x   (< 1: the API is faster)",
        api_med / alone_med,
        api_med / engine_med
    );
    println!(
        "warm API rebuild, one file changed: {warm:.2} s, sent {}",
        sent_line(&answer)
    );
    let cpu: Vec<String> = api_cpu.iter().map(|c| format!("{c:.2}")).collect();
    println!(
        "process CPU s per API build, {} consecutive builds: {}",
        api_cpu.len(),
        cpu.join(" ")
    );
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn context_tar(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

fn request_tar(dir: &Path, config: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(config.len() as u64);
    header.set_mode(0o644);
    b.append_data(&mut header, "com.openfaas.docker.config", config.as_bytes())
        .unwrap();
    b.append_dir_all("context", dir).unwrap();
    b.into_inner().unwrap()
}

/// A request tar and its signature, made before the clock starts: the client's signing is not
/// the builder's cost (the CLI signs while it packs).
struct Signed(Vec<u8>, String);

fn signed(tar: Vec<u8>) -> Signed {
    let signature = sign(SECRET, &tar);
    Signed(tar, signature)
}

async fn post(server: &Server, Signed(tar, signature): Signed) -> (u16, String) {
    let req = http::Request::post("/build")
        .header("host", "builder")
        .header("x-build-signature", signature)
        .body(full(tar))
        .unwrap();
    let resp = send_tcp(server.addr, req).await;
    let status = resp.status().as_u16();
    let answer = String::from_utf8_lossy(&read_body(resp).await).into_owned();
    (status, answer)
}

async fn engine_build(bed: &Bed, context: Vec<u8>, tag: &str) {
    let req = http::Request::post(format!("/build?version=2&networkmode=none&q=1&t={tag}"))
        .header("host", "docker")
        .header("content-type", "application/x-tar")
        .body(full(context))
        .unwrap();
    let resp = send_unix(&bed.docker_socket, req).await;
    let status = resp.status();
    let out = String::from_utf8_lossy(&read_body(resp).await).into_owned();
    assert!(
        status.is_success() && !out.contains("errorDetail"),
        "Engine build: {status} {out}"
    );
}
