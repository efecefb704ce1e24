//! A pool of BuildKit daemons, on the real bed: three daemons of the test's own (standalone
//! buildkitds where the bed has the binary, else Docker Engines). A function's builds land on one
//! daemon; functions spread; a daemon killed mid-build answers 503 and its functions move (only
//! they), and come back with it; a burst of one function spills past the bounded load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use function_builder_tests::api::{request_tar, Answered, Server, Shape};
use function_builder_tests::bed::{wait_for_process, Bed};
use function_builder_tests::daemons::{eventually, Buildkitd, OwnDaemon};
use handler::Daemons;

/// Three daemons of the test's own, and a builder over them probing every `probe`.
async fn pool(bed: &Bed, probe: Duration) -> (Vec<OwnDaemon>, Arc<Server>) {
    let mut daemons = Vec::new();
    for _ in 0..3 {
        daemons.push(OwnDaemon::start(&bed.registry).await);
    }
    let addresses = daemons.iter().map(OwnDaemon::address).collect();
    let server = Server::start(bed, |s| {
        s.buildkit = Daemons::Listed(addresses);
        s.buildkit_probe_interval = probe;
    })
    .await;
    (daemons, Arc::new(server))
}

/// Builds function `name` (its image `pool.test/pool/<name>:<tag>`, not pushed: a registry name
/// of its own, so that keys, and so where they land, are the same on every bed).
async fn build(bed: &Bed, server: &Server, name: &str, tag: &str, run: &str) -> Answered {
    let config = format!(r#"{{"image":"pool.test/pool/{name}:{tag}","skipPush":true}}"#);
    let df = format!("FROM {}\nRUN {run}\n", bed.base_image);
    let tar = request_tar(Shape::Go, &config, &[("Dockerfile", df.as_bytes(), 0o644)]);
    server.post_signed_with(tar, &[]).await
}

/// The daemon that ran a build, asserting it succeeded.
fn daemon_of(answer: &Answered) -> String {
    assert_eq!(answer.status, 200, "{answer:#?}");
    answer.json["daemon"]
        .as_str()
        .expect("the answer names its daemon")
        .to_owned()
}

#[tokio::test]
async fn a_function_stays_on_its_daemon_and_functions_spread() {
    let bed = Bed::get();
    let (_daemons, server) = pool(&bed, Duration::from_secs(5)).await;
    let mut seen = Vec::new();
    for i in 0..10 {
        let answer = build(&bed, &server, "same", &format!("{i}"), &format!("echo {i}")).await;
        seen.push(daemon_of(&answer));
    }
    assert!(seen.iter().all(|d| *d == seen[0]), "{seen:?}");
    let mut per_daemon: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..30 {
        let answer = build(&bed, &server, &format!("fn-{i}"), "1", "true").await;
        *per_daemon.entry(daemon_of(&answer)).or_default() += 1;
    }
    assert_eq!(per_daemon.len(), 3, "{per_daemon:?}");
    assert!(per_daemon.values().all(|n| *n <= 15), "{per_daemon:?}");
    // No address or path in the answer: a stable name.
    assert!(
        per_daemon.keys().all(|d| d.starts_with("buildkit-")),
        "{per_daemon:?}"
    );
}

#[tokio::test]
async fn a_daemon_killed_mid_build_moves_only_its_functions_and_gets_them_back() {
    let bed = Bed::get();
    // Probed often, so the test sees the killed daemon come back soon.
    let (mut daemons, server) = pool(&bed, Duration::from_millis(500)).await;
    let names: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    let mut home = BTreeMap::new();
    for name in &names {
        let answer = build(&bed, &server, name, "1", "true").await;
        home.insert(name.clone(), daemon_of(&answer));
    }
    let victim_name = home["f0"].clone();
    let victim = victim_name
        .strip_prefix("buildkit-")
        .and_then(|i| i.parse::<usize>().ok())
        .expect("a listed daemon's name");
    // A long build of f0, on its daemon, killed mid-RUN.
    let marker = format!("pool-kill-{}", std::process::id());
    let long = {
        let (bed, server) = (bed.clone(), Arc::clone(&server));
        let marker = marker.clone();
        tokio::spawn(async move {
            build(
                &bed,
                &server,
                "f0",
                "2",
                &format!("sleep 120; echo {marker}"),
            )
            .await
        })
    };
    assert!(
        wait_for_process(&marker, true, Duration::from_secs(60)).await,
        "the RUN step started"
    );
    daemons[victim].kill();
    let answer = tokio::time::timeout(Duration::from_secs(120), long)
        .await
        .expect("answered after the kill")
        .unwrap();
    assert_eq!(answer.status, 503, "{answer:#?}");
    assert_eq!(answer.retry_after.as_deref(), Some("10"));
    // The retry, and every function: those of the killed daemon move, the others stay.
    for name in &names {
        let now = daemon_of(&build(&bed, &server, name, "3", "true").await);
        if home[name] == victim_name {
            assert_ne!(now, victim_name, "{name} still on the dead daemon");
        } else {
            assert_eq!(now, home[name], "{name} moved though its daemon lives");
        }
    }
    // The daemon back: once a probe finds it, its functions return.
    daemons[victim].launch().await;
    let back = eventually(Duration::from_secs(30), || async {
        daemon_of(&build(&bed, &server, "f0", "4", "true").await) == victim_name
    })
    .await;
    assert!(back, "f0 returned to {victim_name}");
    for name in &names {
        let now = daemon_of(&build(&bed, &server, name, "5", "true").await);
        assert_eq!(now, home[name], "{name} after the daemon came back");
    }
}

#[tokio::test]
async fn a_burst_of_one_function_spills_past_the_bound_and_every_build_succeeds() {
    let bed = Bed::get();
    let (_daemons, server) = pool(&bed, Duration::from_secs(5)).await;
    let first = daemon_of(&build(&bed, &server, "burst", "0", "true").await);
    let builds: Vec<_> = (1..=6)
        .map(|i| {
            let (bed, server) = (bed.clone(), Arc::clone(&server));
            tokio::spawn(async move {
                build(
                    &bed,
                    &server,
                    "burst",
                    &format!("{i}"),
                    &format!("sleep 3; echo {i}"),
                )
                .await
            })
        })
        .collect();
    let mut per_daemon: BTreeMap<String, usize> = BTreeMap::new();
    for b in builds {
        *per_daemon.entry(daemon_of(&b.await.unwrap())).or_default() += 1;
    }
    assert!(per_daemon.len() >= 2, "spilled: {per_daemon:?}");
    let most = per_daemon.values().max().copied().unwrap_or_default();
    assert_eq!(
        per_daemon[&first], most,
        "the function's own daemon took the most: {per_daemon:?}"
    );
}

/// dnsmasq on a loopback port of its own, serving SRV records `_buildkit._tcp.pool.test` for
/// the daemons it is given (`<name>.pool.test` → 127.0.0.1); restarted to change them.
struct Dns {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

const SRV_NAME: &str = "_buildkit._tcp.pool.test";

impl Dns {
    async fn start(records: &[(&str, u16)]) -> Self {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut dns = Self {
            dir: tempfile::tempdir().unwrap(),
            port,
            child: None,
        };
        dns.serve(records).await;
        dns
    }

    async fn serve(&mut self, records: &[(&str, u16)]) {
        self.stop();
        let mut conf = format!(
            "port={}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n",
            self.port
        );
        for (name, port) in records {
            conf.push_str(&format!(
                "srv-host={SRV_NAME},{name}.pool.test,{port}\nhost-record={name}.pool.test,127.0.0.1\n"
            ));
        }
        let path = self.dir.path().join("dnsmasq.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", path.display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("pid").display()
            ))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start dnsmasq (Debian package dnsmasq-base)");
        self.child = Some(child);
        let port = self.port;
        let up = eventually(Duration::from_secs(10), || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "dnsmasq listened on 127.0.0.1:{port}");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The daemons builds of `functions` land on now.
async fn landing(
    bed: &Bed,
    server: &Server,
    functions: usize,
) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..functions {
        seen.insert(daemon_of(
            &build(bed, server, &format!("d{i}"), "1", "true").await,
        ));
    }
    seen
}

#[tokio::test]
async fn discovery_picks_up_a_member_added_and_drops_one_removed() {
    let bed = Bed::get();
    let Some(bin) = std::env::var_os("FB_BUILDKITD_BIN") else {
        eprintln!("no standalone buildkitd on this bed (FB_BUILDKITD_BIN): discovery needs daemons on TCP, not run");
        return;
    };
    let bin = std::path::PathBuf::from(bin);
    let bk0 = Buildkitd::start_on_tcp(&bin, &bed.registry).await;
    let bk1 = Buildkitd::start_on_tcp(&bin, &bed.registry).await;
    let (p0, p1) = (bk0.tcp_port().unwrap(), bk1.tcp_port().unwrap());
    let mut dns = Dns::start(&[("bk-0", p0)]).await;
    let server = Server::start(&bed, |s| {
        s.buildkit = Daemons::Srv {
            name: SRV_NAME.to_owned(),
            server: Some(format!("127.0.0.1:{}", dns.port).parse().unwrap()),
        };
        s.buildkit_probe_interval = Duration::from_millis(500);
    })
    .await;
    let (status, _) = server.get_json("/ready").await;
    assert_eq!(status, 200);
    let only = |name: &str| std::collections::BTreeSet::from([name.to_owned()]);
    assert_eq!(landing(&bed, &server, 8).await, only("bk-0"));
    dns.serve(&[("bk-0", p0), ("bk-1", p1)]).await;
    let both = std::collections::BTreeSet::from(["bk-0".to_owned(), "bk-1".to_owned()]);
    let added = eventually(Duration::from_secs(30), || async {
        landing(&bed, &server, 8).await == both
    })
    .await;
    assert!(
        added,
        "bk-1 took some of 8 functions once its SRV record appeared"
    );
    dns.serve(&[("bk-1", p1)]).await;
    let removed = eventually(Duration::from_secs(30), || async {
        landing(&bed, &server, 8).await == only("bk-1")
    })
    .await;
    assert!(removed, "bk-0 took none once its SRV record went");
}
