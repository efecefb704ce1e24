//! The builder builds its own image through its own API, with nothing from the internet, and that
//! image serves builds: the rust-http template proven end to end on the bed's dockerd.
//!
//! `tests/self-build-images` makes the template's base images on this machine (a Debian build
//! image with this machine's Rust toolchain, a busybox + glibc runtime, a stand-in for of-watchdog)
//! and pushes them to the bed's registry; `deploy/shrinkwrap --vendor` lays out the builder with
//! every crate in its context, so `serve --network none` builds it with no network at all.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{cli, strings, write, Serve};
use function_builder_tests::bed::{repo_root, Bed};

/// `docker rm -f` of a container when dropped.
struct Container<'a> {
    bed: &'a Bed,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.bed.docker(&["rm", "-f", &self.name]);
    }
}

/// The base images, made once for the tests of this file (`Bed::self_build_images`).
fn images(bed: &Bed) -> Vec<String> {
    static IMAGES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    IMAGES.get_or_init(|| bed.self_build_images()).clone()
}

/// Runs `image` as it runs itself (its CMD: the watchdog stand-in, which execs the server) on the
/// host's network, a free loopback port as `upstream_url`, with `extra` `docker run` arguments;
/// returns the container (removed when dropped) and the port.
fn run_image<'a>(bed: &'a Bed, image: &str, extra: &[&str]) -> (Container<'a>, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("fb-self-build-{}-{port}", std::process::id());
    let upstream = format!("upstream_url=http://127.0.0.1:{port}");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        &upstream,
    ];
    args.extend_from_slice(extra);
    args.push(image);
    let (ok, _, stderr) = bed.docker(&args);
    assert!(ok, "docker run {image}: {stderr}");
    (Container { bed, name }, port)
}

impl Container<'_> {
    fn logs(&self) -> String {
        let (_, stdout, stderr) = self.bed.docker(&["logs", &self.name]);
        format!("{stdout}{stderr}")
    }
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
async fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status and body of a GET on 127.0.0.1.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    Some((status, answer.split("\r\n\r\n").nth(1)?.to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builder_builds_its_own_image_offline_and_that_image_serves_builds_as_uid_1000() {
    let bed = Bed::get();
    let started = Instant::now();
    let build_args = images(&bed);
    eprintln!("base images ready after {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("function-builder");
    bed.script(&[
        "deploy/shrinkwrap",
        "--vendor",
        "function",
        context.to_str().unwrap(),
    ]);
    assert!(context.join(".cargo/config.toml").is_file());
    let secret = dir.path().join("payload-secret");
    std::fs::write(&secret, "self-build-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let secret_arg = secret.to_str().unwrap().to_owned();
    let docker_host = format!("unix://{}", bed.docker_socket.display());

    // The builder (the production code) with RUN steps on network none: the build can only
    // succeed with every crate in its context.
    let serve = Serve::start(
        &["--network", "none", "--secret-file", &secret_arg],
        &[("DOCKER_HOST", &docker_host)],
    );
    let image = format!("{}/function-builder:self-built", bed.registry);
    let mut args = strings(&[
        "build",
        context.to_str().unwrap(),
        "--image",
        &image,
        "--gzip",
        "--progress",
        "plain",
        "--url",
        &serve.url,
        "--secret-file",
        &secret_arg,
    ]);
    for arg in &build_args {
        args.extend(strings(&["--build-arg", arg.as_str()]));
    }
    let built = Instant::now();
    let (ok, stdout, stderr) = cli(args).await;
    assert!(ok, "self-build failed:\n{stderr}\n{stdout}");
    eprintln!("self-build took {:?}", built.elapsed());
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest in {stdout}"))
        .to_owned();

    // The image as the registry has it.
    let _ = bed.docker(&["rmi", "-f", &image]);
    let (ok, _, stderr) = bed.docker(&["pull", "-q", &image]);
    assert!(ok, "docker pull {image}: {stderr}");
    let (_, repo_digests, _) = bed.docker(&["inspect", "-f", "{{json .RepoDigests}}", &image]);
    assert!(
        repo_digests.contains(&format!("@{digest}")),
        "{repo_digests} lacks {digest}"
    );
    let (_, config, _) = bed.docker(&["inspect", "-f", "{{json .Config}}", &image]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["User"], "1000:1000", "{config}");
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "[ -e /tmp/.lock ] || exit 1"]),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(["fwatchdog"]), "{config}");

    // Its server, started as the image starts it, against the bed's dockerd through its socket.
    let socket_gid = std::fs::metadata(&bed.docker_socket)
        .unwrap()
        .gid()
        .to_string();
    let socket = format!("{}:/var/run/docker.sock", bed.docker_socket.display());
    let secret_mount = format!(
        "{}:/var/openfaas/secrets/payload-secret:ro",
        secret.display()
    );
    let (container, port) = run_image(
        &bed,
        &image,
        &[
            "--group-add",
            &socket_gid,
            "-v",
            &socket,
            "-v",
            &secret_mount,
            "-e",
            "buildkit_url=docker:///var/run/docker.sock",
            "-e",
            "build_network=none",
        ],
    );
    let name = container.name.clone();
    let logs = || container.logs();
    let health = poll(Duration::from_secs(30), || {
        get(port, "/healthz").filter(|(status, _)| *status == 200)
    })
    .await;
    assert!(health.is_some(), "no 200 on /healthz: {}", logs());

    // It runs as uid 1000: the container's first process is the server itself.
    let (_, pid, _) = bed.docker(&["inspect", "-f", "{{.State.Pid}}", &name]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    assert!(
        status.contains("\nUid:\t1000\t1000\t1000\t1000\n"),
        "{status}"
    );
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim())).unwrap();
    assert_eq!(comm.trim(), "server");
    // The template's healthcheck finds /tmp/.lock.
    let healthy = poll(Duration::from_secs(30), || {
        let (_, state, _) = bed.docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]);
        (state.trim() == "healthy").then_some(())
    })
    .await;
    assert!(healthy.is_some(), "never healthy: {}", logs());

    // A small build through the self-built builder.
    let small = dir.path().join("small");
    write(
        &small,
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo built-by-the-self-built-builder > /proof.txt\n",
            bed.base_image
        ),
    );
    let proof = format!("{}/self-built-proof:1", bed.registry);
    let (ok, stdout, stderr) = cli(strings(&[
        "build",
        small.to_str().unwrap(),
        "--image",
        &proof,
        "--progress",
        "plain",
        "--url",
        &format!("http://127.0.0.1:{port}/build"),
        "--secret-file",
        &secret_arg,
    ]))
    .await;
    assert!(
        ok,
        "build through the self-built builder:\n{stderr}\n{stdout}\n{}",
        logs()
    );
    assert_eq!(
        bed.run_in_image(&proof, "cat /proof.txt"),
        "built-by-the-self-built-builder\n"
    );
    drop(container);
    drop(serve);
    eprintln!("whole test took {:?}", started.elapsed());
}

/// Builds the `hello` function of the stack file in `project` with `--vendor` and the base
/// images, then runs its image; returns what `GET /?name=x` answers.
async fn build_and_ask(
    bed: &Bed,
    serve: &Serve,
    secret: &str,
    project: &Path,
    image: &str,
) -> String {
    let mut args = strings(&[
        "build",
        "-f",
        project.join("stack.yml").to_str().unwrap(),
        "--vendor",
        "--image",
        image,
        "--progress",
        "plain",
        "--url",
        &serve.url,
        "--secret-file",
        secret,
    ]);
    for arg in images(bed) {
        args.extend(strings(&["--build-arg", arg.as_str()]));
    }
    let (ok, stdout, stderr) = cli(args).await;
    assert!(ok, "build of {image}:\n{stderr}\n{stdout}");
    let _ = bed.docker(&["rmi", "-f", image]);
    let (ok, _, stderr) = bed.docker(&["pull", "-q", image]);
    assert!(ok, "docker pull {image}: {stderr}");
    let (container, port) = run_image(bed, image, &[]);
    let answer = poll(Duration::from_secs(30), || {
        get(port, "/?name=x").filter(|(status, _)| *status == 200)
    })
    .await;
    let Some((_, body)) = answer else {
        panic!("{image} never answered: {}", container.logs());
    };
    body
}

/// The template keeps cargo's target dir in a cache mount, and cargo decides what to rebuild by
/// mtime, while a build context's mtimes are whatever its sender chose (ours: one fixed value,
/// so the same files pack to the same bytes). A rebuild must still compile an edited source,
/// and a function must never get the code of another built before it into the same cache.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_through_the_cache_mounts_compiles_the_edited_sources() {
    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    std::fs::create_dir(project.join("template")).unwrap();
    std::os::unix::fs::symlink(
        repo_root().join("template/rust-http"),
        project.join("template/rust-http"),
    )
    .unwrap();
    let scaffold = repo_root().join("template/rust-http/function");
    let lib = std::fs::read_to_string(scaffold.join("src/lib.rs")).unwrap();
    write(
        project,
        "hello/Cargo.toml",
        &std::fs::read_to_string(scaffold.join("Cargo.toml")).unwrap(),
    );
    write(
        project,
        "stack.yml",
        "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  hello:\n    lang: rust-http\n    handler: ./hello\n",
    );
    let secret = project.join("payload-secret");
    std::fs::write(&secret, "rebuild-secret\n").unwrap();
    let secret = secret.to_str().unwrap().to_owned();
    let docker_host = format!("unix://{}", bed.docker_socket.display());
    let serve = Serve::start(
        &["--network", "none", "--secret-file", &secret],
        &[("DOCKER_HOST", &docker_host)],
    );
    for (n, greeting) in ["First", "Second", "First"].iter().enumerate() {
        write(
            project,
            "hello/src/lib.rs",
            &lib.replace(
                "\"Hello, {name}!\\n\"",
                &format!("\"{greeting} {{name}}\\n\""),
            ),
        );
        let image = format!("{}/self-build-hello:{n}", bed.registry);
        let body = build_and_ask(&bed, &serve, &secret, project, &image).await;
        assert_eq!(body, format!("{greeting} x\n"), "build {n} ({image})");
    }
}
