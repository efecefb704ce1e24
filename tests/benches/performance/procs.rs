//! Processes the benchmark starts and measures: the builder as production runs it (a process of
//! its own, settings from the environment), and commands timed with their CPU and peak RSS.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use function_builder_tests::api::SECRET;

/// The builder-server binary, serving on a loopback port.
pub(crate) struct BuilderProcess {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) secret_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl BuilderProcess {
    pub(crate) fn start(buildkit_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("payload-secret");
        fs::write(&secret_file, SECRET).unwrap();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_builder-server"))
            .env("upstream_url", "http://127.0.0.1:0")
            .env("payload_secret_path", &secret_file)
            .env("buildkit_url", buildkit_url)
            .env("build_network", "none")
            .env("docker_config", dir.path().join("none.json"))
            .env("work_dir", &work)
            .env("max_request_bytes", (2u64 << 30).to_string())
            .env("max_unpacked_bytes", (2u64 << 30).to_string())
            .env("max_entries", "100000")
            .env("read_timeout", "10m")
            .env("write_timeout", "10m")
            .env("build_timeout", "9m")
            .env("RUST_LOG", "warn")
            // No fixed port: several builders run at once here.
            .env("metrics_port", "0")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start builder-server");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        // Drains the log for the whole run, so the builder never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("builder-server logs its address within 30 s")
            .parse()
            .unwrap();
        Self {
            child,
            addr,
            secret_file,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/build", self.addr)
    }

    fn status_field(&self, name: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/<pid>/status"))
    }

    /// The process's peak RSS so far, MiB.
    pub(crate) fn peak_rss_mib(&self) -> f64 {
        self.status_field("VmHWM:") as f64 / 1024.0
    }

    /// User + system CPU seconds of the builder process so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_of(&self.child.id().to_string())
    }
}

impl Drop for BuilderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/proc`'s clock ticks (USER_HZ): 100 on every Linux.
fn ticks_per_second() -> f64 {
    100.0
}

/// User + system CPU seconds of process `pid` so far, from `/proc/<pid>/stat`.
pub(crate) fn cpu_of(pid: &str) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / ticks_per_second()
}

/// What a finished command cost.
pub(crate) struct Measured {
    pub(crate) wall: f64,
    /// User + system CPU seconds of the command (and the children it waited for).
    pub(crate) cpu: f64,
    pub(crate) peak_rss_mib: f64,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` to its end under GNU time (`/usr/bin/time`, which reads the kernel's rusage of
/// the command); panics with its output when it fails.
pub(crate) fn measure(cmd: &mut Command) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("time");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    let out = timed
        .output()
        .unwrap_or_else(|e| panic!("/usr/bin/time {cmd:?} (apt-get install time): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{stderr}");
    let text = fs::read_to_string(&report).unwrap();
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| {
            x.parse()
                .unwrap_or_else(|_| panic!("time printed {text:?}"))
        })
        .collect();
    Measured {
        wall: v[0],
        cpu: v[1] + v[2],
        peak_rss_mib: v[3] / 1024.0,
        stdout,
        stderr,
    }
}
