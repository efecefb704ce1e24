//! Helpers shared by the CLI's test files.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_function-builder");

pub fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Rewrites `rel` with `content` and sets its mtime an hour past the old one, checked: a test
/// that a new mtime changes nothing must have one, which a quick rewrite on a coarse clock may
/// not give.
pub fn rewrite_with_new_mtime(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    write(root, rel, content);
    let later = before + std::time::Duration::from_secs(3600);
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(later).unwrap();
    drop(file);
    let after = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(after, later, "{rel}: mtime not set");
    assert_ne!(after, before, "{rel}: mtime unchanged");
}

/// Runs the CLI; returns (success, stdout, stderr).
pub async fn cli(args: Vec<String>) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs the CLI with extra environment variables; returns (success, stdout, stderr).
pub async fn cli_env(args: Vec<String>, env: Vec<(String, String)>) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(&args).envs(env).output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each entry of a tar: its path, then `/` for a folder, ` -> target` for a link, or
/// ` (mode) = content` for a file.
pub fn tar_listing(tar: &[u8]) -> Vec<String> {
    use std::io::Read;
    let mut out = Vec::new();
    for entry in tar::Archive::new(tar).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let header = entry.header();
        let line = match header.entry_type() {
            tar::EntryType::Directory => format!("{path}/"),
            tar::EntryType::Symlink => {
                format!(
                    "{path} -> {}",
                    header.link_name().unwrap().unwrap().display()
                )
            }
            _ => {
                let mode = header.mode().unwrap();
                let mut content = String::new();
                entry.read_to_string(&mut content).unwrap();
                format!("{path} ({mode:o}) = {content}")
            }
        };
        out.push(line);
    }
    out
}

/// A `function-builder serve` process on a free port, killed when dropped.
pub struct Serve {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT/build`.
    pub url: String,
    /// What it printed before it listened.
    pub banner: Vec<String>,
    /// Its log lines (stderr) so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `serve --port P` with `args` and `env` (BUILDKIT_HOST removed) and waits until it
    /// listens; panics with what it printed if it exits instead.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(BIN)
            .args(["serve", "--port", &port.to_string()])
            .args(args)
            .env_remove("BUILDKIT_HOST")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let collected = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        let mut banner = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = format!("http://127.0.0.1:{port}/build");
        loop {
            match lines.next() {
                Some(line) => {
                    let line = line.unwrap();
                    let listening = line.starts_with(&format!("builder listening on {url} "));
                    banner.push(line);
                    if listening {
                        break;
                    }
                }
                None => panic!(
                    "serve exited before listening: {banner:?}, log: {:?}",
                    log.lock().unwrap()
                ),
            }
        }
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url,
            banner,
            log,
        }
    }

    /// Waits up to 10 s until its log has a line for which `found` holds; returns the log.
    pub fn wait_for_log(&self, found: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let log = self.log.lock().unwrap().clone();
            if log.iter().any(|line| found(line)) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stops it as Ctrl-C does; returns its exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Serve {
    /// `serve` on the bed's engine (`--network none`: it has no bridge) with the payload secret
    /// in `secret_file`.
    pub fn on_bed(bed: &function_builder_tests::bed::Bed, secret_file: &Path) -> Self {
        Self::on_bed_with(bed, secret_file, &[])
    }

    /// [`Serve::on_bed`] with `extra` arguments.
    pub fn on_bed_with(
        bed: &function_builder_tests::bed::Bed,
        secret_file: &Path,
        extra: &[&str],
    ) -> Self {
        let buildkit = format!("docker://{}", bed.docker_socket.display());
        let secret = secret_file.to_str().unwrap();
        let mut args = vec![
            "--network",
            "none",
            "--buildkit",
            &buildkit,
            "--secret-file",
            secret,
        ];
        args.extend_from_slice(extra);
        Self::start(&args, &[])
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        let rest = self.url.strip_prefix("http://").unwrap();
        rest.strip_suffix("/build").unwrap().parse().unwrap()
    }
}

impl Drop for Serve {
    /// SIGTERM, so it removes the secret it generated, then SIGKILL if it is still there after
    /// 10 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `build CTX --image IMAGE --url URL --secret-file SECRET`.
pub fn build_args(ctx: &Path, image: &str, url: &str, secret: &Path) -> Vec<String> {
    let (ctx, secret) = (ctx.to_str().unwrap(), secret.to_str().unwrap());
    strings(&[
        "build",
        ctx,
        "--image",
        image,
        "--url",
        url,
        "--secret-file",
        secret,
    ])
}
