//! Faults injected into the real bed, and what the builder answers: a Docker Engine killed
//! mid-build (a dockerd of this test's own, so the bed's is untouched), a registry that goes
//! away mid-push (the bed's registry behind a proxy this test cuts), a body trickled past
//! `read_timeout`, a thousand connections that never finish their header, SIGTERM with builds in
//! flight, and a builder started without its payload secret.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buildkit::Address;
use bytes::Bytes;
use function_builder_tests::api::{request_tar, sign, Server, Shape, SECRET};
use function_builder_tests::bed::{wait_for_process, Bed};
use function_builder_tests::client::{empty, full, promised_upload, read_body, send_tcp, streamed};
use function_builder_tests::daemons::{eventually, kill_matching, Dockerd};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A config for builds whose image is only tagged on the daemon, never pushed.
const NO_PUSH: &str = r#"{"image":"127.0.0.1:1/faults/unpushed:1","skipPush":true}"#;

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether `dir` is empty within 10 s.
async fn emptied(dir: &Path) -> bool {
    eventually(Duration::from_secs(10), || async move {
        entries(dir).is_empty()
    })
    .await
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// A TCP proxy in front of a registry that can be cut: once `cut_after` bytes have gone towards
/// the registry it closes every connection and then closes each new one at once, as a registry
/// that stopped, until [`Proxy::restore`]. It keeps its port meanwhile, so no other socket can
/// take it.
struct Proxy {
    addr: SocketAddr,
    down: Arc<std::sync::atomic::AtomicBool>,
    went_down: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String, cut_after: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let went_down = Arc::new(tokio::sync::Notify::new());
        let cut = Arc::new(tokio::sync::Notify::new());
        let sent = Arc::new(AtomicU64::new(0));
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (is_down, notify_down) = (Arc::clone(&down), Arc::clone(&went_down));
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    () = cut.notified() => {
                        is_down.store(true, Ordering::SeqCst);
                        conns.shutdown().await;
                        notify_down.notify_one();
                    }
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        if is_down.load(Ordering::SeqCst) {
                            continue; // dropped: closed at once
                        }
                        let upstream = upstream.clone();
                        let (sent, cut, fired) = (Arc::clone(&sent), Arc::clone(&cut), Arc::clone(&fired));
                        conns.spawn(async move {
                            let Ok(server) = TcpStream::connect(&upstream).await else { return };
                            let (mut client_rx, mut client_tx) = client.into_split();
                            let (mut server_rx, mut server_tx) = server.into_split();
                            let up = async {
                                let mut buf = vec![0u8; 64 << 10];
                                loop {
                                    let n = match client_rx.read(&mut buf).await {
                                        Ok(0) | Err(_) => break,
                                        Ok(n) => n,
                                    };
                                    if server_tx.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                    let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                                    if total >= cut_after && !fired.swap(true, Ordering::SeqCst) {
                                        cut.notify_one();
                                    }
                                }
                                let _ = server_tx.shutdown().await;
                            };
                            let down = async {
                                let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
                                let _ = client_tx.shutdown().await;
                            };
                            tokio::join!(up, down);
                        });
                    }
                }
            }
        });
        Self {
            addr,
            down,
            went_down,
            task,
        }
    }

    /// Waits until the proxy has cut (its byte budget was reached), at most `timeout`.
    async fn wait_cut(&self, timeout: Duration) {
        tokio::time::timeout(timeout, self.went_down.notified())
            .await
            .expect("the push reached the proxy's budget");
    }

    /// The registry is back: connections pass again, and are never cut again.
    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A manifest's status in the bed's registry.
async fn manifest_status(bed: &Bed, repo: &str, tag: &str) -> u16 {
    let req = http::Request::get(format!("/v2/{repo}/manifests/{tag}"))
        .header("host", bed.registry.as_str())
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json",
        )
        .body(empty())
        .unwrap();
    send_tcp(bed.registry.parse().unwrap(), req)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_docker_engine_killed_mid_build_is_503_and_the_builder_recovers_without_a_restart() {
    let bed = Bed::get();
    let mut dockerd = Dockerd::start().await;
    let work = tempfile::tempdir().unwrap();
    let socket = dockerd.socket();
    let server = Server::start(&bed, |s| {
        s.buildkit = Address::Docker(socket).into();
        s.work_dir = work.path().to_owned();
    })
    .await;
    assert_eq!(server.get_json("/ready").await.0, 200);

    let marker = format!("sleep 7{}", std::process::id());
    let df = format!("FROM {}\nRUN {marker}\n", bed.base_image);
    let tar = request_tar(Shape::Go, NO_PUSH, &[("Dockerfile", df.as_bytes(), 0o644)]);
    let kill = async {
        assert!(
            wait_for_process(&marker, true, Duration::from_secs(120)).await,
            "the RUN step started: {}",
            dockerd.log()
        );
        dockerd.kill();
    };
    let post = tokio::time::timeout(Duration::from_secs(150), server.post_signed_with(tar, &[]));
    let (answered, ()) = tokio::join!(post, kill);
    kill_matching(&format!("^{marker}$"), "KILL");
    let answered = answered.expect("the request ended soon after the daemon died");
    assert_eq!(answered.status, 503, "{}", answered.json);
    assert_eq!(answered.retry_after.as_deref(), Some("10"));
    let error = answered.json["error"].as_str().unwrap();
    assert!(error.starts_with("buildkit unreachable: "), "{error}");
    assert!(emptied(work.path()).await, "{:?}", entries(work.path()));

    let (status, body) = server.get_json("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("buildkit is not ready: "),
        "{body}"
    );

    dockerd.launch().await;
    assert!(
        eventually(Duration::from_secs(60), || async {
            server.get_json("/ready").await.0 == 200
        })
        .await,
        "/ready went back to 200"
    );
    let df = format!("FROM {}\nRUN echo recovered\n", bed.base_image);
    let tar = request_tar(Shape::Go, NO_PUSH, &[("Dockerfile", df.as_bytes(), 0o644)]);
    let answered = server.post_signed_with(tar, &[]).await;
    assert_eq!(answered.status, 200, "{}", answered.json);
    assert_eq!(answered.json["status"], "success");
}

#[tokio::test]
async fn a_registry_that_stops_mid_push_is_503_and_the_next_build_pushes() {
    let bed = Bed::get();
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(&bed, |s| s.work_dir = work.path().to_owned()).await;
    // 4 MiB that do not compress: the push is under way when the first MiB has gone.
    let mut noise = vec![0u8; 4 << 20];
    let mut x = u64::from(std::process::id()) | 1;
    for byte in &mut noise {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    let df = format!("FROM {}\nCOPY noise /noise\n", bed.base_image);
    let repo = format!("faults/registry-down-{}", std::process::id());
    let proxy = Proxy::start(bed.registry.clone(), 1 << 20).await;
    let tar = |addr: SocketAddr, tag: &str| {
        request_tar(
            Shape::Python,
            &json!({ "image": format!("{addr}/{repo}:{tag}") }).to_string(),
            &[
                ("Dockerfile", df.as_bytes(), 0o644),
                ("noise", noise.as_slice(), 0o644),
            ],
        )
    };
    let addr = proxy.addr;
    let post = server.post_signed_with(tar(addr, "1"), &[]);
    let (answered, ()) = tokio::join!(post, proxy.wait_cut(Duration::from_secs(120)));
    assert_eq!(answered.status, 503, "{}", answered.json);
    assert_eq!(answered.retry_after.as_deref(), Some("10"));
    let error = answered.json["error"].as_str().unwrap();
    assert!(error.starts_with("registry unreachable: "), "{error}");
    assert!(emptied(work.path()).await, "{:?}", entries(work.path()));

    // The registry is back, on the same address.
    proxy.restore();
    let answered = server.post_signed_with(tar(addr, "2"), &[]).await;
    assert_eq!(answered.status, 200, "{}", answered.json);
    assert_eq!(manifest_status(&bed, &repo, "2").await, 200);
}

#[tokio::test]
async fn a_body_trickled_slower_than_read_timeout_is_cut_with_408() {
    let bed = Bed::get();
    let work = tempfile::tempdir().unwrap();
    let server = Server::start_serving(
        &bed,
        |c| c.read_timeout = Some(Duration::from_secs(2)),
        |s| s.work_dir = work.path().to_owned(),
    )
    .await;
    // 2 MiB at once (so the body is spooled), then 1 KiB every 100 ms of a promised 64 MiB.
    let chunks = futures_util::stream::unfold(0u32, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let len = if n == 0 { 2 << 20 } else { 1024 };
        Some((Ok(Bytes::from(vec![0u8; len])), n + 1))
    });
    let req = promised_upload(streamed(chunks), sign(SECRET, b"whatever"));
    let resp = tokio::time::timeout(Duration::from_secs(30), send_tcp(server.addr, req))
        .await
        .expect("answered soon after read_timeout");
    assert_eq!(resp.status(), 408);
    let body: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
    assert_eq!(body["status"], "failed");
    assert_eq!(
        body["error"],
        "request body not received within read_timeout"
    );
    assert!(emptied(work.path()).await, "{:?}", entries(work.path()));
}

#[tokio::test]
async fn a_thousand_half_sent_headers_are_closed_while_health_and_builds_are_served() {
    let bed = Bed::get();
    rlimit::increase_nofile_limit(8192).unwrap();
    let server = Server::start_serving(
        &bed,
        |c| c.header_timeout = Some(Duration::from_secs(3)),
        |_| {},
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST /build HTTP/1.1\r\nHost: builder\r\nContent-Le")
            .await
            .unwrap();
        stalled.push(stream);
    }
    // Served meanwhile: health, and a build.
    assert_eq!(server.get_json("/healthz").await.0, 200);
    let df = format!("FROM {}\nRUN echo served\n", bed.base_image);
    let tar = request_tar(
        Shape::Node,
        NO_PUSH,
        &[("Dockerfile", df.as_bytes(), 0o644)],
    );
    let answered = server.post_signed_with(tar, &[]).await;
    assert_eq!(answered.status, 200, "{}", answered.json);
    // Every stalled connection is closed by the server, without an answer.
    let closed = futures_util::future::join_all(stalled.into_iter().map(|mut stream| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest))
            .await
            .is_ok_and(|read| read.map_or(true, |n| n == 0))
    }))
    .await;
    assert_eq!(closed.iter().filter(|c| **c).count(), 1000);
    assert_eq!(server.get_json("/healthz").await.0, 200);
}

/// The builder-server binary (the template's `server` as production runs it), its address
/// read from its log.
struct Process {
    child: Child,
    addr: SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
}

fn builder_command(dir: &Path, buildkit_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_builder-server"));
    command
        .env("upstream_url", "http://127.0.0.1:0")
        .env("payload_secret_path", dir.join("payload-secret"))
        .env("buildkit_url", buildkit_url)
        .env("build_network", "none")
        .env("docker_config", dir.join("none.json"))
        .env("work_dir", dir)
        .env("read_timeout", "60s")
        .env("write_timeout", "120s")
        .env_remove("disable_hmac")
        // No fixed port a user or another test may hold.
        .env("metrics_port", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

impl Process {
    fn start(mut command: Command) -> Self {
        let mut child = command.spawn().expect("start builder-server");
        let (tx, stderr) = std::sync::mpsc::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let pipe = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in pipe.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = addr_tx.send(addr.trim().to_owned());
                }
                let _ = tx.send(line);
            }
        });
        let Ok(addr) = addr_rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("builder-server logged no address within 30 s");
        };
        let addr = addr.parse().unwrap();
        Self {
            child,
            addr,
            stderr,
        }
    }

    fn log(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sigterm_with_two_builds_in_flight_answers_both_refuses_new_connections_and_exits_0() {
    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payload-secret"), SECRET).unwrap();
    let mut builder = Process::start(builder_command(
        dir.path(),
        &format!("docker://{}", bed.docker_socket.display()),
    ));
    let addr = builder.addr;
    // Each RUN sleeps until the test ends its sleep (its own command line, `sleep 9<pid><n>`),
    // then prints its marker: both are surely in flight at the SIGTERM, however loaded the
    // machine.
    let pid = std::process::id();
    let build = |n: u32| {
        let df = format!(
            "FROM {}\nRUN sleep 9{pid}{n}; echo finished-{pid}-{n}\n",
            bed.base_image
        );
        let tar = request_tar(Shape::Go, NO_PUSH, &[("Dockerfile", df.as_bytes(), 0o644)]);
        let req = http::Request::post("/build")
            .header("host", "builder")
            .header("x-build-signature", sign(SECRET, &tar))
            .body(full(tar))
            .unwrap();
        tokio::spawn(async move {
            let resp = send_tcp(addr, req).await;
            let status = resp.status().as_u16();
            let body: Value = serde_json::from_slice(&read_body(resp).await).unwrap();
            (status, body)
        })
    };
    let answers = [build(1), build(2)];
    for n in [1, 2] {
        assert!(
            wait_for_process(&format!("sleep 9{pid}{n}"), true, Duration::from_secs(120)).await,
            "build {n}'s RUN started"
        );
    }
    signal(builder.child.id(), "TERM");
    assert!(
        eventually(Duration::from_secs(10), || async {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "new connections are refused after SIGTERM"
    );
    for n in [1, 2] {
        kill_matching(&format!("^sleep 9{pid}{n}$"), "TERM");
    }
    for (n, answer) in (1..).zip(answers) {
        let (status, body) = tokio::time::timeout(Duration::from_secs(120), answer)
            .await
            .expect("answered after SIGTERM")
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "success");
        assert!(
            body["log"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l.as_str().unwrap().contains(&format!("finished-{pid}-{n}"))),
            "{body}"
        );
    }
    let exited = eventually(Duration::from_secs(30), || {
        let done = builder.child.try_wait().unwrap();
        async move { done.is_some() }
    })
    .await;
    assert!(exited, "the builder exits once both are answered");
    let status = builder.child.wait().unwrap();
    assert!(status.success(), "{status}: {}", builder.log());
}

#[tokio::test]
async fn a_builder_without_its_payload_secret_refuses_to_start() {
    let bed = Bed::get();
    let buildkit = format!("docker://{}", bed.docker_socket.display());
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("payload-secret");
    for (contents, why) in [
        (None, "No such file or directory".to_owned()),
        (Some(" \n"), "is empty".to_owned()),
    ] {
        if let Some(contents) = contents {
            std::fs::write(&secret, contents).unwrap();
        }
        let out = builder_command(dir.path(), &buildkit)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("payload secret {}", secret.display()))
                && stderr.contains(&why),
            "{stderr}"
        );
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}
