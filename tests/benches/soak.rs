//! Soak: `SOAK_BUILDS` (default 200) sequential builds through one builder process (the
//! `builder-server` binary, as production runs it) on the bed's dockerd and registry, printing
//! the builder's RSS, open fds, threads and `work_dir` entries before the first build, after it,
//! every `SOAK_EVERY` builds (default 50), half-way and at the end. Fails when open fds or temp
//! entries at the end exceed those after the first build, or when RSS grew by more than
//! [`RSS_SLACK_MIB`] over the second half.
//! Run: `tests/bench --soak` (see docs/benchmarks.md, "Soak").
//!
//! Every build has a context of its own (a unique `id.txt` and 1 MiB blob beside 32 files that
//! stay the same, `COPY . /ctx/`, a `RUN` that prints the id); every third one asks for NDJSON,
//! and every tenth one fails in its `RUN` step, so the streaming and error paths soak too.

#[path = "performance/procs.rs"]
#[allow(dead_code)] // the performance bench's timing helpers; the soak needs only the process
mod procs;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use function_builder_tests::api::{request_tar, sign, Shape, SECRET};
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{full, read_body, send_tcp};
use procs::BuilderProcess;
use serde_json::Value;

/// How long the builder gets to close the last request's connection before a sample: sampled at
/// once, its socket is sometimes still open and counts as a leaked fd.
const SETTLE: Duration = Duration::from_millis(300);

/// How much RSS may grow over the second half of the soak. It rises over the first 50–150 builds
/// as glibc's per-thread malloc arenas fill, then stays within about 2 MiB (a 600-build run:
/// 18.9 MiB after 50, 19.1–20.7 MiB from 100 to 600; with `MALLOC_ARENA_MAX=1`, 11.3 MiB after
/// 100 and 11.4 MiB after 200); 5 MiB over the last 100 of 200 builds catches a leak of 50 KiB a
/// build.
const RSS_SLACK_MIB: f64 = 5.0;

/// What the builder process holds at one moment.
struct Sample {
    after: usize,
    rss_mib: f64,
    fds: usize,
    threads: u64,
    temp_entries: usize,
}

impl Sample {
    /// Reads `/proc/<pid>` of the builder and counts its `work_dir`.
    fn take(pid: u32, work_dir: &Path, after: usize) -> Self {
        std::thread::sleep(SETTLE);
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
        };
        let sample = Self {
            after,
            rss_mib: field("VmRSS:") as f64 / 1024.0,
            fds: fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count(),
            threads: field("Threads:"),
            temp_entries: fs::read_dir(work_dir).unwrap().count(),
        };
        println!(
            "| {} | {:.1} MiB | {} | {} | {} |",
            sample.after, sample.rss_mib, sample.fds, sample.threads, sample.temp_entries
        );
        sample
    }
}

/// One build of the soak.
struct Soak {
    n: usize,
    fails: bool,
    ndjson: bool,
}

impl Soak {
    fn tar(&self, bed: &Bed, nonce: u32) -> Vec<u8> {
        let id = format!("soak {nonce} build {}\n", self.n);
        let run = if self.fails {
            "RUN cat /ctx/id.txt && exit 3"
        } else {
            "RUN cat /ctx/id.txt"
        };
        let dockerfile = format!("FROM {}\nCOPY . /ctx/\n{run}\n", bed.base_image);
        let blob: Vec<u8> = (0..1 << 20)
            .map(|i: usize| (i.wrapping_mul(31) ^ self.n) as u8)
            .collect();
        let same: Vec<(String, Vec<u8>)> = (0..32)
            .map(|i| (format!("data/f{i:02}"), vec![i as u8; 4096]))
            .collect();
        let mut files: Vec<(&str, &[u8], u32)> = vec![
            ("Dockerfile", dockerfile.as_bytes(), 0o644),
            ("id.txt", id.as_bytes(), 0o644),
            ("blob.bin", &blob, 0o644),
        ];
        files.extend(same.iter().map(|(p, d)| (p.as_str(), d.as_slice(), 0o644)));
        let image = format!("{}/soak/app:{}", bed.registry, self.n);
        request_tar(Shape::Go, &format!(r#"{{"image":"{image}"}}"#), &files)
    }

    /// Posts the build; returns the HTTP status and the outcome (the JSON answer, or NDJSON's
    /// last line).
    async fn post(&self, builder: &BuilderProcess, tar: Vec<u8>) -> (u16, Value) {
        let mut req = http::Request::post("/build")
            .header("host", "builder")
            .header("x-build-signature", sign(SECRET, &tar));
        if self.ndjson {
            req = req.header("accept", "application/x-ndjson");
        }
        let resp = send_tcp(builder.addr, req.body(full(tar)).unwrap()).await;
        let status = resp.status().as_u16();
        let body = read_body(resp).await;
        let last = body
            .split(|b| *b == b'\n')
            .rfind(|line| !line.is_empty())
            .unwrap_or_default();
        let outcome = serde_json::from_slice(last).unwrap_or_else(|e| {
            panic!("build {}: {e}: {}", self.n, String::from_utf8_lossy(&body))
        });
        (status, outcome)
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn main() {
    let builds = env_or("SOAK_BUILDS", 200);
    let every = env_or("SOAK_EVERY", 50);
    let bed = Bed::get();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let builder = BuilderProcess::start(&format!("docker://{}", bed.docker_socket.display()));
    let pid = builder.child.id();
    // procs.rs keeps the secret beside the work dir it gives the builder.
    let work_dir = builder.secret_file.with_file_name("work");
    let nonce = std::process::id();

    println!("\n## soak: {builds} sequential builds through one builder process (pid {pid})\n");
    println!("| after builds | RSS | open fds | threads | temp entries |");
    println!("|---|---|---|---|---|");
    let start = Sample::take(pid, &work_dir, 0);
    let mut first = None;
    let mut half = None;
    let soak_started = Instant::now();
    let mut times = Vec::new();
    let (mut streamed, mut failed) = (0, 0);
    for n in 1..=builds {
        let soak = Soak {
            n,
            fails: n % 10 == 0,
            ndjson: n % 3 == 0,
        };
        let tar = soak.tar(&bed, nonce);
        let started = Instant::now();
        let (status, outcome) = runtime.block_on(soak.post(&builder, tar));
        let secs = started.elapsed().as_secs_f64();
        let (want_status, want_outcome) = match (soak.fails, soak.ndjson) {
            (false, _) => (200, "success"),
            // A stream's status is sent before the build ends; its last line tells.
            (true, true) => (200, "failed"),
            (true, false) => (422, "failed"),
        };
        assert_eq!(status, want_status, "build {n}: {outcome:#}");
        assert_eq!(outcome["status"], want_outcome, "build {n}: {outcome:#}");
        streamed += usize::from(soak.ndjson);
        failed += usize::from(soak.fails);
        if !soak.fails {
            times.push(secs);
        }
        // The last build's sample is the end's, taken after the loop.
        if n < builds && (n == 1 || n == builds / 2 || n % every == 0) {
            let sample = Sample::take(pid, &work_dir, n);
            if n == 1 {
                first = Some(sample);
            } else if n == builds / 2 {
                half = Some(sample);
            }
        }
    }
    let soak_secs = soak_started.elapsed().as_secs_f64();
    let end = Sample::take(pid, &work_dir, builds);

    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "\n{builds} builds in {soak_secs:.0} s: {} pushed, {failed} failed in their RUN step as \
         meant, {streamed} as NDJSON; pushed builds took {:.2} s median (min {:.2} s, p90 {:.2} s, \
         max {:.2} s)",
        times.len(),
        at(0.5),
        at(0.0),
        at(0.9),
        at(1.0)
    );
    let first = first.unwrap_or(start);
    let half = half.as_ref().unwrap_or(&first);
    let mut grew = Vec::new();
    if end.fds > first.fds {
        grew.push(format!("open fds {} → {}", first.fds, end.fds));
    }
    if end.temp_entries > 0 {
        grew.push(format!("{} temp entries left", end.temp_entries));
    }
    if end.rss_mib > half.rss_mib + RSS_SLACK_MIB {
        grew.push(format!(
            "RSS {:.1} MiB half-way → {:.1} MiB",
            half.rss_mib, end.rss_mib
        ));
    }
    assert!(
        grew.is_empty(),
        "the builder grew over {builds} builds: {}",
        grew.join(", ")
    );
    println!(
        "flat: open fds and temp entries as after the first build, RSS {:+.1} MiB over the second \
         half",
        end.rss_mib - half.rss_mib
    );
}
