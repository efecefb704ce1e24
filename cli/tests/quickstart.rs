//! The README quickstart, as a user runs it: `deploy/quickstart` brings up what the local default
//! needs (its own Docker Engine, a registry on 127.0.0.1:5000, a base image) and serves the
//! builder; `function-builder build ./examples/hello` with the variables it prints builds and
//! pushes; Ctrl-C stops everything it started.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use function_builder_tests::bed::Bed;

mod common;
use common::{strings, BIN};

#[tokio::test]
async fn the_quickstart_serves_a_builder_that_builds_the_hello_example() {
    // The image is checked with the test bed's engine, which pulls from the quickstart registry.
    let bed = Bed::get();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut quickstart = Command::new(repo.join("deploy/quickstart"))
        .arg(port.to_string())
        .env("FB_CLI", BIN)
        .current_dir(repo)
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = quickstart.id();
    let stop = move || {
        // Ctrl-C in its terminal: SIGINT to the whole foreground group.
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{group}")])
            .status();
    };

    let mut exports = Vec::new();
    let mut bed_dir = None;
    let mut lines = BufReader::new(quickstart.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(vars) = line.trim().strip_prefix("export ") {
            for pair in vars.split(' ') {
                let (name, value) = pair.split_once('=').unwrap();
                exports.push((name.to_owned(), value.to_owned()));
            }
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
        stop();
        panic!("the quickstart never served (its stderr is above)");
    };
    assert_eq!(exports.len(), 2, "{exports:?}");

    let image = "127.0.0.1:5000/hello:dev";
    let args = strings(&["build", "./examples/hello", "--image", image]);
    let (ok, stdout, stderr) = {
        let repo = repo.to_owned();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(&args)
                .envs(exports)
                .current_dir(repo)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ran = ok.then(|| bed.run_in_image(image, "cat /built-with.txt; /usr/local/bin/hello"));
    stop();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = quickstart.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the quickstart did not stop"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("image: {image}")), "{stdout}");
    assert_eq!(
        ran.unwrap(),
        "hello from an image built by function-builder\n".repeat(2)
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
