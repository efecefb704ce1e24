//! The builder's own image, built through its own API (`deploy/shrinkwrap --vendor`, the CLI's
//! `build --gzip`, RUN steps on network none) against `docker build` of the same context with
//! the same build args: cold (the daemon's build cache, cargo's cache mounts with it, pruned
//! before every build, ours and the peer's) and warm (one source file changed, the cache mounts
//! warm). Then the image's compressed size in the registry and its server's start to first 200
//! on `/healthz`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use function_builder_tests::client::{full, read_body, send_tcp};

use crate::procs::{measure, BuilderProcess, Measured};
use crate::table::{Table, Unit};
use crate::Bench;

/// How many times the server is started for the start-up row.
const STARTS: usize = 10;

impl Bench<'_> {
    pub(crate) fn self_build(&self, table: &mut Table, builder: &BuilderProcess) {
        let build_args = self.bed.self_build_images();
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("function-builder");
        self.bed.script(&[
            "deploy/shrinkwrap",
            "--vendor",
            "function",
            ctx.to_str().unwrap(),
        ]);
        let lib = ctx.join("function/src/lib.rs");
        let original = fs::read_to_string(&lib).unwrap();
        let edit = |n: usize| fs::write(&lib, format!("{original}\n// bench edit {n}\n")).unwrap();
        let (mut ours, mut ours_warm, mut docker, mut docker_warm) =
            (vec![], vec![], vec![], vec![]);
        for run in 0..self.runs {
            self.prune();
            ours.push(self.own_build(builder, &ctx, &build_args, None).wall);
            edit(run);
            ours_warm.push(self.own_build(builder, &ctx, &build_args, None).wall);
            fs::write(&lib, &original).unwrap();
            self.prune();
            docker.push(self.docker_build(&ctx, &build_args).wall);
            edit(run);
            docker_warm.push(self.docker_build(&ctx, &build_args).wall);
            fs::write(&lib, &original).unwrap();
            println!("[bench] self-build run {} done", run + 1);
        }
        // Pushed once (from the warm cache) for the registry's figures.
        let image = format!(
            "{}/function-builder:bench-{}",
            self.bed.registry, self.nonce
        );
        let pushed = self.own_build(builder, &ctx, &build_args, Some(&image));
        assert!(pushed.stdout.contains("digest: "), "{}", pushed.stdout);
        let compressed = self.compressed_mib(&image);
        let starts = self.starts(&image);

        table.section(
            "the builder's own image (vendored context, RUN on network none, build args as in the \
             self-build test)",
        );
        let docker_cli = "docker build (BuildKit), same context and build args";
        table.add(format!("{docker_cli}: cold"), docker, Unit::Secs);
        table
            .add("our API (--gzip): cold", ours, Unit::Secs)
            .versus(&format!("{docker_cli}: cold"), "≤ 1.05×");
        table.add(
            format!("{docker_cli}: one source file changed"),
            docker_warm,
            Unit::Secs,
        );
        table
            .add("our API: one source file changed", ours_warm, Unit::Secs)
            .versus(&format!("{docker_cli}: one source file changed"), "≤ 1.05×");
        table
            .add(
                "image, compressed (registry)",
                vec![compressed],
                Unit::Amount("MiB"),
            )
            .note("(target ≤ 15 MiB)");
        table
            .add(
                format!("server start to first 200 on /healthz ({STARTS} starts)"),
                starts,
                Unit::Secs,
            )
            .note("(target ≤ 20 ms)");
        println!("[bench] self-build done");
    }

    /// Removes the daemon's whole build cache, cache mounts and pulled bases with it.
    fn prune(&self) {
        let (ok, _, stderr) = self.bed.docker(&["builder", "prune", "-af"]);
        assert!(ok, "docker builder prune: {stderr}");
    }

    /// One build of the builder through the CLI and our API; pushed to `push`, else not.
    fn own_build(
        &self,
        builder: &BuilderProcess,
        ctx: &Path,
        build_args: &[String],
        push: Option<&str>,
    ) -> Measured {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("build").arg(ctx).arg("--gzip");
        match push {
            Some(image) => cmd.args(["--image", image]),
            None => cmd.args(["--image", "bench/self:api", "--skip-push"]),
        };
        for arg in build_args {
            cmd.args(["--build-arg", arg]);
        }
        cmd.args(["--url", &builder.url(), "--progress", "plain"])
            .arg("--secret-file")
            .arg(&builder.secret_file);
        let run = measure(&mut cmd);
        assert!(run.stdout.contains("image: "), "our build: {}", run.stderr);
        run
    }

    fn docker_build(&self, ctx: &Path, build_args: &[String]) -> Measured {
        let config = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.env("DOCKER_BUILDKIT", "1")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.bed.docker_socket.display()),
            )
            .arg("--config")
            .arg(config.path())
            .args([
                "build",
                "-q",
                "--network",
                "none",
                "-t",
                "bench/self:docker",
            ]);
        for arg in build_args {
            cmd.args(["--build-arg", arg]);
        }
        measure(cmd.arg(ctx))
    }

    /// The sum of the image's layer sizes as the registry serves them, MiB.
    fn compressed_mib(&self, image: &str) -> f64 {
        let (name, tag) = image
            .strip_prefix(&format!("{}/", self.bed.registry))
            .unwrap()
            .rsplit_once(':')
            .unwrap();
        let manifest = self.runtime.block_on(async {
            let req = http::Request::get(format!("/v2/{name}/manifests/{tag}"))
                .header("host", &self.bed.registry)
                .header(
                    "accept",
                    "application/vnd.docker.distribution.manifest.v2+json, \
                     application/vnd.oci.image.manifest.v1+json",
                )
                .body(full(Vec::new()))
                .unwrap();
            read_body(send_tcp(self.bed.registry.parse().unwrap(), req).await).await
        });
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let bytes: u64 = manifest["layers"]
            .as_array()
            .unwrap_or_else(|| panic!("no layers in {manifest}"))
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum();
        bytes as f64 / (1024.0 * 1024.0)
    }

    /// The image's server binary, run on the host as the image runs it (same Debian glibc), from
    /// spawn to the first 200 on `/healthz`, polled every millisecond.
    fn starts(&self, image: &str) -> Vec<f64> {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("bench-self-{}", self.nonce);
        let (ok, _, stderr) = self.bed.docker(&["create", "--name", &name, image]);
        assert!(ok, "docker create: {stderr}");
        let server = dir.path().join("server");
        let copied = self.bed.docker(&[
            "cp",
            &format!("{name}:/home/app/server"),
            server.to_str().unwrap(),
        ]);
        let _ = self.bed.docker(&["rm", "-f", &name]);
        assert!(copied.0, "docker cp: {}", copied.2);
        let secret = dir.path().join("secret");
        fs::write(&secret, "bench").unwrap();
        let mut out = Vec::new();
        for _ in 0..STARTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let start = Instant::now();
            let mut child = Command::new(&server)
                .env_clear()
                .env("upstream_url", format!("http://127.0.0.1:{port}"))
                .env(
                    "buildkit_url",
                    format!("docker://{}", self.bed.docker_socket.display()),
                )
                .env("payload_secret_path", &secret)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline = start + Duration::from_secs(10);
            while !healthz_ok(port) {
                assert!(Instant::now() < deadline, "no 200 on /healthz in 10 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            out.push(start.elapsed().as_secs_f64());
            let _ = child.kill();
            let _ = child.wait();
        }
        out
    }
}

/// Whether `GET /healthz` on 127.0.0.1:`port` answers 200.
fn healthz_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let sent = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    sent.is_ok() && stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}
