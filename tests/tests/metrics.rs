//! The builder's Prometheus metrics on the real bed: a builder over two daemons of the test's own
//! (standalone buildkitds where the bed has the binary, else Docker Engines), builds that push to
//! the bed's registry, and what `/metrics` on the builder's own port says then, checked against
//! the answers: builds by daemon, in flight while one runs and none after, daemons up (and down
//! once one is killed), a histogram per stage, bytes and steps.
//! Run: `tests/run cargo test -p function-builder-tests --test metrics`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use function_builder_tests::api::{request_tar, Answered, Server, Shape};
use function_builder_tests::bed::Bed;
use function_builder_tests::client::{empty, full, read_body, send_tcp};
use function_builder_tests::daemons::{eventually, OwnDaemon};
use handler::Daemons;

/// What Prometheus sends.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// Every series of a scrape, as `name{labels}` → value.
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let req = http::Request::get("/metrics")
        .header("host", "builder")
        .header("accept", ACCEPT)
        .body(empty())
        .unwrap();
    let resp = send_tcp(addr, req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(read_body(resp).await.to_vec()).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a series and its value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(scraped: &BTreeMap<String, f64>, series: &str) -> f64 {
    *scraped
        .get(series)
        .unwrap_or_else(|| panic!("{series} not in {scraped:#?}"))
}

fn in_flight(scraped: &BTreeMap<String, f64>) -> f64 {
    (scraped.iter())
        .filter(|(series, _)| series.starts_with("function_builder_builds_in_flight{"))
        .map(|(_, v)| v)
        .sum()
}

/// A build of function `name`, pushed to `<registry>/metrics/<name>:1`; its answer and the
/// request's size.
async fn build(bed: &Bed, server: &Server, name: &str, run: &str) -> (Answered, usize) {
    let config = format!(r#"{{"image":"{}/metrics/{name}:1"}}"#, bed.registry);
    let df = format!("FROM {}\nRUN {run}\n", bed.base_image);
    let tar = request_tar(Shape::Go, &config, &[("Dockerfile", df.as_bytes(), 0o644)]);
    let len = tar.len();
    let answer = server.post_signed_with(tar, &[]).await;
    assert_eq!(answer.status, 200, "{answer:#?}");
    (answer, len)
}

#[tokio::test]
async fn metrics_count_each_build_by_its_daemon_and_follow_the_pool() {
    let bed = Bed::get();
    let mut daemons = Vec::new();
    for _ in 0..2 {
        daemons.push(OwnDaemon::start(&bed.registry).await);
    }
    let addresses = daemons.iter().map(OwnDaemon::address).collect();
    let server = Arc::new(
        Server::start(&bed, |s| {
            s.buildkit = Daemons::Listed(addresses);
            s.buildkit_probe_interval = Duration::from_millis(500);
        })
        .await,
    );
    let metrics = server.serve_metrics().await;
    let names = ["buildkit-0", "buildkit-1"];
    let up = |daemon: &str| format!("function_builder_daemon_up{{daemon=\"{daemon}\"}}");

    let before = scrape(metrics).await;
    for daemon in names {
        assert_eq!(value(&before, &up(daemon)), 1.0, "{daemon}");
    }
    assert_eq!(in_flight(&before), 0.0);
    assert!(
        !before
            .keys()
            .any(|s| s.starts_with("function_builder_builds_total")),
        "{before:#?}"
    );

    // A build that takes a while: counted in flight on its daemon while it runs.
    let slow = {
        let (bed, server) = (bed.clone(), Arc::clone(&server));
        tokio::spawn(async move { build(&bed, &server, "slow", "sleep 3").await })
    };
    let seen = eventually(Duration::from_secs(60), || async {
        in_flight(&scrape(metrics).await) == 1.0
    })
    .await;
    assert!(seen, "one build in flight while it ran");
    let mut answers = vec![slow.await.unwrap()];
    answers.push(build(&bed, &server, "quick", "true").await);
    // Refused at intake: counted apart, with no daemon.
    let req = http::Request::post("/build")
        .header("host", "builder")
        .header("x-build-signature", "sha256=00")
        .body(full(b"not a tar".to_vec()))
        .unwrap();
    assert_eq!(send_tcp(server.addr, req).await.status(), 401);

    let idle = eventually(Duration::from_secs(10), || async {
        in_flight(&scrape(metrics).await) == 0.0
    })
    .await;
    assert!(idle, "no build in flight once both answered");
    let after = scrape(metrics).await;
    let mut per_daemon: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for (answer, _) in &answers {
        let daemon = answer.json["daemon"].as_str().unwrap().to_owned();
        let steps = &answer.json["steps"];
        let entry = per_daemon.entry(daemon).or_default();
        entry.0 += 1.0;
        entry.1 += steps["total"].as_f64().unwrap();
        entry.2 += steps["cached"].as_f64().unwrap();
    }
    for (daemon, (builds, steps, cached)) in &per_daemon {
        let series = |name: &str| format!("function_builder_{name}{{daemon=\"{daemon}\"}}");
        let ok = format!("function_builder_builds_total{{daemon=\"{daemon}\",code=\"200\"}}");
        assert_eq!(value(&after, &ok), *builds, "{daemon}");
        assert_eq!(value(&after, &series("steps_total")), *steps, "{daemon}");
        assert_eq!(value(&after, &series("steps_cached_total")), *cached);
        assert!(value(&after, &series("context_sent_bytes_total")) > 0.0);
    }
    let counted: f64 = (after.iter())
        .filter(|(s, _)| s.starts_with("function_builder_builds_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(counted, 2.0, "{after:#?}");
    let refused = "function_builder_requests_refused_total{code=\"401\"}";
    assert_eq!(value(&after, refused), 1.0);
    let received: usize = answers.iter().map(|(_, len)| len).sum();
    let body = "function_builder_request_body_bytes_total";
    assert_eq!(value(&after, body), received as f64);
    let stage = |stage: &str, part: &str| {
        value(
            &after,
            &format!("function_builder_stage_duration_seconds_{part}{{stage=\"{stage}\"}}"),
        )
    };
    // Intake: the two builds and the refused request.
    assert_eq!(stage("intake", "count"), 3.0);
    assert_eq!(stage("solve", "count"), 2.0);
    // The slow build's RUN alone took 3 s.
    assert!(stage("solve", "sum") >= 3.0, "{after:#?}");
    // Both pushed: timed after the solve on an Engine, from buildkitd's own push counters.
    assert_eq!(stage("push", "count"), 2.0);
    assert!(stage("push", "sum") > 0.0, "{after:#?}");
    for daemon in names {
        assert_eq!(value(&after, &up(daemon)), 1.0, "{daemon}");
    }

    // A daemon killed: the next probe finds it down, and so does the next scrape.
    daemons[1].kill();
    let down = eventually(Duration::from_secs(30), || async {
        let now = scrape(metrics).await;
        value(&now, &up("buildkit-1")) == 0.0 && value(&now, &up("buildkit-0")) == 1.0
    })
    .await;
    assert!(down, "buildkit-1 down in the metrics once killed");
}
