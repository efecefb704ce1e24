//! Respond: the outcome and log of a build as the Builder API's JSON object, or as NDJSON lines
//! while it runs; and the one log line per build for `faas-cli logs`. Called by the driver
//! (`build.rs`) with what the earlier stages produced; it calls none of them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Instant, SystemTime};

use buildkit::Built;
use bytes::Bytes;
use openfaas_runtime::http::{header, HeaderValue, StatusCode};
use openfaas_runtime::{Body, Response};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::BuildError;
use crate::intake::Prepared;
use crate::run::Ran;
use crate::wire::{Report, Status, Steps};

/// Most log lines a JSON answer carries: the last ones, where a failure's output is. A build
/// that prints without end must not make an answer without end.
pub(crate) const MAX_JSON_LOG_LINES: usize = 10_000;

/// What one build answers with, and how it is logged.
pub(crate) struct Answer {
    started: Instant,
    call_id: String,
    logged: Logged,
}

impl Answer {
    /// The answer to the request `call_id`, which arrived now.
    pub(crate) fn new(call_id: String) -> Self {
        Self {
            started: Instant::now(),
            call_id,
            logged: Logged::default(),
        }
    }

    /// The same answer, knowing what the request asked for.
    pub(crate) fn about(self, prepared: &Prepared) -> Self {
        Self {
            logged: Logged::of(prepared),
            ..self
        }
    }

    /// The answer for a request refused before its build started.
    pub(crate) fn refused(&self, err: &BuildError) -> Response {
        self.log_outcome(None, None, Err(err));
        error_response(err, self.failure(err, Vec::new(), None))
    }

    /// The answer of a finished build as one JSON object holding (the last lines of) its log.
    pub(crate) fn json(&self, ran: Ran, log: Vec<String>) -> Response {
        self.log_outcome(
            ran.steps,
            ran.daemon.as_deref(),
            ran.result.as_ref().map(|_| ()),
        );
        match ran.result {
            Ok(built) => openfaas_runtime::json(
                StatusCode::OK,
                &Report {
                    daemon: ran.daemon,
                    ..self.success(log, built, ran.steps)
                },
            ),
            Err(err) => error_response(
                &err,
                Report {
                    daemon: ran.daemon,
                    ..self.failure(&err, log, ran.steps)
                },
            ),
        }
    }

    /// An NDJSON `in_progress` line with a batch of new log lines.
    pub(crate) fn progress(&self, batch: Vec<String>) -> Bytes {
        ndjson_line(&Report {
            log: Some(batch),
            image: self.logged.image.clone(),
            status: Status::InProgress,
            duration: secs(self.started),
            ..Report::default()
        })
    }

    /// The last NDJSON line: the outcome, without log.
    pub(crate) fn last_line(&self, ran: Ran) -> Bytes {
        self.log_outcome(
            ran.steps,
            ran.daemon.as_deref(),
            ran.result.as_ref().map(|_| ()),
        );
        let last = match ran.result {
            Ok(built) => self.success(Vec::new(), built, ran.steps),
            Err(err) => self.failure(&err, Vec::new(), ran.steps),
        };
        ndjson_line(&Report {
            log: None,
            daemon: ran.daemon,
            ..last
        })
    }

    fn success(&self, log: Vec<String>, built: Built, steps: Option<buildkit::Steps>) -> Report {
        Report {
            log: Some(log),
            image: self.logged.image.clone(),
            status: Status::Success,
            duration: secs(self.started),
            digest: built.digest,
            steps: steps.map(Steps::from),
            request_digest: self.logged.request.clone(),
            attestations: built.attestations,
            ..Report::default()
        }
    }

    fn failure(
        &self,
        err: &BuildError,
        log: Vec<String>,
        steps: Option<buildkit::Steps>,
    ) -> Report {
        // Our own faults carry paths and error chains: those go to the log line, with the call
        // id that the answer names instead.
        let error = if err.status() == StatusCode::INTERNAL_SERVER_ERROR {
            format!("internal error (call id {})", self.call_id)
        } else {
            err.to_string()
        };
        Report {
            log: Some(log),
            image: self.logged.image.clone(),
            status: Status::Failed,
            error: Some(error),
            duration: secs(self.started),
            digest: None,
            steps: steps.map(Steps::from),
            daemon: None,
            request_digest: self.logged.request.clone(),
            attestations: Vec::new(),
        }
    }

    /// The one log line per build, readable with `faas-cli logs`.
    fn log_outcome(
        &self,
        steps: Option<buildkit::Steps>,
        daemon: Option<&str>,
        result: Result<(), &BuildError>,
    ) {
        let daemon = daemon.unwrap_or("-");
        let duration = secs(self.started);
        let buildkit::Steps { total, cached } = steps.unwrap_or_default();
        let Logged {
            image,
            tenant,
            bytes_in,
            request,
        } = &self.logged;
        let request = request.as_deref().unwrap_or("-");
        let call_id = &self.call_id;
        match result {
            Ok(()) => tracing::info!(
                call_id = %call_id,
                image = %image,
                tenant = %tenant,
                daemon,
                request,
                status = "success",
                duration,
                bytes_in,
                steps = total,
                cached,
                "build"
            ),
            Err(err) => tracing::warn!(
                call_id = %call_id,
                image = %image,
                tenant = %tenant,
                daemon,
                request,
                status = "failed",
                code = err.status().as_u16(),
                error = %err,
                duration,
                bytes_in,
                steps = total,
                cached,
                "build"
            ),
        }
    }
}

/// An NDJSON answer whose lines come from `lines`, sent at once; dropping it (the client went
/// away) aborts `build`, which cancels the build.
pub(crate) fn ndjson(lines: mpsc::Receiver<Bytes>, build: JoinHandle<()>) -> Response {
    let guard = AbortOnDrop(build);
    let chunks = futures_util::stream::unfold((lines, guard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), (rx, guard)))
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::wire::NDJSON),
    );
    resp
}

/// The last [`MAX_JSON_LOG_LINES`] lines of a log, and how many came before them.
#[derive(Default)]
pub(crate) struct LogTail {
    lines: VecDeque<String>,
    left_out: u64,
}

impl LogTail {
    pub(crate) fn extend(&mut self, batch: Vec<String>) {
        for text in batch {
            if self.lines.len() == MAX_JSON_LOG_LINES {
                self.lines.pop_front();
                self.left_out += 1;
            }
            self.lines.push_back(text);
        }
    }

    pub(crate) fn into_lines(self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.lines.len() + 1);
        if self.left_out > 0 {
            out.push(buildkit::log_line(
                SystemTime::now(),
                &format!(
                    "[{} earlier log lines left out: the answer keeps the last {MAX_JSON_LOG_LINES}]",
                    self.left_out
                ),
            ));
        }
        out.extend(self.lines);
        out
    }
}

/// Cancels the build when the response stream is dropped (the client disconnected).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `report` of `err` with its status, and `Retry-After` where retrying can help.
fn error_response(err: &BuildError, report: Report) -> Response {
    let mut resp = openfaas_runtime::json(err.status(), &report);
    if let Some(secs) = err.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn ndjson_line(report: &Report) -> Bytes {
    let mut line = serde_json::to_vec(report).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn secs(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// What the per-build log line says of the request.
#[derive(Default)]
struct Logged {
    image: String,
    tenant: String,
    bytes_in: u64,
    /// `sha256:…` of the signed body.
    request: Option<String>,
}

impl Logged {
    fn of(prepared: &Prepared) -> Self {
        Self {
            image: prepared
                .config
                .image
                .as_ref()
                .map(|image| image.given().to_owned())
                .unwrap_or_default(),
            tenant: prepared.decision.tenant.clone(),
            bytes_in: prepared.bytes_in,
            request: Some(prepared.request_digest.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_log_keeps_the_last_lines_and_says_how_many_it_left_out() {
        let mut tail = LogTail::default();
        tail.extend(
            (0..MAX_JSON_LOG_LINES + 5)
                .map(|i| format!("l{i}"))
                .collect(),
        );
        let lines = tail.into_lines();
        assert_eq!(lines.len(), MAX_JSON_LOG_LINES + 1);
        assert!(
            lines[0].ends_with("[5 earlier log lines left out: the answer keeps the last 10000]")
        );
        assert_eq!(lines[1], "l5");
        assert_eq!(
            lines.last().unwrap(),
            &format!("l{}", MAX_JSON_LOG_LINES + 4)
        );
    }
}
