//! Running a credential helper the way docker-credential-helpers' own client does:
//! `docker-credential-<name> get`, the server address on stdin, a JSON answer on stdout.
//!
//! The helper is a tokio child killed on drop: a cancelled build drops the lookup, and with it
//! the helper, instead of leaving it to run on a blocking thread; a helper waiting on a prompt or
//! a locked keychain is given up after [`HELPER_TIMEOUT`].

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{json_problem, DockerConfigError};

/// A helper waiting on a prompt or a locked keychain would otherwise hold the build forever.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// What every docker-credential-helpers helper prints when it holds nothing for a host.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";
/// A failing helper's output is quoted in the error only this far (in characters).
const HELPER_MESSAGE_LIMIT: usize = 300;

/// How credential helpers are run: found on which `PATH`, and given how long.
#[derive(Clone, Debug)]
pub(super) struct HelperRunner {
    /// `PATH` for helpers; `None` for the process's own (tests point it at fakes).
    pub(super) path: Option<OsString>,
    pub(super) timeout: Duration,
}

/// A helper's answer to `get`.
#[derive(Deserialize)]
pub(super) struct HelperAnswer {
    #[serde(rename = "Username", default)]
    pub(super) username: String,
    #[serde(rename = "Secret", default)]
    pub(super) secret: String,
}

impl Default for HelperRunner {
    fn default() -> Self {
        Self {
            path: None,
            timeout: HELPER_TIMEOUT,
        }
    }
}

impl HelperRunner {
    /// What helper `name` holds for `server`; `None` for its "not found" (anonymous). Dropping
    /// the future kills the helper.
    ///
    /// # Errors
    /// [`DockerConfigError::Helper`]: the helper cannot be run, gives no answer within the
    /// timeout, fails, or answers something that is not its JSON.
    pub(super) async fn get(
        &self,
        name: &str,
        server: &str,
    ) -> Result<Option<HelperAnswer>, DockerConfigError> {
        let program = format!("docker-credential-{name}");
        let fail = |message: String| DockerConfigError::Helper {
            helper: program.clone(),
            host: server.to_owned(),
            message,
        };
        let mut command = Command::new(&program);
        command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        let mut child = command
            .spawn()
            .map_err(|err| fail(format!("cannot run it: {err}")))?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let ask = async move {
            if let Some(mut stdin) = stdin {
                // A helper that exits without reading closes the pipe; its exit status says the
                // rest. Dropping stdin afterwards is the end of input the helper reads up to.
                let _ = stdin.write_all(server.as_bytes()).await;
            }
        };
        // Both pipes are read while waiting, so a chatty helper never stalls on a full pipe.
        let exchange = async {
            let ((), stdout, stderr, status) =
                tokio::join!(ask, read_all(stdout), read_all(stderr), child.wait());
            (status, stdout, stderr)
        };
        // On a timeout `child` is dropped on return, which kills the helper.
        let (status, stdout, stderr) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?;
        let status = status.map_err(|err| fail(format!("cannot wait for it: {err}")))?;
        if !status.success() {
            let (out, err) = (
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr),
            );
            if out.contains(HELPER_NOT_FOUND) || err.contains(HELPER_NOT_FOUND) {
                return Ok(None);
            }
            let said = [out.trim(), err.trim()]
                .into_iter()
                .find(|said| !said.is_empty())
                .unwrap_or("no message");
            return Err(fail(format!(
                "{status}: {}",
                said.chars().take(HELPER_MESSAGE_LIMIT).collect::<String>()
            )));
        }
        serde_json::from_slice(&stdout).map(Some).map_err(|err| {
            let (kind, line, column) = json_problem(&err);
            fail(format!(
                "unreadable answer: {kind} at line {line} column {column}"
            ))
        })
    }
}

/// All of a child's pipe, until every writer closed it.
async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes).await;
    }
    bytes
}

/// A fake `docker-credential-test` for the tests of this module and of the config's lookup order.
#[cfg(test)]
pub(super) mod fake {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::HelperRunner;

    /// Answers by host; `hang.example` writes its pid beside the script (atomically, by rename)
    /// and then sleeps as that same process.
    const SCRIPT: &str = r#"#!/bin/sh
[ "$1" = get ] || exit 2
case "$(cat)" in
  ghcr.io) echo '{"ServerURL": "ghcr.io", "Username": "helper-user", "Secret": "helper-pass"}' ;;
  https://index.docker.io/v1/) echo '{"Username": "<token>", "Secret": "hub-token"}' ;;
  broken.example) echo 'keychain is locked' >&2; exit 1 ;;
  garbled.example) echo '{"Username": "u", "Secret": "hunter2' ;;
  hang.example) echo $$ > "${0%/*}/helper.pid.new" && mv "${0%/*}/helper.pid.new" "${0%/*}/helper.pid"
    exec sleep 60 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;

    /// A temp dir holding the fake helper, and a runner that finds it first and gives up after
    /// `timeout`.
    pub(in crate::dockerconfig) fn runner(timeout: Duration) -> (tempfile::TempDir, HelperRunner) {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-test");
        std::fs::write(&script, SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let system = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(dir.path().to_owned()).chain(std::env::split_paths(&system)),
        );
        let runner = HelperRunner {
            path: Some(path.unwrap()),
            timeout,
        };
        (dir, runner)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::dockerconfig::DockerConfig;

    /// Long enough for any answer on a loaded machine; the tests that hang set their own.
    const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
    /// How long a test waits for a process to start or to be gone before it fails.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// A config whose every host is served by the fake helper.
    fn config(timeout: Duration) -> (tempfile::TempDir, DockerConfig) {
        let (dir, runner) = fake::runner(timeout);
        let json = br#"{"credsStore": "test"}"#;
        let config = DockerConfig::from_json(json, Path::new("config.json")).unwrap();
        (dir, config.with_helpers(runner))
    }

    /// The pid the hanging helper wrote into `dir`, polling `lookup` meanwhile so that it runs.
    async fn helper_pid<F: Future + Unpin>(dir: &Path, lookup: &mut F) -> u32 {
        let pid_file = dir.join("helper.pid");
        let started = Instant::now();
        loop {
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                return pid.trim().parse().expect("a pid");
            }
            assert!(started.elapsed() < DEADLINE, "the helper never started");
            tokio::select! {
                _ = &mut *lookup => panic!("the hanging helper answered"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    /// Whether `pid` still runs: killed, it is gone or a zombie (`Z`) until tokio reaps it.
    fn running(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ...`, where comm may hold spaces and parentheses.
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|state| state.starts_with('Z'))
    }

    async fn assert_stops(pid: u32) {
        let started = Instant::now();
        while running(pid) {
            assert!(started.elapsed() < DEADLINE, "helper {pid} still runs");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn helper_failures_are_errors_without_secrets() {
        let (_dir, c) = config(ANSWER_TIMEOUT);
        let failures = [
            ("broken.example", "exit status: 1: keychain is locked"),
            ("garbled.example", "unreadable answer: syntax error"),
        ];
        for (host, says) in failures {
            let err = c.credentials(host).await.unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                matches!(&err, DockerConfigError::Helper { host: asked, .. } if asked == host),
                "{shown}"
            );
            assert!(
                shown.contains(says)
                    && shown.contains("docker-credential-test")
                    && !shown.contains("hunter2"),
                "{shown}"
            );
        }
    }

    #[tokio::test]
    async fn a_helper_without_an_answer_in_time_is_an_error_and_is_killed() {
        let (dir, c) = config(Duration::from_millis(500));
        let started = Instant::now();
        let err = c.credentials("hang.example").await.unwrap_err();
        assert!(started.elapsed() < DEADLINE, "took {:?}", started.elapsed());
        assert_eq!(
            err.to_string(),
            "credential helper docker-credential-test for hang.example: no answer within 500ms"
        );
        let pid = std::fs::read_to_string(dir.path().join("helper.pid")).unwrap();
        assert_stops(pid.trim().parse().unwrap()).await;
    }

    #[tokio::test]
    async fn dropping_the_lookup_kills_the_helper() {
        let (dir, c) = config(ANSWER_TIMEOUT);
        let mut lookup = Box::pin(c.credentials("hang.example"));
        let pid = helper_pid(dir.path(), &mut lookup).await;
        assert!(running(pid), "helper {pid} should be running");
        drop(lookup);
        assert_stops(pid).await;
    }
}
