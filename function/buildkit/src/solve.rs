//! A Dockerfile build: session, Solve and Status run together; dropping the future cancels the
//! solve and ends the session on every path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::access::{Access, ReadPolicy};
use crate::failure::solve_error;
use crate::progress::Event;
use crate::request::{solve_request, BuildRequest, Output};
use crate::session::{self, Services};
use crate::status::follow_status;
use crate::steps::{lock, StepLog, Steps};
use crate::{Address, BuildkitError, Client, ImageRef, SourceTree};

/// How long Status may stay silent after Solve returned before we stop reading it (Go's 5 s).
const STATUS_DRAIN: Duration = Duration::from_secs(5);

/// How a build ended, whatever the end: the image or why there is none, and its steps.
#[derive(Debug)]
pub struct BuildOutcome {
    /// What was built, or why the build failed.
    pub result: Result<Built, BuildkitError>,
    /// The Dockerfile steps the build ran, and how many came from the cache, counted as far as
    /// it got.
    pub steps: Steps,
    /// How long pushing the image took, where a push ran: a Docker Engine pushes after the
    /// solve (timed here); buildkitd pushes inside the solve, in its exporter, timed by its own
    /// `pushing …` counters. Part of the time the build took, not added to it.
    pub push: Option<Duration>,
}

/// What a successful build produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The pushed manifest's digest (`sha256:…`) when the image was pushed.
    pub digest: Option<String>,
    /// The daemon's exporter response (e.g. `containerimage.digest`, `image.name`).
    pub exporter_response: HashMap<String, String>,
    /// Digests of the attestation manifests in the pushed index, one per platform.
    pub attestations: Vec<String>,
}

/// Aborts a spawned task when dropped, so no path leaves it running.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// Runs `req` and streams its progress to `events` as it happens. Dropping the returned
    /// future cancels the build: the Solve call is reset and the session closed.
    ///
    /// The outcome's `result` is [`BuildkitError::Build`] when the build itself fails (with the
    /// failing step's name and last output lines), [`BuildkitError::Registry`] when a registry
    /// could not be reached or refused the push (or a pull), [`BuildkitError::Timeout`] past
    /// the request's timeout, others when the daemon misbehaves or is gone.
    pub async fn build(&self, req: BuildRequest, events: mpsc::Sender<Event>) -> BuildOutcome {
        let log = Arc::new(Mutex::new(StepLog::default()));
        let limit = req.timeout;
        let solve = self.solve(req, events, Arc::clone(&log));
        let result = match limit {
            Some(limit) => tokio::time::timeout(limit, solve)
                .await
                .unwrap_or_else(|_| {
                    Err(BuildkitError::Timeout {
                        limit,
                        running: lock(&log).running(),
                    })
                }),
            None => solve.await,
        };
        let (steps, push) = {
            let log = lock(&log);
            (log.steps(), log.push())
        };
        BuildOutcome {
            result,
            steps,
            push,
        }
    }

    async fn solve(
        &self,
        req: BuildRequest,
        events: mpsc::Sender<Event>,
        log: Arc<Mutex<StepLog>>,
    ) -> Result<Built, BuildkitError> {
        let is_docker = matches!(self.address, Address::Docker(_));
        // Said before the build: a Docker Engine that cannot export them would build every
        // platform (under emulation, slowly) and refuse only then.
        if req.platforms.len() > 1
            && req.output != Output::Discard
            && !self.exports_multi_platform().await?
        {
            return Err(BuildkitError::MultiPlatformUnsupported);
        }
        // Only a daemon that answers Info (BuildKit v0.11+) applies a source policy.
        let enforces = req.read_policy != ReadPolicy::Any
            && match &req.daemon_version {
                Some(known) => known.is_some(),
                None => self.version().await?.is_some(),
            };
        let access = Arc::new(Access::new(
            req.read_policy.clone(),
            Arc::clone(&req.registry_auth),
            enforces,
            &req.insecure_registries,
        ));
        let mut sources: HashMap<String, Arc<dyn SourceTree>> = HashMap::new();
        sources.insert("context".to_owned(), Arc::clone(&req.context));
        sources.insert("dockerfile".to_owned(), Arc::clone(&req.context));
        let services = Services {
            sources,
            auth: Arc::clone(&access),
            secrets: req.secrets.clone(),
        };
        let session = session::start(self.control.clone(), &req.shared_key, services);

        let build_ref = crate::id::new();
        let solve_request = solve_request(&req, &build_ref, session.id(), is_docker, &access);
        let push_events = events.clone();
        let mut status = AbortOnDrop(tokio::spawn(follow_status(
            self.clone(),
            build_ref.clone(),
            events,
            Arc::clone(&log),
        )));

        let solved = self.control.clone().solve(solve_request).await;
        // Let the status stream deliver the last updates (the failing step's log among them).
        let _ = tokio::time::timeout(STATUS_DRAIN, &mut status.0).await;
        drop(status);

        let response = match solved {
            Ok(response) => response.into_inner(),
            Err(status) => {
                drop(session);
                let failed = lock(&log).take_failed();
                return Err(access.explain(solve_error(&self.address, &status, failed)));
            }
        };
        let exporter_response: HashMap<String, String> =
            response.exporter_response.into_iter().collect();
        let digest = match (&req.output, &self.address) {
            (Output::Push(image), Address::Docker(socket)) => {
                drop(session);
                // The Engine's push is not part of the solve, so it has no step of its own in
                // the status stream: it gets one here, so logs show where the time went.
                let step = PushStep::start(push_events, image).await;
                let pushed = crate::push::push(socket, image, Arc::clone(&req.registry_auth)).await;
                let took = step.end(pushed.as_ref().err()).await;
                lock(&log).pushed(took);
                if access.restricted() {
                    crate::push::untag(socket, image).await;
                }
                Some(pushed?)
            }
            (Output::Tag(image), Address::Docker(socket)) if access.restricted() => {
                // Under a read policy a build's image is no one else's to resolve by name.
                crate::push::untag(socket, image).await;
                None
            }
            (Output::Push(_), _) => exporter_response.get("containerimage.digest").cloned(),
            _ => None,
        };
        let attestations = lock(&log).attestations();
        Ok(Built {
            digest,
            exporter_response,
            attestations,
        })
    }
}

/// A step of our own for the Engine push, shaped like the daemon's steps.
struct PushStep {
    events: mpsc::Sender<Event>,
    name: String,
    started: std::time::Instant,
}

impl PushStep {
    async fn start(events: mpsc::Sender<Event>, image: &ImageRef) -> Self {
        let name = format!("pushing {}", image.given());
        let _ = events
            .send(Event::VertexStarted {
                digest: "push".to_owned(),
                name: name.clone(),
                at: std::time::SystemTime::now(),
            })
            .await;
        Self {
            events,
            name,
            started: std::time::Instant::now(),
        }
    }

    /// Ends the step; returns how long it took.
    async fn end(self, error: Option<&BuildkitError>) -> Duration {
        let (digest, name, at) = ("push".to_owned(), self.name, std::time::SystemTime::now());
        let took = self.started.elapsed();
        let event = match error {
            None => Event::VertexCompleted {
                digest,
                name,
                at,
                duration: took,
            },
            Some(err) => Event::VertexFailed {
                digest,
                name,
                at,
                error: err.to_string(),
                canceled: false,
            },
        };
        let _ = self.events.send(event).await;
        took
    }
}
