//! The performance benchmark: function-builder against what a user would run instead, in one run
//! on one machine, every run cold for every sender (a new nonce in the context, so no cache hit,
//! and a new shared key: a new repository for our API and client, a new `--config` dir for the
//! Docker CLI, a pruned daemon cache for buildctl). Prints one Markdown table of medians with
//! min–max over `BENCH_RUNS` runs (default 3) and each row's ratio to its peer.
//!
//! Rows: the 20,000 × 10 KiB and 10 × 100 MiB contexts (`COPY . /ctx/`) through our API end to
//! end (the CLI's `build` → the builder in a process of its own), the Docker Engine's
//! `POST /build?version=2` with the same context as a tar body, the Docker CLI with BuildKit, and
//! our BuildKit client alone; with `TEST_BUILDKITD_ADDR` and `BUILDCTL` the small context on that
//! standalone buildkitd through buildctl, our client and our API; warm rebuilds (the same request
//! twice, then one file changed); a fully cached rebuild through the API and the client alone;
//! intake (HMAC-SHA256 and spool of a 1 GiB body) against `openssl dgst -sha256 -hmac`; the CLI's
//! CPU and peak RSS; signature rejections per second (`wrk`) while a build runs; the builder's
//! CPU and peak RSS per build; the builder's own image built through our API against
//! `docker build` (cold and with one source file changed), its compressed size and its server's
//! start-up time (`selfbuild.rs`).
//!
//! "platform rebuild" (`platform.rs`): 12 functions rebuilt in rounds over 2 standalone buildkitds,
//! our routing against a random daemon per build and one daemon, with and without the registry
//! cache.
//!
//! `BENCH_ONLY=small,large,standalone,warm,cached,intake,rejection,self,platform` runs some parts
//! only.
//! `BENCH_SMOKE=1` runs everything once on tiny inputs (a check that the program works, not a
//! measurement). Run it with `tests/bench` (see docs/benchmarks.md, "Performance").

mod platform;
mod procs;
mod selfbuild;
mod table;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use buildkit::{BuildRequest, Client, DirTree, NetworkMode, Output};
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{full, read_body, send_tcp, send_unix};
use procs::{measure, BuilderProcess, Measured};
use table::{median, Table, Unit};

/// Sizes of one run of the benchmark.
struct Sizes {
    runs: usize,
    small: (usize, usize),
    large: (usize, usize),
    intake_bytes: u64,
    wrk_secs: u32,
}

fn main() {
    let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
    let sizes = if smoke {
        Sizes {
            runs: 1,
            small: (200, 10_240),
            large: (2, 1 << 20),
            intake_bytes: 16 << 20,
            wrk_secs: 2,
        }
    } else {
        Sizes {
            runs: std::env::var("BENCH_RUNS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3)
                .max(1),
            small: (20_000, 10_240),
            large: (10, 100 << 20),
            intake_bytes: 1 << 30,
            wrk_secs: 10,
        }
    };
    let bed = Bed::get();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let docker = format!("docker://{}", bed.docker_socket.display());
    let client = runtime
        .block_on(Client::connect(&docker.parse().unwrap(), None))
        .expect("connect to the bed's dockerd");
    let bench = Bench {
        bed: &bed,
        runtime: &runtime,
        cli: cli_binary(),
        runs: sizes.runs,
        nonce: std::process::id(),
    };
    let mut table = Table::default();
    let small = context(sizes.small, false);
    let large = context(sizes.large, true);

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| {
        let run = only.is_empty() || only.split(',').any(|o| o == name);
        if run {
            bench.settle();
        }
        run
    };
    if part("small") {
        let builder = BuilderProcess::start(&docker);
        bench.contexts(&mut table, "small", &small, &client, &builder);
    }
    if part("large") {
        let builder = BuilderProcess::start(&docker);
        bench.contexts(&mut table, "large", &large, &client, &builder);
    }
    if let (Ok(address), Ok(buildctl)) = (
        std::env::var("TEST_BUILDKITD_ADDR"),
        std::env::var("BUILDCTL"),
    ) {
        if part("standalone") {
            bench.standalone(&mut table, &small, &address, &buildctl);
        }
    }
    let builder = BuilderProcess::start(&docker);
    if part("warm") {
        bench.warm(&mut table, &small, &builder);
    }
    if part("cached") {
        bench.cached(&mut table, &small, &client, &builder);
    }
    if part("intake") {
        bench.intake(&mut table, &builder, sizes.intake_bytes);
    }
    if part("rejection") {
        bench.rejection(&mut table, &small, &builder, sizes.wrk_secs);
    }
    if part("self") {
        bench.self_build(&mut table, &builder);
    }
    if part("platform") {
        platform::platform(&mut table, &bed, &runtime, smoke);
        platform::pool_load(&mut table, &bed, &runtime, smoke);
    }

    println!("\n## function-builder performance\n");
    println!(
        "{} run(s) a row, cold unless the row says otherwise; {}",
        sizes.runs,
        machine()
    );
    println!("{}", table.render());
}

struct Bench<'a> {
    bed: &'a Bed,
    runtime: &'a tokio::runtime::Runtime,
    cli: PathBuf,
    runs: usize,
    nonce: u32,
}

/// A generated context: `files` files of `len` bytes, random (`random`) or patterned.
struct Context {
    dir: tempfile::TempDir,
    bytes: u64,
    label: String,
}

fn context((files, len): (usize, usize), random: bool) -> Context {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    for i in 0..files {
        let sub = dir.path().join(format!("d{:03}", i / 100));
        fs::create_dir_all(&sub).unwrap();
        let mut data = vec![(i % 251) as u8; len];
        if random {
            for chunk in data.chunks_mut(8) {
                // xorshift64: random enough that nothing compresses or dedups.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
        } else {
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        }
        fs::write(sub.join(format!("f{i:05}.bin")), data).unwrap();
    }
    let size = if len >= 1 << 20 {
        format!("{} MiB", len >> 20)
    } else {
        format!("{} KiB", len >> 10)
    };
    Context {
        dir,
        bytes: (files * len) as u64,
        label: format!("{files} × {size}"),
    }
}

impl Context {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn mb(&self) -> f64 {
        self.bytes as f64 / 1e6
    }
}

/// The CLI built in release mode beside this benchmark (`tests/bench` builds it).
fn cli_binary() -> PathBuf {
    let path = std::env::var_os("FB_CLI").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/function-builder"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} not found: run the benchmark with tests/bench, which builds the CLI",
        path.display()
    );
    path
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or_default();
    format!(
        "machine: {cpus} CPUs ({model}), {:.0} GiB RAM",
        mem / 1024.0 / 1024.0
    )
}

/// User + system CPU seconds of this process so far (our client alone runs in it).
fn own_cpu() -> f64 {
    procs::cpu_of("self")
}

const API: &str = "our API: CLI build → builder";
const ENGINE: &str = "Docker Engine POST /build (tar body)";
const DOCKER_CLI: &str = "Docker CLI with BuildKit";
const ALONE: &str = "our BuildKit client alone";

impl Bench<'_> {
    /// Before each part: the daemon's build cache and the images earlier parts made removed,
    /// and the dirty pages of their layers written out, so no part pays for another's.
    fn settle(&self) {
        let (_, images, _) = self
            .bed
            .docker(&["images", "-q", "--filter", "reference=bench/*"]);
        let ids: Vec<&str> = images.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(ids);
            self.bed.docker(&args);
        }
        self.bed.docker(&["builder", "prune", "-af"]);
        let _ = Command::new("sync").status();
    }

    /// A new nonce in the context and a fresh Dockerfile: no cache hit for any sender.
    fn fresh(&self, ctx: &Context, tag: &str) -> String {
        let nonce = format!("{tag}-{}-{}", self.nonce, crate::next());
        fs::write(ctx.path().join("nonce"), &nonce).unwrap();
        fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM {}\nCOPY . /ctx/\n", self.bed.base_image),
        )
        .unwrap();
        nonce
    }

    /// The four senders on the bed's dockerd, every run cold.
    fn contexts(
        &self,
        table: &mut Table,
        name: &str,
        ctx: &Context,
        client: &Client,
        builder: &BuilderProcess,
    ) {
        let (mut api, mut cli_cpu, mut cli_rss, mut builder_cpu) = (vec![], vec![], vec![], vec![]);
        let (mut engine, mut docker_cli, mut alone, mut alone_cpu) =
            (vec![], vec![], vec![], vec![]);
        for _ in 0..self.runs {
            let nonce = self.fresh(ctx, name);
            let used = builder.cpu_seconds();
            let run = self.api(builder, ctx, &nonce);
            builder_cpu.push(builder.cpu_seconds() - used);
            api.push(run.wall);
            cli_cpu.push(run.cpu);
            cli_rss.push(run.peak_rss_mib);

            let nonce = self.fresh(ctx, name);
            engine.push(self.engine(ctx, &nonce));
            let nonce = self.fresh(ctx, name);
            docker_cli.push(
                self.docker_cli(ctx, &nonce, &tempfile::tempdir().unwrap())
                    .wall,
            );
            let nonce = self.fresh(ctx, name);
            let used = own_cpu();
            alone.push(self.alone(client, ctx, &format!("bench-{nonce}")));
            alone_cpu.push(own_cpu() - used);
        }
        table.section(format!(
            "{name} context: {} files = {:.0} MB, `COPY . /ctx/`, on the bed's dockerd 20.10",
            ctx.label,
            ctx.mb()
        ));
        table
            .add(API, api, Unit::Secs)
            .versus(ENGINE, "≤ 0.9×")
            .versus(ALONE, "≤ 1.15×");
        table.add(ENGINE, engine, Unit::Secs);
        table.add(DOCKER_CLI, docker_cli, Unit::Secs);
        table.add(ALONE, alone, Unit::Secs);
        let gib = ctx.bytes as f64 / f64::from(1u32 << 30);
        table
            .add(
                "the CLI: CPU s per GiB packed, signed and sent",
                cli_cpu.iter().map(|c| c / gib).collect(),
                Unit::Amount("s/GiB"),
            )
            .note("(target ≤ 1.5)");
        table
            .add("the CLI: peak RSS", cli_rss, Unit::Amount("MiB"))
            .note("(target ≤ 32)");
        table.add("the builder: CPU s per build", builder_cpu, Unit::Secs);
        table.add(
            "the builder: peak RSS",
            vec![builder.peak_rss_mib()],
            Unit::Amount("MiB"),
        );
        table.add("our client alone: CPU s per build", alone_cpu, Unit::Secs);
        println!("[bench] {name} context done");
    }

    /// The small context on a standalone buildkitd, its cache pruned before every run of every
    /// sender (buildctl's local-source key is the same every run: a new key alone is not cold).
    fn standalone(&self, table: &mut Table, ctx: &Context, address: &str, buildctl: &str) {
        let client = self
            .runtime
            .block_on(Client::connect(
                &address.parse().expect("TEST_BUILDKITD_ADDR"),
                None,
            ))
            .expect("connect to TEST_BUILDKITD_ADDR");
        let builder = BuilderProcess::start(address);
        let prune = || {
            measure(Command::new(buildctl).args(["--addr", address, "prune", "--all"]));
        };
        let (mut ctl, mut ctl_cpu, mut alone, mut alone_cpu, mut api) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..self.runs {
            let nonce = self.fresh(ctx, "standalone");
            prune();
            let run = measure(
                Command::new(buildctl)
                    .args(["--addr", address, "build", "--frontend", "dockerfile.v0"])
                    .arg(format!("--local=context={}", ctx.path().display()))
                    .arg(format!("--local=dockerfile={}", ctx.path().display()))
                    .args(["--opt", "force-network-mode=none"])
                    .arg(format!(
                        "--output=type=image,name=bench/buildctl:{nonce},push=false"
                    )),
            );
            ctl.push(run.wall);
            ctl_cpu.push(run.cpu);
            let nonce = self.fresh(ctx, "standalone");
            prune();
            let used = own_cpu();
            alone.push(self.alone(&client, ctx, &format!("bench-{nonce}")));
            alone_cpu.push(own_cpu() - used);
            let nonce = self.fresh(ctx, "standalone");
            prune();
            api.push(self.api(&builder, ctx, &nonce).wall);
        }
        table.section(format!(
            "small context on a standalone buildkitd ({address}), its cache pruned before every run"
        ));
        table.add("buildctl (Go FileSync)", ctl, Unit::Secs);
        table
            .add(ALONE, alone, Unit::Secs)
            .versus("buildctl (Go FileSync)", "≤ 1.0×");
        table.add("buildctl: CPU s", ctl_cpu, Unit::Secs);
        table
            .add("our client alone: CPU s", alone_cpu, Unit::Secs)
            .versus("buildctl: CPU s", "≤ 0.5×");
        table.add(API, api, Unit::Secs).versus(ALONE, "≤ 1.15×");
        println!("[bench] standalone done");
    }

    /// The same request twice, then with one file changed: what the incremental transfer saves,
    /// for our API (one shared key per repository) and the Docker CLI (its key per folder and
    /// config dir).
    fn warm(&self, table: &mut Table, ctx: &Context, builder: &BuilderProcess) {
        // Each sender gets a nonce of its own, so neither finds the other's layers in the
        // daemon's cache (its COPY cache key is the content's).
        let changed_file = ctx.path().join("d000/f00000.bin");
        let original = fs::read(&changed_file).unwrap();
        let nonce = self.fresh(ctx, "warm-api");
        let first = self.api(builder, ctx, &nonce);
        let again = self.api(builder, ctx, &nonce);
        fs::write(&changed_file, format!("changed {nonce}")).unwrap();
        let changed = self.api(builder, ctx, &nonce);
        fs::write(&changed_file, &original).unwrap();

        let nonce = self.fresh(ctx, "warm-cli");
        let config = tempfile::tempdir().unwrap();
        let first_cli = self.docker_cli(ctx, &nonce, &config);
        let again_cli = self.docker_cli(ctx, &nonce, &config);
        fs::write(&changed_file, format!("changed {nonce}")).unwrap();
        let changed_cli = self.docker_cli(ctx, &nonce, &config);
        fs::write(&changed_file, &original).unwrap();

        table.section(format!(
            "warm: the small context ({}) built again, then with one file changed",
            ctx.label
        ));
        let rows = [
            ("first (cold)", first, first_cli),
            ("the same again", again, again_cli),
            ("one file changed", changed, changed_cli),
        ];
        for (what, api, cli) in rows {
            table.add(format!("{DOCKER_CLI}: {what}"), vec![cli.wall], Unit::Secs);
            table
                .add(format!("{API}: {what}"), vec![api.wall], Unit::Secs)
                .note(sent(&api))
                .versus(&format!("{DOCKER_CLI}: {what}"), "");
        }
        println!("[bench] warm done");
    }

    /// A fully cached rebuild: nothing to transfer or run, so what is left is each path's own
    /// overhead (for the API: the CLI's pack and upload, the builder's intake, the session).
    fn cached(&self, table: &mut Table, ctx: &Context, client: &Client, builder: &BuilderProcess) {
        let nonce = self.fresh(ctx, "cached");
        self.api(builder, ctx, &nonce);
        let key = format!("bench-{nonce}");
        self.alone(client, ctx, &key);
        let (mut api, mut alone) = (vec![], vec![]);
        for _ in 0..self.runs {
            api.push(self.api(builder, ctx, &nonce).wall);
            alone.push(self.alone(client, ctx, &key));
        }
        table.section(format!(
            "fully cached rebuild of the small context ({})",
            ctx.label
        ));
        table.add(ALONE, alone.clone(), Unit::Secs);
        let overhead: Vec<f64> = api
            .iter()
            .map(|a| a - 1.05 * median(&alone) - 0.030)
            .collect();
        table
            .add(API, api, Unit::Secs)
            .versus(ALONE, "≤ 1.05× + 30 ms");
        table
            .add(
                "our API − (1.05 × client alone + 30 ms)",
                overhead,
                Unit::Secs,
            )
            .note("(target ≤ 0)");
        println!("[bench] cached done");
    }

    /// HMAC-SHA256 and spool of a large body refused at its end (a wrong signature), against
    /// `openssl dgst -sha256 -hmac` over the same bytes in a file.
    fn intake(&self, table: &mut Table, builder: &BuilderProcess, bytes: u64) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        let body = vec![0x5au8; usize::try_from(bytes).unwrap()];
        fs::write(&file, &body).unwrap();
        let (mut ours, mut openssl, mut in_process) = (vec![], vec![], vec![]);
        let mb = bytes as f64 / 1e6;
        let shared = bytes::Bytes::from(body.clone());
        let signature = {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"bench-key").unwrap();
            mac.update(&shared);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        for _ in 0..self.runs {
            // The stage alone, fed from memory in 64 KiB chunks (hyper hands over 16–400 KiB).
            let spool = dir.path().join("spool");
            let chunks: Vec<_> = (0..shared.len())
                .step_by(64 << 10)
                .map(|at| Ok(shared.slice(at..(at + (64 << 10)).min(shared.len()))))
                .collect();
            let start = Instant::now();
            let received = self.runtime.block_on(handler::internals::verify_and_spool(
                futures_util::stream::iter(chunks),
                &spool,
                signature.as_bytes(),
                b"bench-key",
            ));
            in_process.push(mb / start.elapsed().as_secs_f64());
            assert_eq!(received, Ok(bytes));
            fs::remove_file(&spool).unwrap();

            let copy = body.to_vec();
            let start = Instant::now();
            let status = self.runtime.block_on(async {
                let req = http::Request::post("/build")
                    .header("host", "builder")
                    .header("x-build-signature", format!("sha256={}", "0".repeat(64)))
                    .body(full(copy))
                    .unwrap();
                send_tcp(builder.addr, req).await.status()
            });
            ours.push(mb / start.elapsed().as_secs_f64());
            assert_eq!(status, 401);
            let run = measure(
                Command::new("openssl")
                    .args(["dgst", "-sha256", "-hmac", "bench-key"])
                    .arg(&file),
            );
            openssl.push(mb / run.wall);
        }
        table.section(format!(
            "intake: HMAC-SHA256 of a {:.0} MB body",
            bytes as f64 / 1e6
        ));
        table.add(
            "openssl dgst -sha256 -hmac (file)",
            openssl,
            Unit::Rate("MB/s"),
        );
        table
            .add(
                "the builder: upload, HMAC and spool, refused at the end",
                ours,
                Unit::Rate("MB/s"),
            )
            .versus("openssl dgst -sha256 -hmac (file)", "≥ 0.9×");
        table
            .add(
                "the intake stage alone: HMAC and spool from memory",
                in_process,
                Unit::Rate("MB/s"),
            )
            .versus("openssl dgst -sha256 -hmac (file)", "≥ 0.9×");
        println!("[bench] intake done");
    }

    /// Bad-signature requests per second from `wrk` while an API build runs, and that build's
    /// time against the same build alone.
    fn rejection(&self, table: &mut Table, ctx: &Context, builder: &BuilderProcess, secs: u32) {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("post.lua");
        fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = \"not a tar\"\nwrk.headers[\"X-Build-Signature\"] = \"sha256={}\"\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        let (mut alone, mut loaded, mut rates) = (vec![], vec![], vec![]);
        for _ in 0..self.runs {
            let nonce = self.fresh(ctx, "reject-alone");
            alone.push(self.api(builder, ctx, &nonce).wall);
            let nonce = self.fresh(ctx, "reject-loaded");
            let wrk = std::process::Command::new("wrk")
                .args(["-t1", "-c32", &format!("-d{secs}s"), "-s"])
                .arg(&script)
                .arg(builder.url())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("wrk (apt-get install wrk; tests/bench installs it)");
            loaded.push(self.api(builder, ctx, &nonce).wall);
            let out = wrk.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let rate = text
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("wrk printed no rate:\n{text}"));
            rates.push(rate);
        }
        table.section(
            "rejection: small bodies with a bad signature (wrk, 32 connections) while an API build of the small context runs",
        );
        table
            .add("rejections per second", rates, Unit::Rate("req/s"))
            .note("(target ≥ 20,000)");
        table.add(format!("{API}, alone"), alone, Unit::Secs);
        table
            .add(format!("{API}, under the rejections"), loaded, Unit::Secs)
            .versus(&format!("{API}, alone"), "< 1.10×");
        println!("[bench] rejection done");
    }

    /// One build through the CLI and the builder, cold: a new repository is a new shared key.
    fn api(&self, builder: &BuilderProcess, ctx: &Context, nonce: &str) -> Measured {
        measure(
            Command::new(&self.cli)
                .arg("build")
                .arg(ctx.path())
                .args(["--image", &format!("bench/api-{nonce}:1"), "--skip-push"])
                .args(["--url", &builder.url(), "--progress", "plain"])
                .arg("--secret-file")
                .arg(&builder.secret_file),
        )
    }

    fn alone(&self, client: &Client, ctx: &Context, key: &str) -> f64 {
        let mut req = BuildRequest::new(
            Arc::new(DirTree::new(ctx.path())),
            Output::Tag(format!("bench/alone:{key}").parse().unwrap()),
        );
        req.network = NetworkMode::None;
        req.shared_key = key.to_owned();
        let (events, mut rx) = tokio::sync::mpsc::channel(256);
        let start = Instant::now();
        self.runtime.block_on(async {
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            client
                .build(req, events)
                .await
                .result
                .expect("our client's build")
        });
        start.elapsed().as_secs_f64()
    }

    /// The Engine's own REST build, the context as a tar body made before the clock starts.
    fn engine(&self, ctx: &Context, nonce: &str) -> f64 {
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_dir_all(".", ctx.path()).unwrap();
        let body = tar.into_inner().unwrap();
        let start = Instant::now();
        self.runtime.block_on(async {
            let req = http::Request::post(format!(
                "/build?version=2&networkmode=none&q=1&t=bench/engine:{nonce}"
            ))
            .header("host", "docker")
            .header("content-type", "application/x-tar")
            .body(full(body))
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

    /// `docker build` with BuildKit; `config` is its config dir (a new one: a new node id, so a
    /// new shared key and a cold transfer).
    fn docker_cli(&self, ctx: &Context, nonce: &str, config: &tempfile::TempDir) -> Measured {
        measure(
            Command::new("/usr/bin/docker")
                .env("DOCKER_BUILDKIT", "1")
                .env(
                    "DOCKER_HOST",
                    format!("unix://{}", self.bed.docker_socket.display()),
                )
                .arg("--config")
                .arg(config.path())
                .args(["build", "-q", "--network", "none", "-t"])
                .arg(format!("bench/dockercli:{nonce}"))
                .arg(ctx.path()),
        )
    }
}

/// What the builder's last log line says it received, from the CLI's output.
fn sent(run: &Measured) -> String {
    run.stdout
        .lines()
        .chain(run.stderr.lines())
        .filter_map(|l| l.split_once("context: sent ").map(|(_, s)| s.to_owned()))
        .next_back()
        .map_or_else(String::new, |s| format!("(sent {s})"))
}

fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
