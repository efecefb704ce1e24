//! `ADD <url>` is fetched by the daemon itself, outside every `RUN` sandbox: only what
//! `allowed_remote_sources` allows is ever fetched, on every daemon of the bed. A loopback HTTP
//! server standing in for a metadata endpoint counts what reaches it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use buildkit::RemoteSources;
use function_builder_tests::api::{request_tar, servers, Server, Shape};
use function_builder_tests::bed::Bed;
use serde_json::Value;

/// A loopback HTTP server that answers every GET with a line naming its path, and counts the
/// requests per path.
struct Origin {
    port: u16,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Origin {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let counted = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let body = format!("served {path}\n");
                let _ = write!(
                    reader.get_mut(),
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests for paths starting with `prefix`.
    fn hits(&self, prefix: &str) -> usize {
        let hits = self.hits.lock().unwrap();
        hits.iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

async fn build(server: &Server, image: &str, args: &str, dockerfile: &str) -> (u16, Value) {
    let config = format!(r#"{{"image":"{image}","buildArgs":{{{args}}}}}"#);
    let tar = request_tar(
        Shape::Go,
        &config,
        &[("Dockerfile", dockerfile.as_bytes(), 0o644)],
    );
    server.post_signed(tar).await
}

fn is_docker(daemon: &str) -> bool {
    daemon.starts_with("docker://")
}

#[tokio::test]
async fn no_remote_source_is_fetched_unless_allowed() {
    let bed = Bed::get();
    let origin = Origin::start();
    let base = &bed.base_image;
    let image = format!("{}/remote/refused:1", bed.registry);
    for (daemon, server) in servers(&bed, |_| {}).await {
        for (case, df) in [
            (
                "direct",
                format!("FROM {base}\nADD {} /x\n", origin.url("/direct")),
            ),
            (
                "lower",
                format!("FROM {base}\nadd {} /x\n", origin.url("/lower")),
            ),
            (
                "later stage",
                format!(
                    "FROM {base} AS one\nRUN true\nFROM {base}\nADD {} /x\n",
                    origin.url("/later")
                ),
            ),
        ] {
            let (status, json) = build(&server, &image, "", &df).await;
            assert_eq!(status, 403, "{daemon} {case}: {json:#}");
            let line = df.lines().count();
            let url = df
                .lines()
                .last()
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap();
            assert_eq!(
                json["error"],
                format!("ADD {url} (Dockerfile line {line}): remote sources are fetched only under allowed_remote_sources (empty: none)"),
                "{daemon} {case}"
            );
        }
        // What only the daemon resolves: its source policy refuses it, or, on a daemon without
        // one, the builder does before the build starts.
        for (case, args, df) in [
            (
                "arg",
                String::new(),
                format!("FROM {base}\nARG U={}\nADD $U /x\n", origin.url("/arg")),
            ),
            (
                "build arg",
                format!(r#""U":"{}""#, origin.url("/build-arg")),
                format!("FROM {base}\nARG U\nADD ${{U}} /x\n"),
            ),
        ] {
            let (status, json) = build(&server, &image, &args, &df).await;
            assert_eq!(status, 403, "{daemon} {case}: {json:#}");
            let error = json["error"].as_str().unwrap();
            if is_docker(&daemon) {
                assert!(
                    error.contains("this daemon has no source policy"),
                    "{daemon} {case}: {error}"
                );
            } else {
                assert!(
                    error.starts_with("remote source refused by allowed_remote_sources: ")
                        && error.contains("denied by policy"),
                    "{daemon} {case}: {error}"
                );
            }
        }
    }
    assert_eq!(origin.hits("/"), 0, "fetched: {:?}", origin.hits);
}

#[tokio::test]
async fn an_allowed_prefix_is_fetched_and_nothing_beside_it() {
    let bed = Bed::get();
    let origin = Origin::start();
    let base = &bed.base_image;
    let allowed = origin.url("/allowed/");
    let allow = |s: &mut handler::Settings| {
        s.policy.remote_sources = RemoteSources::Only(vec![allowed.clone()]);
    };
    for (n, (daemon, server)) in servers(&bed, allow).await.into_iter().enumerate() {
        let image = format!("{}/remote/allowed:{n}", bed.registry);
        let df = format!(
            "FROM {base}\nADD {} /fetched\n",
            origin.url("/allowed/file")
        );
        let (status, json) = build(&server, &image, "", &df).await;
        assert_eq!(status, 200, "{daemon}: {json:#}");
        assert_eq!(
            bed.run_in_image(&image, "cat /fetched"),
            "served /allowed/file\n",
            "{daemon}"
        );

        // Through a variable: the source policy lets it through where the daemon has one.
        let df = format!("FROM {base}\nARG U\nADD $U /fetched\n");
        let args = format!(r#""U":"{}""#, origin.url("/allowed/var"));
        let (status, json) = build(&server, &image, &args, &df).await;
        assert_eq!(
            status,
            if is_docker(&daemon) { 403 } else { 200 },
            "{daemon}: {json:#}"
        );

        // Beside the prefix: never, literally or through a variable.
        let df = format!("FROM {base}\nADD {} /x\n", origin.url("/allowedx"));
        let (status, json) = build(&server, &image, "", &df).await;
        assert_eq!(status, 403, "{daemon}: {json:#}");
        let df = format!("FROM {base}\nARG U\nADD $U /x\n");
        // A newline would end a wildcard's `.*`; a dot segment climbs out of the prefix.
        for value in [
            origin.url("/other"),
            format!("{}#\\n", origin.url("/other")),
            origin.url("/allowed/../climbed"),
            origin.url("/allowed/%2e%2e/climbed"),
        ] {
            let args = format!(r#""U":"{value}""#);
            let (status, json) = build(&server, &image, &args, &df).await;
            assert_eq!(status, 403, "{daemon} {value:?}: {json:#}");
        }
        let df = format!(
            "FROM {base}\nADD {} /x\n",
            origin.url("/allowed/../climbed")
        );
        let (status, json) = build(&server, &image, "", &df).await;
        assert_eq!(status, 403, "{daemon}: {json:#}");
    }
    assert!(origin.hits("/allowed/file") >= 1, "{:?}", origin.hits);
    assert_eq!(origin.hits("/allowedx"), 0, "{:?}", origin.hits);
    assert_eq!(origin.hits("/other"), 0, "{:?}", origin.hits);
    assert_eq!(origin.hits("/climbed"), 0, "{:?}", origin.hits);
    assert_eq!(origin.hits("/allowed/."), 0, "{:?}", origin.hits);
    assert_eq!(origin.hits("/allowed/%"), 0, "{:?}", origin.hits);
}
