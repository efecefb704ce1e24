//! "platform rebuild": 12 functions, each with a `RUN` step of about a second of CPU, built once,
//! then 3 rounds of rebuilds with one file changed after that step, over 2 standalone buildkitds
//! of the benchmark's own. Our routing against what a user gets otherwise: a daemon picked at
//! random per build (a Kubernetes Service with a fresh connection) and one daemon alone; each
//! without and with the registry cache (`cache_repository`). Cold for every sender: both daemons
//! pruned and new function names (so new cache refs) before each row. A round's builds go
//! through one builder replica at `stack.yml`'s `max_inflight` (2 in flight).

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use function_builder_tests::api::{request_tar, Answered, Server, Shape};
use function_builder_tests::bed::Bed;
use function_builder_tests::daemons::OwnDaemon;
use handler::Daemons;

use crate::table::{Table, Unit};

/// Functions per round.
const FUNCTIONS: usize = 12;
/// Rebuild rounds measured after the first build.
const ROUNDS: usize = 3;
/// Loop iterations of the `RUN` step: about a second of one core in busybox's shell.
const SPIN: u32 = 360_000;
/// Builds of a round in flight at once: one builder replica at `stack.yml`'s `max_inflight`,
/// which also bounds what its routing counts as load.
const IN_FLIGHT: usize = 2;

/// How builds are sent to daemons.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    /// Our routing over both daemons.
    Routing,
    /// A daemon picked at random for each build.
    Random,
    /// One daemon only.
    One,
}

impl Sender {
    fn label(self) -> &'static str {
        match self {
            Self::Routing => "our routing, 2 daemons",
            Self::Random => "a random daemon per build, 2 daemons",
            Self::One => "one daemon",
        }
    }
}

/// What a row measured: wall seconds per rebuild round, and its cached share of cacheable steps.
struct Measured {
    rounds: Vec<f64>,
    cached: Vec<f64>,
}

pub(crate) fn platform(
    table: &mut Table,
    bed: &Bed,
    runtime: &tokio::runtime::Runtime,
    smoke: bool,
) {
    let Some(buildctl) = std::env::var_os("BUILDCTL") else {
        println!("platform rebuild: no standalone buildkitd on this bed (BUILDCTL), not run");
        return;
    };
    if std::env::var_os("FB_BUILDKITD_BIN").is_none() {
        println!("platform rebuild: no buildkitd binary (FB_BUILDKITD_BIN), not run");
        return;
    }
    let (functions, spin) = if smoke { (2, 1_000) } else { (FUNCTIONS, SPIN) };
    let daemons = runtime.block_on(async {
        vec![
            OwnDaemon::start(&bed.registry).await,
            OwnDaemon::start(&bed.registry).await,
        ]
    });
    table.section(format!(
        "platform rebuild: {functions} functions (a RUN step of ~1 s CPU), built once, then {ROUNDS} rounds with one file changed after it, {IN_FLIGHT} builds in flight (one builder replica at max_inflight), over 2 buildkitds"
    ));
    for cache in [false, true] {
        for sender in [Sender::Routing, Sender::Random, Sender::One] {
            for daemon in &daemons {
                let _ = Command::new(&buildctl)
                    .args(["--addr", &daemon.address().to_string(), "prune", "--all"])
                    .output();
            }
            let measured = runtime.block_on(row(bed, &daemons, sender, cache, functions, spin));
            let name = format!(
                "{}{}",
                sender.label(),
                if cache { ", registry cache" } else { "" }
            );
            #[allow(clippy::cast_precision_loss)]
            let ratio = measured.cached.iter().sum::<f64>() / measured.cached.len() as f64;
            let row = table.add(
                format!("{name}: wall per round"),
                measured.rounds,
                Unit::Secs,
            );
            row.note(format!(
                "cached {:.2} of the cacheable steps (per round: {})",
                ratio,
                measured
                    .cached
                    .iter()
                    .map(|c| format!("{c:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            // The random row comes after this one: the table finds peers when it renders.
            if sender == Sender::Routing {
                let peer = format!(
                    "{}{}: wall per round",
                    Sender::Random.label(),
                    if cache { ", registry cache" } else { "" }
                );
                row.versus(&peer, if cache { "–" } else { "≤ 0.6×" });
            }
        }
    }
}

/// One row: a builder (or, for [`Sender::Random`], one per daemon), the first build of every
/// function, then the rounds.
async fn row(
    bed: &Bed,
    daemons: &[OwnDaemon],
    sender: Sender,
    cache: bool,
    functions: usize,
    spin: u32,
) -> Measured {
    let nonce = format!("{}-{}", std::process::id(), crate::next());
    let tweak = |addresses: Vec<buildkit::Address>| {
        let registry = bed.registry.clone();
        move |s: &mut handler::Settings| {
            s.buildkit = Daemons::Listed(addresses);
            if cache {
                s.cache_repository = Some(format!("{registry}/bench-cache/{{repository}}"));
            }
        }
    };
    let servers: Vec<Arc<Server>> = match sender {
        Sender::Routing => vec![Arc::new(
            Server::start(bed, tweak(daemons.iter().map(OwnDaemon::address).collect())).await,
        )],
        Sender::Random => {
            let mut servers = Vec::new();
            for daemon in daemons {
                servers.push(Arc::new(
                    Server::start(bed, tweak(vec![daemon.address()])).await,
                ));
            }
            servers
        }
        Sender::One => vec![Arc::new(
            Server::start(bed, tweak(vec![daemons[0].address()])).await,
        )],
    };
    let mut pick = Xorshift(0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id()));
    let mut rounds = Vec::new();
    let mut cached = Vec::new();
    for round in 0..=ROUNDS {
        let started = Instant::now();
        let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let builds: Vec<_> = (0..functions)
            .map(|f| {
                let server = Arc::clone(&servers[pick.below(servers.len())]);
                let slots = Arc::clone(&slots);
                let image = format!("{}/bench-platform/{nonce}-fn{f}:{round}", bed.registry);
                let dockerfile = format!(
                    "FROM {}\nCOPY dep.txt /dep.txt\nRUN i=0; while [ $i -lt {spin} ]; do i=$((i+1)); done; echo fn{f} > /built\nCOPY src.txt /src.txt\n",
                    bed.base_image
                );
                let src = format!("round {round}");
                tokio::spawn(async move {
                    let _slot = slots.acquire().await.unwrap();
                    build(&server, &image, &dockerfile, &src).await
                })
            })
            .collect();
        let (mut steps_cached, mut cacheable) = (0u64, 0u64);
        for b in builds {
            let answer = b.await.unwrap();
            assert_eq!(answer.status, 200, "{answer:#?}");
            // The cacheable steps: COPY dep.txt and the RUN step (the changed COPY never is;
            // FROM is re-resolved, and cheap either way), read from the log's `CACHED` lines.
            let log = answer.json["log"].as_array().cloned().unwrap_or_default();
            let cached_step = |step: &str| {
                log.iter()
                    .filter_map(|l| l.as_str())
                    .any(|l| l.contains("CACHED [") && l.contains(step))
            };
            steps_cached +=
                u64::from(cached_step("COPY dep.txt")) + u64::from(cached_step("] RUN "));
            cacheable += 2;
        }
        if round > 0 {
            rounds.push(started.elapsed().as_secs_f64());
            cached.push(steps_cached as f64 / cacheable as f64);
        }
    }
    Measured { rounds, cached }
}

async fn build(server: &Server, image: &str, dockerfile: &str, src: &str) -> Answered {
    let config = format!(r#"{{"image":"{image}"}}"#);
    let tar = request_tar(
        Shape::Go,
        &config,
        &[
            ("Dockerfile", dockerfile.as_bytes(), 0o644),
            ("dep.txt", b"the dependencies, unchanged", 0o644),
            ("src.txt", src.as_bytes(), 0o644),
        ],
    );
    server.post_signed_with(tar, &[]).await
}

/// A tiny PRNG: which daemon a random build goes to.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The pool under load, through the builder as a process of its own over 3 buildkitds: its
/// peak RSS with 30 builds in flight, and a 30-build run during which a daemon is killed (every
/// build answers 200, or 503 with `Retry-After` whose one retry succeeds: none is lost).
pub(crate) fn pool_load(
    table: &mut Table,
    bed: &Bed,
    runtime: &tokio::runtime::Runtime,
    smoke: bool,
) {
    if std::env::var_os("FB_BUILDKITD_BIN").is_none() {
        println!("pool under load: no buildkitd binary (FB_BUILDKITD_BIN), not run");
        return;
    }
    let (builds, sleep) = if smoke { (6, 2) } else { (30, 8) };
    let mut daemons = runtime.block_on(async {
        let mut daemons = Vec::new();
        for _ in 0..3 {
            daemons.push(OwnDaemon::start(&bed.registry).await);
        }
        daemons
    });
    let url = daemons
        .iter()
        .map(|d| d.address().to_string())
        .collect::<Vec<_>>()
        .join(",");
    table.section(format!(
        "pool under load: {builds} builds at once (a RUN step sleeping {sleep} s) through the builder process over 3 buildkitds"
    ));
    let builder = crate::procs::BuilderProcess::start(&url);
    let nonce = format!("{}-{}", std::process::id(), crate::next());
    let answers = runtime.block_on(burst(bed, builder.addr, &nonce, "rss", builds, sleep, None));
    let ok = answers
        .iter()
        .filter(|(first, _)| first.status == 200)
        .count();
    table
        .add(
            "builder peak RSS",
            vec![builder.peak_rss_mib()],
            Unit::Amount("MiB"),
        )
        .note(format!("{ok} of {builds} answered 200; target ≤ 64 MiB"));
    // A daemon killed once the first RUN steps run.
    let marker = format!("pool-kill-{nonce}");
    let victim = &mut daemons[1];
    let answers = runtime.block_on(burst(
        bed,
        builder.addr,
        &nonce,
        &marker,
        builds,
        sleep,
        Some(victim),
    ));
    let (mut ok, mut retried, mut lost) = (0, 0, 0);
    for (first, retry) in &answers {
        match (first.status, first.retry_after.is_some(), retry) {
            (200, _, _) => ok += 1,
            (503, true, Some(again)) if again.status == 200 => retried += 1,
            _ => lost += 1,
        }
    }
    table
        .add("a daemon killed mid-run: builds lost", vec![f64::from(lost)], Unit::Amount("builds"))
        .note(format!(
            "{ok} answered 200, {retried} answered 503 + Retry-After and succeeded on their retry; target 0 lost"
        ));
}

/// `builds` builds of distinct functions at once, each `RUN sleep <sleep>` with `marker` in its
/// command line; with `kill`, that daemon is killed once a RUN step runs. Each answer with its
/// one retry, when it was a 503.
async fn burst(
    bed: &Bed,
    addr: std::net::SocketAddr,
    nonce: &str,
    marker: &str,
    builds: usize,
    sleep: u32,
    kill: Option<&mut OwnDaemon>,
) -> Vec<(Answered, Option<Answered>)> {
    let tars: Vec<Vec<u8>> = (0..builds)
        .map(|i| {
            let config = format!(
                r#"{{"image":"{}/bench-pool/{nonce}-{i}:1","skipPush":true}}"#,
                bed.registry
            );
            let df = format!(
                "FROM {}\nRUN sleep {sleep}; echo {marker} {i}\n",
                bed.base_image
            );
            request_tar(Shape::Go, &config, &[("Dockerfile", df.as_bytes(), 0o644)])
        })
        .collect();
    let sent: Vec<_> = tars
        .iter()
        .cloned()
        .map(|tar| {
            tokio::spawn(async move {
                function_builder_tests::api::post_signed_to(addr, tar, &[]).await
            })
        })
        .collect();
    if let Some(daemon) = kill {
        let running = function_builder_tests::bed::wait_for_process(
            marker,
            true,
            std::time::Duration::from_secs(120),
        )
        .await;
        assert!(running, "a RUN step with {marker} started");
        daemon.kill();
    }
    let mut out = Vec::new();
    for (task, tar) in sent.into_iter().zip(tars) {
        let first = task.await.unwrap();
        let retry = if first.status == 503 {
            Some(function_builder_tests::api::post_signed_to(addr, tar, &[]).await)
        } else {
            None
        };
        out.push((first, retry));
    }
    out
}
