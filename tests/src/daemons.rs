//! Daemons of a test's own, on temp dirs, to kill and start again: Docker Engines and
//! standalone buildkitds, started as tests/run starts the bed's; and one build on a client with its
//! rendered log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use buildkit::Address;

/// Polls `check` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `signal` to every process whose whole command line matches the regex `pattern`
/// (`pkill -f`), e.g. RUN steps a killed daemon left.
pub fn kill_matching(pattern: &str, signal: &str) {
    let _ = Command::new("pkill")
        .args([&format!("-{signal}"), "-f", pattern])
        .status();
}

/// A Docker Engine of this test's own, on temp dirs, started as tests/run starts the bed's.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts one and waits until it answers.
    ///
    /// # Panics
    /// When it does not answer within 60 s, with its log.
    pub async fn start() -> Self {
        // A short path: the socket's must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("fb-dk-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        let mut dockerd = Self { dir, child: None };
        dockerd.launch().await;
        dockerd
    }

    /// Its API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// Starts it (again, after [`Dockerd::kill`]) and waits until it answers.
    ///
    /// # Panics
    /// When it does not answer within 60 s.
    pub async fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("docker"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", self.socket().display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
        let socket = self.socket();
        let up = eventually(Duration::from_secs(60), || {
            let socket = socket.clone();
            async move {
                Command::new("/usr/bin/docker")
                    .arg("-H")
                    .arg(format!("unix://{}", socket.display()))
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }
        })
        .await;
        assert!(up, "dockerd answered within 60 s: {}", self.log());
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// SIGKILL, as an OOM killer or a node failure would, then the containerd it managed (a
    /// supervisor restarting the Engine starts a new one): that one may linger as a zombie whose
    /// pid file would make the next dockerd wait for it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("dockerd is running");
        child.kill().unwrap();
        child.wait().unwrap();
        kill_matching(&self.dir.path().to_string_lossy(), "KILL");
        let _ = std::fs::remove_file(self.dir.path().join("exec/containerd/containerd.pid"));
        let _ = std::fs::remove_file(self.dir.path().join("dockerd.pid"));
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Never a panic here: this may run while a failed test unwinds.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let stopped = (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(100));
                child.try_wait().is_ok_and(|exited| exited.is_some())
            });
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let dir = format!("{}/", self.dir.path().display());
        kill_matching(&dir, "KILL");
        unmount_below(&dir);
    }
}

/// Unmounts (lazily) every mount under `dir` (a path ending in `/`) that a daemon left, deepest
/// first.
fn unmount_below(dir: &str) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_unstable_by(|a, b| b.cmp(a));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// A standalone buildkitd of the test's own, as root (as the bed's): its root, socket and config
/// under the bed's dir (so the bed's cleanup finds whatever it leaves), stopped on drop.
pub struct Buildkitd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tcp: Option<u16>,
}

impl Buildkitd {
    /// Starts `bin`, trusting `registry` over plain HTTP, and waits until it listens.
    ///
    /// # Panics
    /// When it does not listen within 60 s, with its log.
    pub async fn start(bin: &Path, registry: &str) -> Self {
        Self::start_listening(bin, registry, None).await
    }

    /// [`Buildkitd::start`], listening also on `tcp://127.0.0.1:<a free port>` (no TLS).
    pub async fn start_on_tcp(bin: &Path, registry: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_listening(bin, registry, Some(port)).await
    }

    async fn start_listening(bin: &Path, registry: &str, tcp: Option<u16>) -> Self {
        let parent = std::env::var_os("FB_BED_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("bk-")
            .tempdir_in(parent)
            .unwrap();
        let config = format!(
            "root = \"{root}\"\n[grpc]\n  address = [\"unix://{socket}\"{tcp}]\n[otel]\n  socketPath = \"{otel}\"\n[worker.oci]\n  enabled = true\n  gc = false\n[worker.containerd]\n  enabled = false\n[registry.\"{registry}\"]\n  http = true\n",
            root = dir.path().join("root").display(),
            socket = dir.path().join("buildkitd.sock").display(),
            // Not /run/buildkit's, which every root buildkitd would take from the others.
            otel = dir.path().join("otel.sock").display(),
            tcp = tcp.map(|p| format!(", \"tcp://127.0.0.1:{p}\"")).unwrap_or_default(),
        );
        std::fs::write(dir.path().join("buildkitd.toml"), config).unwrap();
        let mut daemon = Self {
            bin: bin.to_owned(),
            dir,
            child: None,
            tcp,
        };
        daemon.launch().await;
        daemon
    }

    /// Its TCP port, when it listens on one.
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp
    }

    /// Where it listens.
    pub fn address(&self) -> Address {
        Address::Unix(self.dir.path().join("buildkitd.sock"))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("buildkitd.log")).unwrap_or_default()
    }

    /// Starts it (again, after [`Buildkitd::kill`]) on the same root and socket, and waits
    /// until it listens.
    ///
    /// # Panics
    /// When it does not listen within 60 s.
    pub async fn launch(&mut self) {
        let d = self.dir.path();
        let _ = std::fs::remove_file(d.join("buildkitd.sock"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("buildkitd.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(d.join("buildkitd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start buildkitd");
        self.child = Some(child);
        let socket = d.join("buildkitd.sock");
        let up = eventually(Duration::from_secs(60), || {
            let socket = socket.clone();
            async move { socket.exists() }
        })
        .await;
        assert!(up, "buildkitd listened within 60 s: {}", self.log());
    }

    /// SIGKILL, as an OOM killer or a node failure would, and the RUN steps it left.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_matching(&format!("{}/", self.dir.path().display()), "KILL");
    }
}

impl Drop for Buildkitd {
    fn drop(&mut self) {
        self.kill();
        let dir = format!("{}/", self.dir.path().display());
        unmount_below(&dir);
    }
}

/// A daemon of the test's own: a standalone buildkitd where the bed has the binary
/// (`FB_BUILDKITD_BIN`), else a Docker Engine.
pub enum OwnDaemon {
    /// A standalone buildkitd.
    Buildkitd(Buildkitd),
    /// A Docker Engine.
    Dockerd(Dockerd),
}

impl OwnDaemon {
    /// Starts one, trusting `registry` over plain HTTP.
    pub async fn start(registry: &str) -> Self {
        match std::env::var_os("FB_BUILDKITD_BIN") {
            Some(bin) => Self::Buildkitd(Buildkitd::start(Path::new(&bin), registry).await),
            None => Self::Dockerd(Dockerd::start().await),
        }
    }

    /// Where it listens.
    pub fn address(&self) -> Address {
        match self {
            Self::Buildkitd(b) => b.address(),
            Self::Dockerd(d) => Address::Docker(d.socket()),
        }
    }

    /// Kills it at once.
    pub fn kill(&mut self) {
        match self {
            Self::Buildkitd(b) => b.kill(),
            Self::Dockerd(d) => d.kill(),
        }
    }

    /// Starts it again on the same dirs.
    pub async fn launch(&mut self) {
        match self {
            Self::Buildkitd(b) => b.launch().await,
            Self::Dockerd(d) => d.launch().await,
        }
    }
}

/// Runs one build on `client`; returns its outcome and every rendered log line.
///
/// # Panics
/// When the task collecting the log panics.
pub async fn build_logged(
    client: &buildkit::Client,
    req: buildkit::BuildRequest,
) -> (
    Result<buildkit::Built, buildkit::BuildkitError>,
    Vec<String>,
) {
    let (events, mut rx) = tokio::sync::mpsc::channel(256);
    let lines = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(event) = rx.recv().await {
            lines.extend(buildkit::render(&event));
        }
        lines
    });
    let result = client.build(req, events).await.result;
    (result, lines.await.unwrap())
}
