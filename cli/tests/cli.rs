//! The CLI binary against a builder served in-process on the real test bed.

use std::path::Path;
use std::process::Command;

use function_builder_tests::api::{Server, SECRET};
use function_builder_tests::bed::Bed;

const BIN: &str = env!("CARGO_BIN_EXE_function-builder");

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Runs the CLI; returns (success, stdout, stderr).
async fn cli(args: Vec<String>) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn pack_is_byte_for_byte_stable_and_applies_dockerignore() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\nCOPY . /\n");
    write(dir.path(), "src/b.txt", "b\n");
    write(dir.path(), "src/a.txt", "a\n");
    write(dir.path(), "secret.env", "TOKEN=x\n");
    write(dir.path(), ".dockerignore", "secret.env\n");
    let out = tempfile::tempdir().unwrap();
    let pack = |name: &str| {
        strings(&[
            "pack",
            dir.path().to_str().unwrap(),
            "--image",
            "reg.example/fn:1",
            "--build-arg",
            "A=1",
            "-o",
            out.path().join(name).to_str().unwrap(),
        ])
    };
    assert!(cli(pack("one.tar")).await.0);
    // Touch every file: a new mtime must not change the tar.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(dir.path(), "src/a.txt", "a\n");
    assert!(cli(pack("two.tar")).await.0);
    let one = std::fs::read(out.path().join("one.tar")).unwrap();
    assert_eq!(one, std::fs::read(out.path().join("two.tar")).unwrap());

    let mut names = Vec::new();
    for entry in tar::Archive::new(&one[..]).entries().unwrap() {
        names.push(
            entry
                .unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert_eq!(
        names,
        [
            "com.openfaas.docker.config",
            "context",
            "context/.dockerignore",
            "context/Dockerfile",
            "context/src",
            "context/src/a.txt",
            "context/src/b.txt"
        ]
    );
}

#[tokio::test]
async fn build_succeeds_end_to_end_and_fails_clearly() {
    let bed = Bed::get();
    let server = Server::start(&bed, |_| {}).await;
    let url = format!("http://{}/build", server.addr);
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("payload.txt");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let wrong = secrets.path().join("wrong.txt");
    std::fs::write(&wrong, "not-the-secret").unwrap();

    let good = tempfile::tempdir().unwrap();
    write(
        good.path(),
        "Dockerfile",
        &format!("FROM {}\nCOPY hello.txt /hello.txt\n", bed.base_image),
    );
    write(good.path(), "hello.txt", "hello from the cli\n");
    let image = format!("{}/cli/hello:1", bed.registry);
    let build = |dir: &Path, secret: &Path| {
        strings(&[
            "build",
            dir.to_str().unwrap(),
            "--image",
            &image,
            "--url",
            &url,
            "--secret-file",
            secret.to_str().unwrap(),
        ])
    };

    let (ok, stdout, stderr) = cli(build(good.path(), &secret)).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("image: {image}")), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("digest: sha256:")),
        "{stdout}"
    );
    assert!(
        stdout.contains("COPY hello.txt /hello.txt"),
        "progress lines are printed: {stdout}"
    );
    assert_eq!(
        bed.run_in_image(&image, "cat /hello.txt"),
        "hello from the cli\n"
    );

    let bad = tempfile::tempdir().unwrap();
    write(
        bad.path(),
        "Dockerfile",
        &format!(
            "FROM {}\nRUN echo cli-step-output && exit 5\n",
            bed.base_image
        ),
    );
    let (ok, stdout, stderr) = cli(build(bad.path(), &secret)).await;
    assert!(!ok);
    assert!(
        stdout.contains("cli-step-output"),
        "the failing step's output is shown: {stdout}"
    );
    assert!(stderr.contains("exit code: 5"), "{stderr}");

    let (ok, _, stderr) = cli(build(good.path(), &wrong)).await;
    assert!(!ok);
    assert!(
        stderr.contains("the builder rejected the signature"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_runs_the_builder_that_build_submits_to() {
    use std::io::{BufRead, BufReader};

    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("payload.txt");
    std::fs::write(&secret, "serve-secret").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = Command::new(BIN)
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--network",
            "none",
            "--secret-file",
            secret.to_str().unwrap(),
        ])
        .args([
            "--buildkit",
            &format!("docker://{}", bed.docker_socket.display()),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with(&format!(
            "builder listening on http://127.0.0.1:{port}/build"
        )),
        "{first}"
    );

    write(
        dir.path(),
        "ctx/Dockerfile",
        &format!("FROM {}\nRUN echo served > /served\n", bed.base_image),
    );
    let image = format!("{}/cli/served:1", bed.registry);
    let url = format!("http://127.0.0.1:{port}");
    let ctx = dir.path().join("ctx");
    let (ok, stdout, stderr) = cli(strings(&[
        "build",
        ctx.to_str().unwrap(),
        "--image",
        &image,
        "--url",
        &url,
        "--secret-file",
        secret.to_str().unwrap(),
    ]))
    .await;
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(bed.run_in_image(&image, "cat /served"), "served\n");
}
