//! The README quickstart, as a user runs it: `deploy/quickstart` brings up what the local default
//! needs (its own Docker Engine, a registry, a base image) and serves the builder; the two lines
//! it prints, pasted into another terminal, build and push `examples/hello`; Ctrl-C during a
//! build's `RUN` cancels the build and stops everything it started, leaving no process behind.
//!
//! 127.0.0.1:5000, the quickstart's default registry port, is held by this test: the quickstart
//! runs its registry on a free port the test chooses, as `FB_REGISTRY_PORT` lets a user do.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use function_builder_tests::bed::{wait_for_process, Bed};

mod common;
use common::{write, BIN};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_quickstart_builds_hello_on_any_registry_port_and_ctrl_c_cancels_a_running_build() {
    // The images are checked with the test bed's engine, which pulls from the quickstart registry.
    let bed = Bed::get();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Whoever holds 5000 (this test, or something else on the machine), it is taken.
    let _held = TcpListener::bind("127.0.0.1:5000").ok();
    assert!(TcpStream::connect("127.0.0.1:5000").is_ok());
    let registry = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let mut quickstart = Command::new(repo.join("deploy/quickstart"))
        .arg(port.to_string())
        .env("FB_CLI", BIN)
        .env("FB_REGISTRY_PORT", registry.rsplit(':').next().unwrap())
        .current_dir(repo)
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = quickstart.id();
    let ctrl_c = move || {
        // Ctrl-C in its terminal: SIGINT to the whole foreground group.
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{group}")])
            .status();
    };

    // What it prints: `export A=… B=…`, then the build command.
    let mut exports = Vec::new();
    let mut command = Vec::new();
    let mut bed_dir = None;
    let mut lines = BufReader::new(quickstart.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(vars) = line.trim().strip_prefix("export ") {
            for pair in vars.split(' ') {
                let (name, value) = pair.split_once('=').unwrap();
                exports.push((name.to_owned(), value.to_owned()));
            }
        } else if line.trim_start().starts_with(&format!("{BIN} build ")) {
            command = line.split_whitespace().map(str::to_owned).collect();
        }
        if let Some(rest) = line.strip_prefix("builder listening on ") {
            bed_dir = rest.split("docker://").nth(1).map(|socket| {
                Path::new(socket.trim_end_matches(')'))
                    .parent()
                    .unwrap()
                    .to_owned()
            });
            break;
        }
    }
    let Some(bed_dir) = bed_dir else {
        ctrl_c();
        panic!("the quickstart never served (its stderr is above)");
    };
    assert_eq!(exports.len(), 2, "{exports:?}");
    let image = format!("{registry}/hello:dev");
    let base = format!("{registry}/busybox:latest");
    assert_eq!(
        command[1..],
        [
            "build",
            "./examples/hello",
            "--image",
            &image,
            "--build-arg",
            &format!("BASE_IMAGE={base}"),
        ],
        "{command:?}"
    );

    // The printed command, as printed, in the repository.
    let out = {
        let (command, exports, repo) = (command.clone(), exports.clone(), repo.to_owned());
        tokio::task::spawn_blocking(move || {
            Command::new(&command[0])
                .args(&command[1..])
                .envs(exports)
                .current_dir(repo)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let ran = out
        .status
        .success()
        .then(|| bed.run_in_image(&image, "cat /built-with.txt; /usr/local/bin/hello"));

    // A build whose RUN is still going when Ctrl-C comes.
    let ctx = tempfile::tempdir().unwrap();
    let marker = format!("fb-quickstart-run-{}", std::process::id());
    write(
        ctx.path(),
        "Dockerfile",
        &format!("FROM {base}\nRUN echo {marker} && sleep 600 && echo not-reached\n"),
    );
    let mut running = Command::new(BIN)
        .args(["build", ctx.path().to_str().unwrap(), "--image"])
        .arg(format!("{registry}/cancelled:dev"))
        .envs(exports)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_for_process(&marker, true, Duration::from_secs(60)).await;
    ctrl_c();
    let mut cancelled = String::new();
    running
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut cancelled)
        .unwrap();
    let cancelled_status = running.wait().unwrap();

    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = quickstart.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(120),
            "the quickstart did not stop"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Once it has exited, nothing of the build may be left, at once, without waiting.
    let run_gone = wait_for_process(&marker, false, Duration::ZERO).await;

    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("image: {image}")), "{stdout}");
    assert_eq!(
        ran.unwrap(),
        "hello from an image built by function-builder\n".repeat(2)
    );
    assert!(started, "the RUN step never started");
    assert!(!cancelled_status.success());
    assert_eq!(
        cancelled.lines().last(),
        Some("error: the builder closed the connection before the build finished"),
        "{cancelled}"
    );
    assert!(
        run_gone,
        "the RUN of the cancelled build outlived the quickstart"
    );
    // Ctrl-C ends it (130) and removes what it started.
    assert_eq!(status.code(), Some(130));
    assert!(!bed_dir.exists(), "{} is left behind", bed_dir.display());
    let left = Command::new("pgrep")
        .args(["-f", &bed_dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
