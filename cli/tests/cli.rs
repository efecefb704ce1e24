//! The CLI binary against a builder served in-process on the real test bed.

use std::path::Path;
use std::process::Command;

use function_builder_tests::api::SECRET;
use function_builder_tests::bed::Bed;

mod common;
use common::{build_args, cli, rewrite_with_new_mtime, strings, write, Serve, BIN};

#[tokio::test]
async fn an_image_that_is_no_reference_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    let out = dir.path().join("req.tar");
    let (ok, _, stderr) = cli(strings(&[
        "pack",
        dir.path().to_str().unwrap(),
        "--image",
        "Foo//bar",
        "-o",
        out.to_str().unwrap(),
    ]))
    .await;
    assert!(!ok);
    assert!(
        stderr.contains(r#"image: invalid reference "Foo//bar""#),
        "{stderr}"
    );
    assert!(!out.exists());
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
    // A new mtime must not change the tar.
    rewrite_with_new_mtime(dir.path(), "src/a.txt", "a\n");
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

/// `serve` with no flag but `--network none` (the bed's engine has no bridge): it finds the Docker
/// Engine through `DOCKER_HOST`, as the docker CLI does, and builds with it.
#[tokio::test]
async fn build_against_serve_succeeds_end_to_end_and_fails_clearly() {
    let bed = Bed::get();
    let docker_host = format!("unix://{}", bed.docker_socket.display());
    let serve = Serve::start(&["--network", "none"], &[("DOCKER_HOST", &docker_host)]);
    assert!(
        serve.banner[0].starts_with("payload secret (also in "),
        "{:?}",
        serve.banner
    );
    let secret_value = serve.banner[0].rsplit(' ').next().unwrap().to_owned();
    let url = serve.url.clone();
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("payload.txt");
    std::fs::write(&secret, format!("{secret_value}\n")).unwrap();
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
    let build = |dir: &Path, secret: &Path| build_args(dir, &image, &url, secret);

    let (ok, stdout, stderr) = cli(build(good.path(), &secret)).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("image: {image}")), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("digest: sha256:")),
        "{stdout}"
    );
    // FROM and COPY: the builder's step report, printed.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("steps: 2 (") && l.ends_with(" cached)")),
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
async fn serve_without_an_engine_exits_saying_what_to_configure() {
    let out = tokio::task::spawn_blocking(|| {
        Command::new(BIN)
            .args(["serve", "--port", "0"])
            .env_remove("BUILDKIT_HOST")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no BuildKit to build with: start a Docker Engine (its socket \
         /nonexistent/docker.sock, named by DOCKER_HOST, is missing), or pass --buildkit \
         unix:///run/buildkit/buildkitd.sock (or set BUILDKIT_HOST)\n"
    );
}

#[tokio::test]
async fn build_async_wait_receives_the_callback() {
    use bytes::Bytes;
    use function_builder_tests::client::{read_body, send_tcp, TestBody};
    use http_body_util::{BodyExt, Full};

    fn body(bytes: Bytes) -> TestBody {
        Full::new(bytes).map_err(|never| match never {}).boxed()
    }

    // The gateway's role, played by the test: 202 with an X-Call-Id at /async-function/…, then
    // the builder invoked as the queue-worker does and its answer POSTed to X-Callback-Url.
    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("payload.txt");
    std::fs::write(&secret, SECRET).unwrap();
    let builder = Serve::on_bed(&bed, &secret);
    let builder_addr = builder.addr();
    let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = gateway.local_addr().unwrap();
    let seen_path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = std::sync::Arc::clone(&seen_path);
    tokio::spawn(async move {
        let (stream, _) = gateway.accept().await.unwrap();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let seen = std::sync::Arc::clone(&seen);
                async move {
                    *seen.lock().unwrap() = req.uri().path().to_owned();
                    let signature = req.headers()["x-build-signature"].clone();
                    let callback: http::Uri = req.headers()["x-callback-url"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let tar = req.into_body().collect().await.unwrap().to_bytes();
                    tokio::spawn(async move {
                        let invoke = http::Request::post("/build")
                            .header("host", "builder")
                            .header("x-build-signature", signature);
                        let resp = send_tcp(builder_addr, invoke.body(body(tar)).unwrap()).await;
                        let status = resp.status().as_u16().to_string();
                        let result = read_body(resp).await;
                        let callback_addr = callback.authority().unwrap().as_str().parse().unwrap();
                        let post = http::Request::post(callback.path())
                            .header("host", callback.authority().unwrap().as_str())
                            .header("x-call-id", "call-123")
                            .header("x-function-status", status)
                            .header("content-type", "application/json");
                        let _ = send_tcp(callback_addr, post.body(body(result)).unwrap()).await;
                    });
                    let accepted = http::Response::builder()
                        .status(202)
                        .header("x-call-id", "call-123");
                    Ok::<_, std::convert::Infallible>(
                        accepted
                            .body(http_body_util::Empty::<Bytes>::new())
                            .unwrap(),
                    )
                }
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });

    write(
        dir.path(),
        "ctx/Dockerfile",
        &format!("FROM {}\nRUN echo queued > /queued\n", bed.base_image),
    );
    let image = format!("{}/cli/queued:1", bed.registry);
    let url = format!("http://{gateway_addr}/function/function-builder.openfaas-system/build");
    let ctx = dir.path().join("ctx");
    let mut args = build_args(&ctx, &image, &url, &secret);
    args.extend(strings(&["--async", "--wait"]));
    let (ok, stdout, stderr) = cli(args).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        *seen_path.lock().unwrap(),
        "/async-function/function-builder.openfaas-system/build"
    );
    assert!(stdout.contains("call id: call-123"), "{stdout}");
    assert!(
        stdout.contains("callback for call call-123 with status 200 OK"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("digest: sha256:")),
        "{stdout}"
    );
    assert_eq!(bed.run_in_image(&image, "cat /queued"), "queued\n");
}

#[tokio::test]
async fn build_on_a_terminal_shows_a_live_line_with_the_current_step() {
    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("payload.txt");
    std::fs::write(&secret, SECRET).unwrap();
    let serve = Serve::on_bed(&bed, &secret);
    write(
        dir.path(),
        "ctx/Dockerfile",
        &format!(
            "FROM {}\nRUN echo live-one && sleep 1 && echo live-two\nCOPY . /ctx/\n",
            bed.base_image
        ),
    );
    let image = format!("{}/cli/live:1", bed.registry);
    let command = format!(
        "{BIN} build {} --image {image} --url {} --secret-file {}",
        dir.path().join("ctx").display(),
        serve.url,
        secret.display()
    );
    // util-linux `script` runs the CLI on a pseudo-terminal and relays what it draws.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("script")
            .args(["-qefc", &command, "/dev/null"])
            .env("TERM", "xterm")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // The live line is redrawn in place (erase line), shows the step bar and the current step.
    assert!(screen.contains("\x1b[2K"), "{screen}");
    assert!(screen.contains("] 1/3 [2/3] RUN echo live-one"), "{screen}");
    assert!(screen.contains("] 3/3 "), "{screen}");
    // Log lines scroll above it without the time stamps the plain output keeps.
    assert!(
        screen.contains("\r\nlive-two ") || screen.contains("\x1b[2Klive-two "),
        "{screen}"
    );
    assert!(!screen.contains("Z live-two"), "{screen}");
    assert!(screen.contains(&format!("image: {image}\r\n")), "{screen}");
}

/// The production server's log lines: one per request (with the call id) and one per build.
#[tokio::test]
async fn serve_logs_each_request_and_removes_its_generated_secret_when_stopped() {
    use function_builder_tests::client::{empty, send_tcp};

    let bed = Bed::get();
    let docker_host = format!("unix://{}", bed.docker_socket.display());
    let mut serve = Serve::start(&["--network", "none"], &[("DOCKER_HOST", &docker_host)]);
    let banner = &serve.banner[0];
    let secret_file = banner
        .strip_prefix("payload secret (also in ")
        .and_then(|rest| rest.split_once(", removed when serve stops): "))
        .map(|(path, _)| std::path::PathBuf::from(path))
        .unwrap_or_else(|| panic!("{banner}"));
    assert!(secret_file.exists());

    let get = |path: &str| {
        http::Request::get(path)
            .header("host", "builder")
            .header("x-call-id", format!("call{}", path.replace('/', "-")))
            .body(empty())
            .unwrap()
    };
    let post = http::Request::post("/build")
        .header("host", "builder")
        .header("x-call-id", "call-unsigned")
        .body(empty())
        .unwrap();
    for (req, want) in [(get("/healthz"), 200), (get("/nowhere"), 404), (post, 401)] {
        assert_eq!(send_tcp(serve.addr(), req).await.status(), want);
    }
    let wanted = [
        "request method=GET path=/healthz status=200 ",
        "request method=GET path=/nowhere status=404 ",
        "request method=POST path=/build status=401 ",
    ];
    let log = serve.wait_for_log(|line| line.contains("call_id=call-unsigned"));
    for (want, call_id) in wanted
        .iter()
        .zip(["call-healthz", "call-nowhere", "call-unsigned"])
    {
        assert!(
            log.iter()
                .any(|l| l.contains(want) && l.contains(&format!(" call_id={call_id} "))),
            "{want} {call_id}: {log:#?}"
        );
    }

    // Ctrl-C ends it as a shell reports a Ctrl-C.
    let status = serve.interrupt();
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(!secret_file.exists(), "{} is left", secret_file.display());
    let log = serve.wait_for_log(|line| line.contains("SIGINT received: stopping"));
    assert!(
        log.iter()
            .any(|l| l.ends_with("SIGINT received: stopping, builds in flight are cancelled")),
        "{log:#?}"
    );
}

/// A taken port is found before any secret is written or printed.
#[tokio::test]
async fn serve_on_a_taken_port_writes_and_prints_no_secret() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("new-secret.txt");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["serve", "--port", &port, "--buildkit", "tcp://127.0.0.1:1"])
            .arg("--secret-file")
            .arg(dir.path().join("new-secret.txt"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: listening on 127.0.0.1:{}: ",
            taken.local_addr().unwrap().port()
        )),
        "{stderr}"
    );
    assert!(!secret.exists());
}

#[tokio::test]
async fn help_shows_what_is_needed_and_what_values_mean() {
    // Without faas-cli's variables: (success, stdout, stderr).
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = Command::new(BIN)
                .args(&args)
                .env_remove("OPENFAAS_REMOTE_BUILDER")
                .env_remove("OPENFAAS_PAYLOAD_SECRET")
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (ok, help, _) = run(strings(&["build", "--help"])).await.unwrap();
    assert!(ok);
    // The environment can give --url and --secret-file: they are options, not required.
    assert!(
        help.contains("Usage: function-builder build [OPTIONS] [DIR]\n"),
        "{help}"
    );
    assert!(help.contains("[env: OPENFAAS_REMOTE_BUILDER]"), "{help}");
    assert!(help.contains("--build-arg <KEY=VALUE>"), "{help}");
    assert!(help.contains("--platform <PLATFORM>"), "{help}");
    assert!(help.contains("Examples:\n"), "{help}");
    let (ok, help, _) = run(strings(&["serve", "--help"])).await.unwrap();
    assert!(ok);
    assert!(help.contains("- none:    No network"), "{help}");
    assert!(help.contains("Examples:\n"), "{help}");

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    let args = strings(&["build", dir.path().to_str().unwrap(), "--skip-push"]);
    let (ok, _, stderr) = run(args).await.unwrap();
    assert!(!ok);
    assert_eq!(
        stderr,
        "error: build needs the builder's URL and the payload secret: pass --url and \
         --secret-file, or set OPENFAAS_REMOTE_BUILDER and OPENFAAS_PAYLOAD_SECRET\n"
    );
    // Set but empty counts as unset, not as a missing value.
    let out = Command::new(BIN)
        .args(["build", dir.path().to_str().unwrap(), "--skip-push"])
        .env("OPENFAAS_REMOTE_BUILDER", "")
        .env("OPENFAAS_PAYLOAD_SECRET", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), stderr);
}
