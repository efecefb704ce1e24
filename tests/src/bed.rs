//! The real test bed `tests/run` starts: dockerd (with its embedded BuildKit), a loopback registry
//! and a busybox base image in it, a second registry that requires a password, and optionally a
//! standalone buildkitd named by `TEST_BUILDKITD_ADDR`.

use std::path::PathBuf;
use std::process::Command;

use buildkit::{Address, TlsFiles};

/// What a test needs to know of the bed.
#[derive(Debug, Clone)]
pub struct Bed {
    /// The Docker Engine's socket.
    pub docker_socket: PathBuf,
    /// `127.0.0.1:<port>` of the plain-HTTP registry.
    pub registry: String,
    /// A busybox image in that registry (`<registry>/busybox:latest`).
    pub base_image: String,
    /// A manifest list in that registry: busybox for linux/amd64 and linux/arm64.
    pub base_image_multi: String,
    /// The foreign platform this machine runs through QEMU (`linux/arm64`), or why there is none.
    pub foreign_platform: Result<String, String>,
    /// `127.0.0.1:<port>` of a registry with htpasswd auth.
    pub auth_registry: String,
    /// Its user name.
    pub auth_user: String,
    /// Its password.
    pub auth_password: String,
}

/// A daemon the BuildKit tests run against.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// Where it is.
    pub address: Address,
    /// TLS for a `tcp://` buildkitd.
    pub tls: Option<TlsFiles>,
}

const HOW_TO_START: &str =
    "this test needs the real test bed (dockerd with its BuildKit, loopback \
registries, a base image). Start it with the test command, as root: `tests/run` runs every test, \
`tests/run cargo test -p function-builder-tests` just these";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW_TO_START}"))
}

impl Bed {
    /// The running bed.
    ///
    /// # Panics
    /// When the bed's variables are not set, with a message saying how to start it. Tests that
    /// need the bed fail without it; they are never skipped.
    pub fn get() -> Self {
        Self {
            docker_socket: PathBuf::from(var("FB_DOCKER_SOCKET")),
            registry: var("FB_REGISTRY"),
            base_image: var("FB_BASE_IMAGE"),
            base_image_multi: var("FB_BASE_IMAGE_MULTI"),
            foreign_platform: match var("FB_FOREIGN_PLATFORMS") {
                none if none.starts_with("none") => Err(none),
                platform => Ok(platform),
            },
            auth_registry: var("FB_AUTH_REGISTRY"),
            auth_user: var("FB_AUTH_USER"),
            auth_password: var("FB_AUTH_PASSWORD"),
        }
    }

    /// Every daemon to test against: the bed's Docker Engine always; a standalone buildkitd too
    /// when `TEST_BUILDKITD_ADDR` names one (with `TEST_BUILDKITD_TLS_CA`, `_CERT`, `_KEY` and
    /// `_SERVER_NAME` for TLS).
    ///
    /// # Panics
    /// When `TEST_BUILDKITD_ADDR` is not a valid address.
    pub fn daemons(&self) -> Vec<Daemon> {
        let mut daemons = vec![Daemon {
            address: Address::Docker(self.docker_socket.clone()),
            tls: None,
        }];
        if let Ok(addr) = std::env::var("TEST_BUILDKITD_ADDR") {
            let address = addr
                .parse()
                .expect("TEST_BUILDKITD_ADDR is a buildkit address");
            let tls = std::env::var("TEST_BUILDKITD_TLS_CA")
                .ok()
                .map(|ca| TlsFiles {
                    ca: ca.into(),
                    cert: std::env::var("TEST_BUILDKITD_TLS_CERT")
                        .ok()
                        .map(Into::into),
                    key: std::env::var("TEST_BUILDKITD_TLS_KEY").ok().map(Into::into),
                    server_name: std::env::var("TEST_BUILDKITD_TLS_SERVER_NAME").ok(),
                });
            daemons.push(Daemon { address, tls });
        }
        daemons
    }

    /// Runs the Docker CLI against the bed's Engine; returns (success, stdout, stderr).
    ///
    /// # Panics
    /// When the CLI cannot be started.
    pub fn docker(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("/usr/bin/docker")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.docker_socket.display()),
            )
            .args(args)
            .output()
            .expect("run /usr/bin/docker");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `script` with `sh -c` in a fresh container of `image`, pulled from its registry (any
    /// local copy is removed first, so the registry's image is what runs). Returns its stdout.
    ///
    /// # Panics
    /// When the image cannot be pulled or the script fails.
    pub fn run_in_image(&self, image: &str, script: &str) -> String {
        let _ = self.docker(&["rmi", "-f", image]);
        let (ok, _, stderr) = self.docker(&["pull", "-q", image]);
        assert!(ok, "docker pull {image}: {stderr}");
        let (ok, stdout, stderr) = self.docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "sh",
            "-c",
            script,
        ]);
        assert!(ok, "docker run {image}: {stderr}");
        stdout
    }
}

/// Waits up to `timeout` until some process has `needle` in its command line (`running`) or none
/// has (`!running`); returns whether that happened. A way to see a daemon's `RUN` step start and
/// stop.
pub async fn wait_for_process(needle: &str, running: bool, timeout: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if (processes_running(needle) > 0) == running {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// How many processes have `needle` in their command line (from /proc).
///
/// # Panics
/// When /proc cannot be read.
fn processes_running(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| {
            String::from_utf8_lossy(cmdline)
                .replace('\0', " ")
                .contains(needle)
        })
        .count()
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

impl Bed {
    /// Runs a script of the repository (`args[0]`, relative to its root, which is also the
    /// working dir) against the bed's Engine; returns its stdout.
    ///
    /// # Panics
    /// When it cannot start or fails, with its stderr.
    pub fn script(&self, args: &[&str]) -> String {
        let out = Command::new(repo_root().join(args[0]))
            .args(&args[1..])
            .current_dir(repo_root())
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.docker_socket.display()),
            )
            .output()
            .unwrap_or_else(|err| panic!("{}: {err}", args[0]));
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `tests/self-build-images`: the rust-http template's base images made on this machine and
    /// pushed to the bed's registry, as `KEY=IMAGE` build args (RUST_IMAGE, RUNTIME_IMAGE,
    /// WATCHDOG_IMAGE).
    ///
    /// # Panics
    /// When the script fails or does not name all three.
    pub fn self_build_images(&self) -> Vec<String> {
        let out = self.script(&["tests/self-build-images"]);
        let args: Vec<String> = out
            .lines()
            .filter(|l| l.contains('='))
            .map(str::to_owned)
            .collect();
        assert_eq!(args.len(), 3, "tests/self-build-images printed {out:?}");
        args
    }
}
