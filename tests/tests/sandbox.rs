//! What one tenant's `RUN` step can reach of another tenant's build on a shared rootless
//! buildkitd, with and without BuildKit's process sandbox (`--oci-worker-no-process-sandbox`,
//! which the Kubernetes manifest used before `deploy/buildkitd.yaml` turned the sandbox on).
//!
//! Tenant A's build sleeps in a `RUN` step with a marker in its environment and a secret mounted;
//! meanwhile tenant B's `RUN` step looks through `/proc` for A's processes, reads their
//! environment, A's secret through `/proc/<pid>/root` and their memory, kills them, and tries the
//! daemon itself. Each daemon is a rootless buildkitd of the test's own (tests/src/rootless.rs), the
//! bed's binary. Without a standalone buildkitd on the bed there is nothing to compare: the tests
//! say so and pass.
//! Run: `tests/run cargo test -p function-builder-tests --test sandbox`

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use buildkit::{BuildRequest, BuildkitError, Built, Client, DirTree, NetworkMode, Output};
use function_builder_tests::bed::Bed;
use function_builder_tests::daemons::build_logged as build;
use function_builder_tests::fixtures::dockerfile_context;
use function_builder_tests::rootless::{self, ProcessSandbox, RootlessBuildkitd};
use tokio::sync::Mutex;

/// One scenario at a time: without the sandbox B sees every process of the daemon's PID
/// namespace, which on the bed is the machine's, so A of the other scenario too.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How long A's `RUN` step sleeps: B must find it running, and with the sandbox A finishes.
const A_SLEEPS: &str = "15";

/// How long A's step may take to start (a cold daemon pulls the base image first).
const A_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Tenant B's `RUN` step: what it can see, read and signal. Every finding is a `probe:` line.
const PROBE: &str = r#"#!/bin/sh
echo "probe: uid $(id -u), uid_map $(awk '{printf "%s %s %s;", $1, $2, $3}' /proc/self/uid_map)"
echo "probe: pids $(ls -d /proc/[0-9]* | wc -l)"
for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    tr '\0' '\n' < "$dir/environ" 2>/dev/null | grep -qx "TENANT_A_MARKER=$LOOK_FOR" || continue
    echo "probe: saw $pid: $(tr '\0' ' ' < "$dir/cmdline")"
    echo "probe: environ $(tr '\0' '\n' < "$dir/environ" | grep '^TENANT_A_MARKER=')"
    echo "probe: secret $(cat "$dir/root/run/secrets/tenant_a_token" 2>&1)"
    # Its memory, which takes what ptrace(2) takes: the first byte of its first readable mapping.
    start=$(awk '$2 ~ /^r/ { split($1, a, "-"); print a[1]; exit }' "$dir/maps" 2>/dev/null)
    if [ -n "$start" ] && [ "$(dd if="$dir/mem" bs=1 count=1 skip="$(printf %d "0x$start")" 2>/dev/null | wc -c)" = 1 ]; then
        echo "probe: memory read $pid"
    else
        echo "probe: memory refused $pid"
    fi
    if kill -9 "$pid"; then echo "probe: killed $pid"; else echo "probe: kill refused $pid"; fi
done
if [ -e "/proc/$DAEMON_PID" ]; then echo "probe: daemon visible"; else echo "probe: daemon not visible"; fi
if kill -0 "$DAEMON_PID" 2>/dev/null; then echo "probe: daemon signal allowed"; else echo "probe: daemon signal refused"; fi
if head -c1 "/proc/$DAEMON_PID/environ" >/dev/null 2>&1; then echo "probe: daemon environ readable"; else echo "probe: daemon environ refused"; fi
"#;

/// What B's step and A's build showed on one daemon.
struct Finding {
    /// B's `probe:` lines, without the prefix.
    probe: Vec<String>,
    /// A's outcome and log.
    a: (Result<Built, BuildkitError>, Vec<String>),
    /// `/proc/<buildkitd>/uid_map` as the host reads it, whitespace squeezed.
    daemon_uid_map: String,
    /// A's marker and secret.
    marker: String,
    secret: String,
}

impl Finding {
    fn has(&self, line: &str) -> bool {
        self.probe.iter().any(|l| l == line)
    }
}

#[tokio::test]
async fn without_the_process_sandbox_a_run_step_reads_and_kills_another_builds_processes() {
    let Some(f) = probe(ProcessSandbox::Off).await else {
        return;
    };
    // B runs as the daemon does: root of the daemon's user namespace.
    assert!(
        f.has(&format!("uid 0, uid_map {}", f.daemon_uid_map)),
        "{:#?} vs the daemon's {}",
        f.probe,
        f.daemon_uid_map
    );
    assert!(
        f.has(&format!("environ TENANT_A_MARKER={}", f.marker)),
        "B did not read A's environment: {:#?}",
        f.probe
    );
    assert!(
        f.has(&format!("secret {}", f.secret)),
        "B did not read A's secret through /proc/<pid>/root: {:#?}",
        f.probe
    );
    assert!(
        f.probe.iter().any(|l| l.starts_with("memory read ")),
        "B did not read A's memory: {:#?}",
        f.probe
    );
    assert!(
        f.probe.iter().any(|l| l.starts_with("killed ")),
        "B did not kill A: {:#?}",
        f.probe
    );
    // The daemon is in reach too: B may signal it (same uid), though not read it (it holds
    // capabilities the step does not).
    for line in [
        "daemon visible",
        "daemon signal allowed",
        "daemon environ refused",
    ] {
        assert!(f.has(line), "expected {line:?}: {:#?}", f.probe);
    }
    match &f.a.0 {
        Err(BuildkitError::Build { message, .. }) => {
            assert!(message.contains("exit code: 137"), "{message}");
        }
        other => panic!(
            "A should have been killed by B: {other:?}\n{}",
            f.a.1.join("\n")
        ),
    }
}

#[tokio::test]
async fn with_the_process_sandbox_a_run_step_sees_only_its_own_processes() {
    let Some(f) = probe(ProcessSandbox::On).await else {
        return;
    };
    // Still the daemon's user and user namespace: the sandbox is the PID namespace and /proc.
    assert!(
        f.has(&format!("uid 0, uid_map {}", f.daemon_uid_map)),
        "{:#?} vs the daemon's {}",
        f.probe,
        f.daemon_uid_map
    );
    assert!(
        !f.probe.iter().any(|l| l.starts_with("saw ")),
        "B saw A's processes: {:#?}",
        f.probe
    );
    for line in [
        "daemon not visible",
        "daemon signal refused",
        "daemon environ refused",
    ] {
        assert!(f.has(line), "expected {line:?}: {:#?}", f.probe);
    }
    let (result, lines) = &f.a;
    assert!(result.is_ok(), "A failed: {result:?}\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.ends_with(" a-finished")),
        "{lines:#?}"
    );
}

/// Runs A and, while A's step sleeps, B on a rootless buildkitd of its own; `None` (with a
/// message) when the bed has no standalone buildkitd.
async fn probe(sandbox: ProcessSandbox) -> Option<Finding> {
    let bed = Bed::get();
    let Some((bin, user)) = rootless::setup() else {
        eprintln!(
            "sandbox: the bed runs no standalone buildkitd (FB_BUILDKITD, or buildkitd on PATH), so \
             there is no rootless buildkitd to compare with and without the process sandbox: \
             nothing tested. Bed: {}",
            std::env::var("FB_BED_DAEMONS").unwrap_or_default()
        );
        return None;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let daemon = RootlessBuildkitd::start(&bin, &user, &bed.registry, sandbox);
    let daemon_pid = daemon.pid().expect("buildkitd's pid");
    let daemon_uid_map =
        squeeze(&std::fs::read_to_string(format!("/proc/{daemon_pid}/uid_map")).unwrap());

    let run = format!("{}-{}", std::process::id(), nanos());
    let marker = format!("fb-sandbox-{run}");
    let secret = format!("tenant-a-secret-{run}");

    let a_dir = dockerfile_context(&format!(
        "FROM {}\nARG TENANT_A_MARKER\n\
         RUN --mount=type=secret,id=tenant_a_token sh -c 'echo a-started; sleep {A_SLEEPS}; echo a-finished'\n",
        bed.base_image
    ));
    let mut a = request(a_dir.path());
    a.build_args
        .insert("TENANT_A_MARKER".into(), marker.clone());
    a.secrets
        .insert("tenant_a_token".into(), secret.clone().into_bytes().into());
    let a_client = connect(&daemon).await;
    let a = tokio::spawn(async move { build(&a_client, a).await });

    let a_pids = wait_for_env(&format!("TENANT_A_MARKER={marker}"), A_START_TIMEOUT).await;
    assert!(
        !a_pids.is_empty(),
        "A's RUN step did not start within {A_START_TIMEOUT:?}:\n{}",
        daemon.log()
    );

    let b_dir = dockerfile_context(&format!(
        "FROM {}\nARG LOOK_FOR\nARG DAEMON_PID\nARG NONCE\nCOPY probe.sh /probe.sh\nRUN sh /probe.sh\n",
        bed.base_image
    ));
    std::fs::write(b_dir.path().join("probe.sh"), PROBE).unwrap();
    let mut b = request(b_dir.path());
    for (k, v) in [
        ("LOOK_FOR", marker.clone()),
        ("DAEMON_PID", daemon_pid.to_string()),
        // Never cached: B's step runs every time.
        ("NONCE", run.clone()),
    ] {
        b.build_args.insert(k.into(), v);
    }
    let (b_result, b_lines) = build(&connect(&daemon).await, b).await;
    b_result.unwrap_or_else(|err| panic!("B: {err}\n{}", b_lines.join("\n")));
    let probe: Vec<String> = b_lines
        .iter()
        .filter_map(|l| Some(l.split_once("probe: ")?.1.to_owned()))
        .collect();
    eprintln!(
        "sandbox {sandbox:?}: A's pids {a_pids:?}, buildkitd {daemon_pid} (uid_map {daemon_uid_map}); B's step:\n  {}",
        probe.join("\n  ")
    );

    let a = a.await.unwrap();
    eprintln!(
        "sandbox {sandbox:?}: A {}",
        match &a.0 {
            Ok(_) => "finished".to_owned(),
            Err(err) => format!("failed: {err}"),
        }
    );
    Some(Finding {
        probe,
        a,
        daemon_uid_map,
        marker,
        secret,
    })
}

fn request(dir: &Path) -> BuildRequest {
    let mut req = BuildRequest::new(Arc::new(DirTree::new(dir)), Output::Discard);
    // What a multi-tenant builder sets (`build_network: none`).
    req.network = NetworkMode::None;
    req.timeout = Some(Duration::from_secs(180));
    req
}

async fn connect(daemon: &RootlessBuildkitd) -> Client {
    Client::connect(daemon.address(), None)
        .await
        .unwrap_or_else(|err| panic!("connect to {}: {err}\n{}", daemon.address(), daemon.log()))
}

/// Waits until some process has `var` (`NAME=VALUE`) in its environment; returns their pids.
async fn wait_for_env(var: &str, timeout: Duration) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found: Vec<u32> = rootless::pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == var.as_bytes()))
            })
            .collect();
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn squeeze(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .map(|l| l + ";")
        .collect()
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
