//! Respond: the outcome and log of a build as the Builder API's JSON object, or as NDJSON lines
//! while it runs; and the one log line per build for `faas-cli logs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use buildkit::BuildOutcome;
use bytes::Bytes;
use openfaas_runtime::http::{header, HeaderValue, StatusCode};
use openfaas_runtime::{Body, Response};
use tokio::sync::mpsc;

use crate::intake::Prepared;
use crate::run::{run, Ran};
use crate::wire::{Report, Status, Steps};
use crate::{BuildError, Builder};

/// Most log lines a JSON answer carries: the last ones, where a failure's output is. A build
/// that prints without end must not make an answer without end.
pub(crate) const MAX_JSON_LOG_LINES: usize = 10_000;

/// What one build answers with, and how it is logged.
pub(crate) struct Answer {
    pub(crate) started: Instant,
    pub(crate) call_id: String,
}

impl Answer {
    /// The answer for a request refused before its build started.
    pub(crate) fn refused(&self, err: &BuildError) -> Response {
        log_outcome(
            &self.call_id,
            &Logged::default(),
            self.started,
            None,
            Err(err),
        );
        error_response(err, failure(err, Vec::new(), "", None, self))
    }

    /// Builds, then answers with one JSON object holding the (last lines of the) log.
    pub(crate) async fn json(self, builder: &Builder, prepared: Prepared) -> Response {
        let logged = Logged::of(&prepared);
        let image = logged.image.clone();
        let mut tail = LogTail::default();
        let ran = run(builder, prepared, |batch| {
            tail.extend(batch);
            std::future::ready(true)
        })
        .await
        .unwrap_or_else(|| Ran {
            result: Err(BuildError::Internal {
                message: "the build stopped without an outcome".to_owned(),
            }),
            steps: None,
        });
        let log = tail.into_lines();
        let outcome = ran.result.as_ref().map(|_| ());
        log_outcome(&self.call_id, &logged, self.started, ran.steps, outcome);
        match ran.result {
            Ok(outcome) => openfaas_runtime::json(
                StatusCode::OK,
                &success(log, image, outcome, ran.steps, self.started),
            ),
            Err(err) => error_response(&err, failure(&err, log, &image, ran.steps, &self)),
        }
    }

    /// Answers at once with an NDJSON stream: one `in_progress` line per batch of log lines as
    /// they happen, then the outcome. A client that goes away cancels the build.
    pub(crate) fn ndjson(self, builder: Arc<Builder>, prepared: Prepared) -> Response {
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
        let logged = Logged::of(&prepared);
        let image = logged.image.clone();
        let started = self.started;
        let task = tokio::spawn(async move {
            let sink = |batch: Vec<String>| {
                let report = Report {
                    log: Some(batch),
                    image: image.clone(),
                    status: Status::InProgress,
                    duration: secs(started),
                    ..Report::default()
                };
                let body_tx = body_tx.clone();
                async move { body_tx.send(Ok(ndjson_line(&report))).await.is_ok() }
            };
            // None: the client went away, and dropping the build cancelled it.
            let Some(ran) = run(&builder, prepared, sink).await else {
                return;
            };
            let outcome = ran.result.as_ref().map(|_| ());
            log_outcome(&self.call_id, &logged, started, ran.steps, outcome);
            let last = match ran.result {
                Ok(outcome) => success(Vec::new(), image, outcome, ran.steps, started),
                Err(err) => failure(&err, Vec::new(), &image, ran.steps, &self),
            };
            let last = Report { log: None, ..last };
            let _ = body_tx.send(Ok(ndjson_line(&last))).await;
        });
        let guard = AbortOnDrop(task);
        let chunks = futures_util::stream::unfold((body_rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|chunk| (chunk, (rx, guard)))
        });
        let mut resp = Response::new(Body::from_stream(chunks));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::wire::NDJSON),
        );
        resp
    }
}

/// The last [`MAX_JSON_LOG_LINES`] lines of a log, and how many came before them.
#[derive(Default)]
struct LogTail {
    lines: VecDeque<String>,
    left_out: u64,
}

impl LogTail {
    fn extend(&mut self, batch: Vec<String>) {
        for text in batch {
            if self.lines.len() == MAX_JSON_LOG_LINES {
                self.lines.pop_front();
                self.left_out += 1;
            }
            self.lines.push_back(text);
        }
    }

    fn into_lines(self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.lines.len() + 1);
        if self.left_out > 0 {
            out.push(line(&format!(
                "[{} earlier log lines left out: the answer keeps the last {MAX_JSON_LOG_LINES}]",
                self.left_out
            )));
        }
        out.extend(self.lines);
        out
    }
}

/// Cancels the build when the response stream is dropped (the client disconnected).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn success(
    log: Vec<String>,
    image: String,
    outcome: BuildOutcome,
    steps: Option<Steps>,
    started: Instant,
) -> Report {
    Report {
        log: Some(log),
        image,
        status: Status::Success,
        duration: secs(started),
        digest: outcome.digest,
        steps,
        ..Report::default()
    }
}

fn failure(
    err: &BuildError,
    log: Vec<String>,
    image: &str,
    steps: Option<Steps>,
    answer: &Answer,
) -> Report {
    // Our own faults carry paths and error chains: those go to the log line, with the call id
    // that the answer names instead.
    let error = if err.status() == StatusCode::INTERNAL_SERVER_ERROR {
        format!("internal error (call id {})", answer.call_id)
    } else {
        err.to_string()
    };
    Report {
        log: Some(log),
        image: image.to_owned(),
        status: Status::Failed,
        error: Some(error),
        duration: secs(answer.started),
        digest: None,
        steps,
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

/// A log line of our own, in the same `<RFC3339> <text>` shape as BuildKit's.
pub(crate) fn line(text: &str) -> String {
    format!(
        "{} {text}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )
}

/// What the per-build log line says of the request.
#[derive(Default)]
struct Logged {
    image: String,
    tenant: String,
    bytes_in: u64,
}

impl Logged {
    fn of(prepared: &Prepared) -> Self {
        Self {
            image: prepared.config.image.clone().unwrap_or_default(),
            tenant: prepared.decision.tenant.clone(),
            bytes_in: prepared.bytes_in,
        }
    }
}

/// The one log line per build, readable with `faas-cli logs`.
fn log_outcome(
    call_id: &str,
    logged: &Logged,
    started: Instant,
    steps: Option<Steps>,
    result: Result<(), &BuildError>,
) {
    let duration = secs(started);
    let Steps { total, cached } = steps.unwrap_or_default();
    let Logged {
        image,
        tenant,
        bytes_in,
    } = logged;
    match result {
        Ok(()) => tracing::info!(
            call_id = %call_id,
            image = %image,
            tenant = %tenant,
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
