//! Context transfer benchmark, every sender cold, all against the bed's dockerd in one run:
//! - small: 20,000 files x 10 KiB (205 MB); large: 10 files x 100 MiB of random bytes (1 GiB);
//! - senders: our Builder API (a signed request tar POSTed to the builder running in a process of
//!   its own, as production runs it, served from its spool), our BuildKit client alone (a
//!   directory on disk), and for the small context the Docker Engine's own
//!   `POST /build?version=2` with the same context as a tar body;
//! - every run a new nonce (no cache hit) and a new shared key or repository (a full transfer).
//!
//! Prints medians with min–max over `BENCH_RUNS` runs (default 3) and the ratios; the API's
//! intake alone (upload, HMAC, spool, index: the same request refused right after the index);
//! the builder process's CPU per build over `BENCH_CPU_BUILDS` consecutive small builds
//! (default 10); its peak RSS after the large builds; and a warm rebuild with one file changed.
//! With `TEST_BUILDKITD_ADDR` (a standalone buildkitd) and `BUILDCTL` (its buildctl) set, the
//! small context also goes through buildctl, our client alone and the API against that daemon,
//! its cache pruned before every run. `BENCH_ONLY=small`, `large` or `standalone` runs one part.
//!
//! Run inside the test bed: `tests/run cargo bench -p function-builder-tests --bench context_transfer`

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildkit::{BuildRequest, Client, DirTree, NetworkMode, Output};
use function_builder_tests::api::{sign, SECRET};
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{full, read_body, send_tcp, send_unix};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runs = env_number("BENCH_RUNS", 3).max(1);
    let consecutive = env_number("BENCH_CPU_BUILDS", 10);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let bed = Bed::get();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(Client::connect(
            &buildkit::Address::Docker(bed.docker_socket.clone()),
            None,
        ))
        .expect("connect to the bed's dockerd");
    let builder = BuilderProcess::start(&format!("docker://{}", bed.docker_socket.display()));
    let bench = Bench {
        bed: &bed,
        runtime: &runtime,
        client: &client,
        builder: &builder,
        runs,
    };
    if only.is_empty() || only == "small" {
        bench.small(consecutive);
    }
    if only.is_empty() || only == "large" {
        bench.large();
    }
    if let (Ok(address), Ok(buildctl)) = (
        std::env::var("TEST_BUILDKITD_ADDR"),
        std::env::var("BUILDCTL"),
    ) {
        if only.is_empty() || only == "standalone" {
            bench.standalone(&address, &buildctl);
        }
    }
}

struct Bench<'a> {
    bed: &'a Bed,
    runtime: &'a tokio::runtime::Runtime,
    /// Our client and the builder process, both on the bed's dockerd.
    client: &'a Client,
    builder: &'a BuilderProcess,
    runs: usize,
}

/// The 20,000-file context in a temp dir.
fn small_context() -> (tempfile::TempDir, usize, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (files, len) = (20_000, 10_240);
    for i in 0..files {
        let sub = dir.path().join(format!("d{:03}", i / 100));
        fs::create_dir_all(&sub).unwrap();
        let mut data = vec![(i % 251) as u8; len];
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        fs::write(sub.join(format!("f{i:05}.bin")), data).unwrap();
    }
    (dir, files, len)
}

impl Bench<'_> {
    fn small(&self, consecutive: usize) {
        let (dir, files, len) = small_context();
        let mb = (files * len) as f64 / 1e6;
        let (mut api, mut cpu, mut intake, mut alone, mut engine) =
            (vec![], vec![], vec![], vec![], vec![]);
        for run in 0..self.runs.max(consecutive) {
            let nonce = self.nonce(dir.path(), "small", run);
            let used = self.builder.cpu_seconds();
            api.push(self.api(self.builder, dir.path(), &nonce, 200));
            cpu.push(self.builder.cpu_seconds() - used);
            if run >= self.runs {
                continue; // the remaining API runs only measure CPU across consecutive builds
            }
            intake.push(self.api(self.builder, dir.path(), &format!("{nonce}-intake"), 400));
            alone.push(self.alone(self.client, dir.path(), &nonce));
            engine.push(self.engine(dir.path(), &nonce));
        }
        println!(
            "\nsmall context: {files} files x {len} B = {mb:.0} MB, COPY . /ctx/, cold; median (min-max) of {} runs",
            self.runs
        );
        let api = &api[..self.runs];
        row("Builder API (own process, served from spool)", api, mb);
        row(
            "  of which intake (upload, HMAC, spool, index)",
            &intake,
            mb,
        );
        row("our BuildKit client alone (dir on disk)", &alone, mb);
        row(
            "Docker Engine POST /build?version=2 (tar body)",
            &engine,
            mb,
        );
        println!(
            "API / client alone: {:.2}x   API / Engine: {:.2}x   (< 1: the API is faster)",
            median(api) / median(&alone),
            median(api) / median(&engine)
        );
        let cpu: Vec<String> = cpu.iter().map(|c| format!("{c:.2}")).collect();
        println!(
            "builder CPU s per API build, {} consecutive builds: {}",
            cpu.len(),
            cpu.join(" ")
        );

        // Warm: the first run's repository again (its shared key), with one file changed.
        let first = self.nonce(dir.path(), "small", 0);
        fs::write(dir.path().join("d000/f00000.bin"), vec![7u8; len]).unwrap();
        let (secs, answer) = self.post(self.builder, dir.path(), &first, 200);
        println!(
            "warm API rebuild, one file changed: {secs:.2} s, sent {}",
            sent_line(&answer)
        );
    }

    /// The small context on a standalone buildkitd: buildctl, our client alone and the API, the
    /// daemon's cache pruned before every run of every sender (buildctl's local-source key is
    /// the same for every run, so a new key alone would not make it cold).
    fn standalone(&self, address: &str, buildctl: &str) {
        let client = self
            .runtime
            .block_on(Client::connect(
                &address.parse().expect("TEST_BUILDKITD_ADDR"),
                None,
            ))
            .expect("connect to TEST_BUILDKITD_ADDR");
        let builder = BuilderProcess::start(address);
        let (dir, files, len) = small_context();
        let mb = (files * len) as f64 / 1e6;
        let prune = || {
            let out = Command::new(buildctl)
                .args(["--addr", address, "prune", "--all"])
                .output()
                .expect("run buildctl prune");
            assert!(
                out.status.success(),
                "buildctl prune: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (mut ctl, mut alone, mut api) = (vec![], vec![], vec![]);
        for run in 0..self.runs {
            let nonce = self.nonce(dir.path(), "standalone", run);
            prune();
            let start = Instant::now();
            let out = Command::new(buildctl)
                .args(["--addr", address, "build", "--frontend", "dockerfile.v0"])
                .arg(format!("--local=context={}", dir.path().display()))
                .arg(format!("--local=dockerfile={}", dir.path().display()))
                .args(["--opt", "force-network-mode=none"])
                .arg(format!(
                    "--output=type=image,name=bench/buildctl:{nonce},push=false"
                ))
                .output()
                .expect("run buildctl build");
            ctl.push(start.elapsed().as_secs_f64());
            assert!(
                out.status.success(),
                "buildctl build: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            prune();
            alone.push(self.alone(&client, dir.path(), &nonce));
            prune();
            api.push(self.api(&builder, dir.path(), &nonce, 200));
        }
        println!(
            "\nsmall context on standalone buildkitd {address}, cache pruned before every run; median (min-max) of {} runs",
            self.runs
        );
        row("buildctl (Go FileSync)", &ctl, mb);
        row("our BuildKit client alone (dir on disk)", &alone, mb);
        row("Builder API (own process, served from spool)", &api, mb);
        println!(
            "API / client alone: {:.2}x   API / buildctl: {:.2}x   client alone / buildctl: {:.2}x",
            median(&api) / median(&alone),
            median(&api) / median(&ctl),
            median(&alone) / median(&ctl)
        );
    }

    fn large(&self) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (files, len) = (10, 100 << 20);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
        for i in 0..files {
            let mut data = vec![0u8; len];
            for chunk in data.chunks_mut(8) {
                // xorshift64: random enough that nothing compresses or dedups.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            fs::write(dir.path().join(format!("big{i}.bin")), data).unwrap();
        }
        let mb = (files * len) as f64 / 1e6;
        let (mut api, mut intake, mut alone) = (vec![], vec![], vec![]);
        for run in 0..self.runs {
            let nonce = self.nonce(dir.path(), "large", run);
            api.push(self.api(self.builder, dir.path(), &nonce, 200));
            intake.push(self.api(self.builder, dir.path(), &format!("{nonce}-intake"), 400));
            alone.push(self.alone(self.client, dir.path(), &nonce));
        }
        println!(
            "\nlarge context: {files} files x {} MiB = {mb:.0} MB, cold; median (min-max) of {} runs",
            len >> 20,
            self.runs
        );
        row("Builder API (own process, served from spool)", &api, mb);
        row(
            "  of which intake (upload, HMAC, spool, index)",
            &intake,
            mb,
        );
        row("our BuildKit client alone (dir on disk)", &alone, mb);
        println!("API / client alone: {:.2}x", median(&api) / median(&alone));
        println!(
            "builder peak RSS after the large builds: {:.1} MiB",
            self.builder.peak_rss_kib() as f64 / 1024.0
        );
    }

    /// A new nonce in the context and a fresh Dockerfile: no cache hit.
    fn nonce(&self, dir: &Path, name: &str, run: usize) -> String {
        let nonce = format!("{name}-{}-{run}", std::process::id());
        fs::write(dir.join("nonce"), &nonce).unwrap();
        fs::write(
            dir.join("Dockerfile"),
            format!("FROM {}\nCOPY . /ctx/\n", self.bed.base_image),
        )
        .unwrap();
        nonce
    }

    /// One API build (a new repository: a new shared key); `400` asks for a config refused
    /// right after the index, which times the intake alone.
    fn api(&self, builder: &BuilderProcess, dir: &Path, nonce: &str, status: u16) -> f64 {
        self.post(builder, dir, nonce, status).0
    }

    fn post(
        &self,
        builder: &BuilderProcess,
        dir: &Path,
        nonce: &str,
        status: u16,
    ) -> (f64, String) {
        let platforms = if status == 400 {
            r#","platforms":["not-a-platform"]"#
        } else {
            ""
        };
        let config = format!(r#"{{"image":"bench/api-{nonce}:1","skipPush":true{platforms}}}"#);
        let tar = request_tar(dir, &config);
        // Signed before the clock starts: the CLI signs while it packs.
        let signature = sign(SECRET, &tar);
        let start = Instant::now();
        let (got, answer) = self.runtime.block_on(async {
            let req = http::Request::post("/build")
                .header("host", "builder")
                .header("x-build-signature", signature)
                .body(full(tar))
                .unwrap();
            let resp = send_tcp(builder.addr, req).await;
            let got = resp.status().as_u16();
            (
                got,
                String::from_utf8_lossy(&read_body(resp).await).into_owned(),
            )
        });
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got, status, "API build: {answer}");
        (secs, answer)
    }

    fn alone(&self, client: &Client, dir: &Path, nonce: &str) -> f64 {
        fs::write(dir.join("nonce"), format!("{nonce}-alone")).unwrap();
        let mut req = BuildRequest::new(
            Arc::new(DirTree::new(dir)),
            Output::Tag(format!("bench/alone:{nonce}")),
        );
        req.network = NetworkMode::None;
        req.shared_key = format!("bench-{nonce}");
        let (events, mut rx) = tokio::sync::mpsc::channel(256);
        let start = Instant::now();
        self.runtime.block_on(async {
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            client.build(req, events).await.expect("our client's build")
        });
        start.elapsed().as_secs_f64()
    }

    fn engine(&self, dir: &Path, nonce: &str) -> f64 {
        fs::write(dir.join("nonce"), format!("{nonce}-engine")).unwrap();
        let context = context_tar(dir);
        let start = Instant::now();
        self.runtime.block_on(async {
            let req = http::Request::post(format!(
                "/build?version=2&networkmode=none&q=1&t=bench/engine:{nonce}"
            ))
            .header("host", "docker")
            .header("content-type", "application/x-tar")
            .body(full(context))
            .unwrap();
            let resp = send_unix(&self.bed.docker_socket, req).await;
            let status = resp.status();
            let out = String::from_utf8_lossy(&read_body(resp).await).into_owned();
            assert!(
                status.is_success() && !out.contains("errorDetail"),
                "Engine build: {status} {out}"
            );
        });
        start.elapsed().as_secs_f64()
    }
}

/// The builder as production runs it: its own process, settings from the environment.
struct BuilderProcess {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl BuilderProcess {
    fn start(buildkit_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("payload-secret");
        fs::write(&secret, SECRET).unwrap();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_builder-server"))
            .env("upstream_url", "http://127.0.0.1:0")
            .env("payload_secret_path", &secret)
            .env("buildkit_url", buildkit_url)
            .env("build_network", "none")
            .env("docker_config", dir.path().join("none.json"))
            .env("work_dir", &work)
            .env("max_request_bytes", (2u64 << 30).to_string())
            .env("max_unpacked_bytes", (2u64 << 30).to_string())
            .env("max_entries", "100000")
            .env("read_timeout", "10m")
            .env("write_timeout", "10m")
            .env("build_timeout", "9m")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start builder-server");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        // Drains the log for the whole run, so the builder never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("builder-server logs its address within 30 s")
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn status_field(&self, name: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/<pid>/status"))
    }

    fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    /// User + system CPU seconds of the builder process so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}

impl Drop for BuilderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(v: &[f64]) -> f64 {
    stats(v).0
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn row(name: &str, v: &[f64], mb: f64) {
    let (med, min, max) = stats(v);
    println!(
        "{name:<48} {med:6.2} s ({min:.2}-{max:.2})  {:7.1} MB/s",
        mb / med
    );
}

/// The `context: sent …` part of a JSON answer's log.
fn sent_line(answer: &str) -> String {
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
