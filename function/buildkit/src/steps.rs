//! The one account of a build's steps, kept as its events pass: how many Dockerfile steps it had
//! and how many came from the cache, which are running now, which failed with what output, and
//! how long the image's push took.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::progress::Event;

/// Log lines kept per step, for the error of a failing step.
const FAILED_STEP_LINES: usize = 20;
/// How buildkitd's image exporter names the counters of its push, inside its `exporting to
/// image` step: `pushing layers`, then `pushing manifest for <ref>` (BuildKit
/// `util/push/push.go`). The cache export names its own `writing …` and `sending cache export`.
const PUSH_COUNTER: &str = "pushing ";
/// How buildkitd's image exporter names the step that writes one attestation manifest, followed by
/// its digest (BuildKit `exporter/containerimage/writer.go`).
const ATTESTATION_MANIFEST: &str = "exporting attestation manifest ";

/// A build's Dockerfile steps (`[2/3] RUN …`), not BuildKit's own (`[internal] …`, exporting,
/// pushing): how many there were and how many came from the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// Steps the build had.
    pub total: u32,
    /// Of those, steps whose result came from the cache.
    pub cached: u32,
}

/// A step that failed, and the last lines it printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FailedStep {
    pub(crate) name: String,
    pub(crate) output: Vec<String>,
}

/// What the events of one build said about its steps so far.
#[derive(Default)]
pub(crate) struct StepLog {
    seen: HashSet<String>,
    cached: HashSet<String>,
    /// Digest and name of each step started and not yet ended, in the order they started.
    running: Vec<(String, String)>,
    output: HashMap<String, VecDeque<String>>,
    failed: Option<FailedStep>,
    /// From the first push counter's start to the last one's end, in the daemon's clock.
    push_window: Option<(SystemTime, SystemTime)>,
    /// The push measured by the caller (a Docker Engine's, after the solve).
    push_took: Option<Duration>,
    /// Digests of the attestation manifests the exporter wrote, in the order it wrote them.
    attestations: Vec<String>,
}

impl StepLog {
    pub(crate) fn observe(&mut self, event: &Event) {
        let (digest, name, cached) = match event {
            Event::VertexStarted { digest, name, .. } => {
                if !self.running.iter().any(|(d, _)| d == digest) {
                    self.running.push((digest.clone(), name.clone()));
                }
                (digest, name, false)
            }
            Event::VertexCompleted { digest, name, .. } => {
                self.running.retain(|(d, _)| d != digest);
                (digest, name, false)
            }
            Event::VertexFailed {
                digest,
                name,
                canceled,
                ..
            } => {
                self.running.retain(|(d, _)| d != digest);
                if !canceled && self.failed.is_none() {
                    let output = self.output.remove(digest).map(Vec::from);
                    self.failed = Some(FailedStep {
                        name: name.clone(),
                        output: output.unwrap_or_default(),
                    });
                }
                (digest, name, false)
            }
            Event::VertexCached { digest, name, .. } => {
                self.running.retain(|(d, _)| d != digest);
                (digest, name, true)
            }
            Event::Status {
                id,
                at,
                started,
                completed: true,
                ..
            } if id.starts_with(PUSH_COUNTER) => {
                let (from, to) = (started.unwrap_or(*at).min(*at), *at);
                self.push_window = Some(match self.push_window {
                    Some((first, last)) => (first.min(from), last.max(to)),
                    None => (from, to),
                });
                return;
            }
            Event::Status {
                id,
                completed: true,
                ..
            } if id.starts_with(ATTESTATION_MANIFEST) => {
                let digest = id[ATTESTATION_MANIFEST.len()..].trim().to_owned();
                if !self.attestations.contains(&digest) {
                    self.attestations.push(digest);
                }
                return;
            }
            Event::Log { vertex, line, .. } => {
                let lines = self.output.entry(vertex.clone()).or_default();
                if lines.len() == FAILED_STEP_LINES {
                    lines.pop_front();
                }
                lines.push_back(line.clone());
                return;
            }
            _ => return,
        };
        // The Dockerfile frontend names its steps `[2/3] RUN …` or `[stage 1/2] FROM …`.
        if !name.starts_with('[') || name.starts_with("[internal]") {
            return;
        }
        self.seen.insert(digest.clone());
        if cached {
            self.cached.insert(digest.clone());
        }
    }

    /// The names of the steps running now, each once (a multi-platform build runs a step per
    /// platform), in the order they started.
    pub(crate) fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (_, name) in &self.running {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    pub(crate) fn steps(&self) -> Steps {
        let count = |set: &HashSet<String>| u32::try_from(set.len()).unwrap_or(u32::MAX);
        Steps {
            total: count(&self.seen),
            cached: count(&self.cached),
        }
    }

    /// Records a push the caller measured itself (a Docker Engine pushes after the solve).
    pub(crate) fn pushed(&mut self, took: Duration) {
        self.push_took = Some(took);
    }

    /// How long the image's push took, where a push ran to its end (or failure): measured by
    /// the caller, or from the daemon's own push counters.
    pub(crate) fn push(&self) -> Option<Duration> {
        self.push_took.or_else(|| {
            self.push_window
                .map(|(first, last)| last.duration_since(first).unwrap_or_default())
        })
    }

    /// The attestation manifests the exporter wrote (`sha256:…`).
    pub(crate) fn attestations(&self) -> Vec<String> {
        self.attestations.clone()
    }

    /// The first step that failed (not one canceled because another failed).
    pub(crate) fn take_failed(&mut self) -> Option<FailedStep> {
        self.failed.take()
    }
}

/// The step log, whoever panicked holding it.
pub(crate) fn lock(log: &Mutex<StepLog>) -> MutexGuard<'_, StepLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn started(digest: &str, name: &str) -> Event {
        Event::VertexStarted {
            digest: digest.into(),
            name: name.into(),
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn log(digest: &str, line: &str) -> Event {
        Event::Log {
            vertex: digest.into(),
            vertex_name: String::new(),
            stream: 1,
            line: line.into(),
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn failed(digest: &str, name: &str, canceled: bool) -> Event {
        Event::VertexFailed {
            digest: digest.into(),
            name: name.into(),
            at: SystemTime::UNIX_EPOCH,
            error: "x".into(),
            canceled,
        }
    }

    #[test]
    fn counts_dockerfile_steps_and_names_the_first_failure_with_its_last_lines() {
        let mut log_ = StepLog::default();
        let events = [
            started("i", "[internal] load build definition"),
            Event::VertexCached {
                digest: "a".into(),
                name: "[1/3] FROM base".into(),
                at: SystemTime::UNIX_EPOCH,
            },
            started("b", "[2/3] RUN make"),
            started("c", "[3/3] RUN other"),
            started("c2", "[3/3] RUN other"),
        ];
        for event in &events {
            log_.observe(event);
        }
        assert_eq!(
            log_.running(),
            [
                "[internal] load build definition",
                "[2/3] RUN make",
                "[3/3] RUN other"
            ]
        );
        for i in 0..25 {
            log_.observe(&log("b", &format!("line {i}")));
        }
        log_.observe(&failed("c", "[3/3] RUN other", true));
        log_.observe(&failed("b", "[2/3] RUN make", false));
        log_.observe(&Event::VertexCompleted {
            digest: "i".into(),
            name: "[internal] load build definition".into(),
            at: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
        });
        assert_eq!(
            log_.steps(),
            Steps {
                total: 4,
                cached: 1
            }
        );
        let failed = log_.take_failed().unwrap();
        assert_eq!(failed.name, "[2/3] RUN make");
        assert_eq!(failed.output.len(), FAILED_STEP_LINES);
        assert_eq!(failed.output.last().unwrap(), "line 24");
        assert_eq!(log_.running(), ["[3/3] RUN other"]);
    }

    #[test]
    fn the_push_spans_buildkitds_push_counters_whether_or_not_their_start_was_seen() {
        let status = |id: &str, started: Option<u64>, at: u64, completed: bool| Event::Status {
            vertex: "export".into(),
            id: id.into(),
            current: 0,
            total: 0,
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(at),
            started: started.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            completed,
        };
        let mut log_ = StepLog::default();
        assert_eq!(log_.push(), None);
        for event in [
            status("exporting layers", Some(100), 200, true),
            status("pushing layers", Some(1000), 1000, false),
            // Arrived once, already done: its start is in the message.
            status("pushing layers", Some(1000), 3000, true),
            status(
                "pushing manifest for r/a:1@sha256:00",
                Some(3000),
                3500,
                true,
            ),
            status("writing layer sha256:00", Some(4000), 9000, true),
        ] {
            log_.observe(&event);
        }
        assert_eq!(log_.push(), Some(Duration::from_millis(2500)));
        assert_eq!(log_.steps(), Steps::default());
        // A push the caller measured (a Docker Engine's) is what it says.
        log_.pushed(Duration::from_millis(700));
        assert_eq!(log_.push(), Some(Duration::from_millis(700)));
    }

    #[test]
    fn attestation_manifests_are_the_exporters_finished_ones_each_once() {
        let status = |id: &str, completed: bool| Event::Status {
            vertex: "export".into(),
            id: id.into(),
            current: 0,
            total: 0,
            at: SystemTime::UNIX_EPOCH,
            started: None,
            completed,
        };
        let mut log_ = StepLog::default();
        for event in [
            status("exporting manifest sha256:aa", true),
            status("exporting attestation manifest sha256:bb", false),
            status("exporting attestation manifest sha256:bb", true),
            status("exporting attestation manifest sha256:bb", true),
            status("exporting attestation manifest sha256:cc", true),
            status("exporting manifest list sha256:dd", true),
        ] {
            log_.observe(&event);
        }
        assert_eq!(log_.attestations(), ["sha256:bb", "sha256:cc"]);
    }
}
