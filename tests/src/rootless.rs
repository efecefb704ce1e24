//! Rootless buildkitds of a test's own, as `deploy/buildkitd.yaml` runs them: the bed's buildkitd
//! binary under rootlesskit, as an unprivileged user whose subordinate ids rootlesskit maps into
//! its user namespace, so the daemon is root there and an ordinary user outside. `tests/run` names
//! the binary and the user (`FB_BUILDKITD_BIN`, `FB_ROOTLESS_USER`) when it runs a buildkitd.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use buildkit::Address;
use tempfile::TempDir;

/// How long a daemon may take to listen: rootlesskit's namespaces, then buildkitd's own start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopped daemon may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether `RUN` steps get a PID namespace and `/proc` of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessSandbox {
    /// BuildKit's default: each step has its own PID namespace and a fresh `/proc`.
    On,
    /// `--oci-worker-no-process-sandbox`: steps share the daemon's PID namespace and `/proc`.
    Off,
}

/// The binary and the user `tests/run` gives rootless daemons, or `None` when the bed runs no
/// standalone buildkitd.
///
/// # Panics
/// When the bed names a binary but no user: a bed set up by another `tests/run`.
pub fn setup() -> Option<(PathBuf, String)> {
    let bin = std::env::var_os("FB_BUILDKITD_BIN")?;
    let user = std::env::var("FB_ROOTLESS_USER").expect(
        "FB_BUILDKITD_BIN is set but FB_ROOTLESS_USER is not: start the bed with this tree's tests/run",
    );
    Some((bin.into(), user))
}

/// A rootless buildkitd of the test's own: its root, socket and config in a temp dir, its
/// process group stopped on drop.
pub struct RootlessBuildkitd {
    address: Address,
    bin: PathBuf,
    dir: TempDir,
    child: Child,
    log: PathBuf,
}

impl RootlessBuildkitd {
    /// Starts `bin` under rootlesskit as `user`, trusting `registry` (`host:port`) over plain
    /// HTTP, and waits until it listens.
    ///
    /// # Panics
    /// When it cannot be started or does not listen in time, with its log.
    pub fn start(bin: &Path, user: &str, registry: &str, sandbox: ProcessSandbox) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fb-rootless-buildkitd.")
            .tempdir()
            .expect("temp dir");
        // The user reaches its own folders through this one, which root made 0700.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let (uid, gid) = (id(user, "-u"), id(user, "-g"));
        let home = dir.path().join("home");
        for sub in ["home", "root", "run", "tmp"] {
            let path = dir.path().join(sub);
            fs::create_dir(&path).unwrap();
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
        let socket = dir.path().join("run/buildkitd.sock");
        let config = dir.path().join("buildkitd.toml");
        fs::write(
            &config,
            format!(
                "root = \"{}\"\n[grpc]\n  address = [\"unix://{}\"]\n[worker.oci]\n  enabled = true\n  \
                 gc = false\n[worker.containerd]\n  enabled = false\n[registry.\"{registry}\"]\n  http = true\n",
                dir.path().join("root").display(),
                socket.display(),
            ),
        )
        .unwrap();
        let log = dir.path().join("buildkitd.log");
        let output = fs::File::create(&log).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--init-groups".into(),
            "env".into(),
            "-i".into(),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            format!("USER={user}"),
            format!("HOME={}", home.display()),
            // The rootless defaults (USER not root) put buildkitd's trace socket here.
            format!("XDG_RUNTIME_DIR={}", dir.path().join("run").display()),
            // Secret mounts are made under TMPDIR.
            format!("TMPDIR={}", dir.path().join("tmp").display()),
            "rootlesskit".into(),
            format!(
                "--state-dir={}",
                dir.path().join("run/rootlesskit").display()
            ),
        ])
        .arg(bin)
        .arg("--config")
        .arg(&config);
        if sandbox == ProcessSandbox::Off {
            cmd.arg("--oci-worker-no-process-sandbox");
        }
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            // A group of its own: rootlesskit, its child and buildkitd stop together.
            .process_group(0)
            .spawn()
            .expect("start setpriv … rootlesskit buildkitd");
        let mut daemon = Self {
            address: format!("unix://{}", socket.display()).parse().unwrap(),
            bin: bin.to_owned(),
            dir,
            child,
            log,
        };
        daemon.wait_until_listening(&socket);
        daemon
    }

    fn wait_until_listening(&mut self, socket: &Path) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !socket.exists() || self.pid().is_none() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("rootless buildkitd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "rootless buildkitd did not listen on {} within {START_TIMEOUT:?}:\n{}",
                socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where it listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The pid of buildkitd itself (rootlesskit's grandchild), as the host sees it.
    pub fn pid(&self) -> Option<u32> {
        let config = self.dir.path().join("buildkitd.toml");
        let (bin, config) = (self.bin.to_string_lossy(), config.to_string_lossy());
        // rootlesskit and its child (`/proc/self/exe`) carry the same arguments after their own.
        pids().into_iter().find(|&pid| {
            let args = cmdline(pid);
            args.first().is_some_and(|a| *a == bin) && args.iter().any(|a| *a == config)
        })
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RootlessBuildkitd {
    fn drop(&mut self) {
        let group = self.child.id().to_string();
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        signal("-KILL");
        let _ = self.child.wait();
        // runc runs each step in a process group of its own: whatever still names our root.
        let root = self.dir.path().to_string_lossy().into_owned();
        for pid in pids() {
            if cmdline(pid).iter().any(|a| a.contains(&root)) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// `id FLAG USER` as a number.
fn id(user: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().expect("id");
    assert!(out.status.success(), "id {flag} {user}: no such user");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Every process's pid, from `/proc`.
pub fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// A process's arguments (empty once it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
