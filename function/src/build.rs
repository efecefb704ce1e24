//! `POST /build`: verify → unpack → build → respond, as one JSON object or as NDJSON lines.

use std::sync::Arc;
use std::time::Instant;

use buildkit::{BuildOutcome, BuildRequest, DockerConfig, Output, SourceTree};
use bytes::Bytes;
use openfaas_runtime::http::{header, HeaderValue, StatusCode};
use openfaas_runtime::{Body, Request, Response};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::archive::{Archive, Limits};
use crate::buildconfig::BuildConfig;
use crate::verify::verify;
use crate::{BuildError, Builder};

/// The Builder API's response object (also each NDJSON line).
#[derive(Serialize, Default)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Vec<String>>,
    image: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

/// A request that passed intake: its indexed archive and its config.
struct Prepared {
    /// The spool files; removed when dropped, on every path.
    _workdir: tempfile::TempDir,
    archive: Arc<Archive>,
    config: BuildConfig,
    bytes_in: u64,
}

pub(crate) async fn handle(builder: &Arc<Builder>, req: Request) -> Response {
    let started = Instant::now();
    let call_id = req
        .headers()
        .get("x-call-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let ndjson = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"));
    let prepared = match prepare(builder, req).await {
        Ok(prepared) => prepared,
        Err(err) => {
            log_outcome(&call_id, "", 0, started, Err(&err));
            return error_response(&err, Vec::new(), "", started);
        }
    };
    if ndjson {
        stream(Arc::clone(builder), prepared, started, call_id)
    } else {
        let (lines_tx, mut lines_rx) = mpsc::unbounded_channel();
        let image = prepared.config.image.clone().unwrap_or_default();
        let bytes_in = prepared.bytes_in;
        let result = run(builder, prepared, lines_tx).await;
        let log = drain(&mut lines_rx);
        log_outcome(
            &call_id,
            &image,
            bytes_in,
            started,
            result.as_ref().map(|_| ()),
        );
        match result {
            Ok(outcome) => json(StatusCode::OK, &success(log, image, outcome, started)),
            Err(err) => error_response(&err, log, &image, started),
        }
    }
}

/// Intake: signature, size, unpack and config, before BuildKit is called.
async fn prepare(builder: &Builder, req: Request) -> Result<Prepared, BuildError> {
    let settings = &builder.settings;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        if len > settings.max_request_bytes {
            return Err(BuildError::TooLarge {
                limit: settings.max_request_bytes,
            });
        }
    }
    let signature = req
        .headers()
        .get("x-build-signature")
        .map(|v| v.as_bytes().to_vec());
    let secret = builder.payload_secret().await?;
    let workdir = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&settings.work_dir)
        .map_err(|e| BuildError::Internal {
            message: format!("creating a work dir: {e}"),
        })?;
    let spool = workdir.path().join("request.tar");
    let verified = verify(
        req.into_body(),
        &spool,
        settings.max_request_bytes,
        signature.as_deref(),
        secret.as_deref(),
    )
    .await?;
    if verified.len == 0 {
        return Err(BuildError::bad_request(
            "empty request body: expected a tar",
        ));
    }
    let limits = Limits {
        entries: settings.max_entries,
        bytes: settings.max_unpacked_bytes,
    };
    let archive = tokio::task::spawn_blocking(move || Archive::index(&spool, "Dockerfile", limits))
        .await
        .map_err(|e| BuildError::Internal {
            message: format!("index task: {e}"),
        })??;
    let config = BuildConfig::parse(&archive.config)?;
    Ok(Prepared {
        _workdir: workdir,
        archive: Arc::new(archive),
        config,
        bytes_in: verified.len,
    })
}

/// Runs the build, sending log lines to `lines` as they come.
async fn run(
    builder: &Builder,
    prepared: Prepared,
    lines: mpsc::UnboundedSender<String>,
) -> Result<BuildOutcome, BuildError> {
    let config = &prepared.config;
    if !config.unknown_fields.is_empty() {
        let _ = lines.send(line(&format!(
            "ignoring unknown config fields: {}",
            config.unknown_fields.join(", ")
        )));
    }
    let client = builder.client().await?;
    let path = builder.settings.docker_config.clone();
    let registry_auth = tokio::task::spawn_blocking(move || DockerConfig::load(&path))
        .await
        .map_err(|e| BuildError::Internal {
            message: e.to_string(),
        })?
        .map_err(|e| BuildError::Internal {
            message: e.to_string(),
        })?;
    let output = match (&config.image, config.skip_push) {
        (Some(image), false) => Output::Push(image.clone()),
        (Some(image), true) => Output::Tag(image.clone()),
        (None, _) => Output::Discard,
    };
    let context: Arc<dyn SourceTree> = prepared.archive.clone();
    let mut request = BuildRequest::new(context, output);
    request.build_args = config.build_args.clone();
    request.platforms = config.platforms.clone();
    request.network = builder.settings.network;
    request.registry_auth = Arc::new(registry_auth);
    // One key per repository: a rebuild of a function sends only what changed. Safe because
    // the index derives each file's mtime nanoseconds from its content.
    request.shared_key = format!(
        "function-builder:{}",
        config.repository().unwrap_or("skip-push")
    );

    let (events, mut events_rx) = mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            if let Some(text) = buildkit::render(&event) {
                if lines.send(text).is_err() {
                    break;
                }
            }
        }
    });
    let timeout = builder.settings.build_timeout;
    let result = tokio::time::timeout(timeout, client.build(request, events)).await;
    let _ = forward.await;
    drop(prepared);
    match result {
        Ok(result) => Ok(result?),
        Err(_) => Err(BuildError::Timeout {
            secs: timeout.as_secs(),
        }),
    }
}

/// NDJSON: one `in_progress` line per batch of log lines as they happen, then the outcome.
fn stream(
    builder: Arc<Builder>,
    prepared: Prepared,
    started: Instant,
    call_id: String,
) -> Response {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(16);
    let image = prepared.config.image.clone().unwrap_or_default();
    let bytes_in = prepared.bytes_in;
    let task = tokio::spawn(async move {
        let (lines_tx, mut lines_rx) = mpsc::unbounded_channel();
        let build = run(&builder, prepared, lines_tx);
        tokio::pin!(build);
        let result = loop {
            tokio::select! {
                result = &mut build => break result,
                Some(first) = lines_rx.recv() => {
                    let mut batch = vec![first];
                    batch.extend(drain(&mut lines_rx));
                    let report = Report { log: Some(batch), image: image.clone(), status: "in_progress", duration: secs(started), ..Report::default() };
                    if body_tx.send(Ok(ndjson_line(&report))).await.is_err() {
                        return; // the client went away: dropping `build` cancels it
                    }
                }
            }
        };
        let rest = drain(&mut lines_rx);
        if !rest.is_empty() {
            let report = Report {
                log: Some(rest),
                image: image.clone(),
                status: "in_progress",
                duration: secs(started),
                ..Report::default()
            };
            let _ = body_tx.send(Ok(ndjson_line(&report))).await;
        }
        log_outcome(
            &call_id,
            &image,
            bytes_in,
            started,
            result.as_ref().map(|_| ()),
        );
        let last = match result {
            Ok(outcome) => Report {
                log: None,
                ..success(Vec::new(), image, outcome, started)
            },
            Err(err) => Report {
                log: None,
                ..failure(&err, Vec::new(), &image, started)
            },
        };
        let _ = body_tx.send(Ok(ndjson_line(&last))).await;
    });
    let guard = AbortOnDrop(task);
    let chunks = futures_util::stream::unfold((body_rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|chunk| (chunk, (rx, guard)))
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// The lines already queued, without waiting for more.
fn drain(lines: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    std::iter::from_fn(|| lines.try_recv().ok()).collect()
}

/// Cancels the build when the response stream is dropped (the client disconnected).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn success(log: Vec<String>, image: String, outcome: BuildOutcome, started: Instant) -> Report {
    Report {
        log: Some(log),
        image,
        status: "success",
        duration: secs(started),
        digest: outcome.digest,
        ..Report::default()
    }
}

fn failure(err: &BuildError, log: Vec<String>, image: &str, started: Instant) -> Report {
    Report {
        log: Some(log),
        image: image.to_owned(),
        status: "failed",
        error: Some(err.to_string()),
        duration: secs(started),
        digest: None,
    }
}

fn error_response(err: &BuildError, log: Vec<String>, image: &str, started: Instant) -> Response {
    let mut resp = json(err.status(), &failure(err, log, image, started));
    if let Some(secs) = err.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn json(status: StatusCode, report: &Report) -> Response {
    openfaas_runtime::json(status, report)
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
fn line(text: &str) -> String {
    format!(
        "{} {text}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )
}

/// The one log line per build, readable with `faas-cli logs`.
fn log_outcome(
    call_id: &str,
    image: &str,
    bytes_in: u64,
    started: Instant,
    result: Result<(), &BuildError>,
) {
    let duration = secs(started);
    match result {
        Ok(()) => tracing::info!(
            call_id = %call_id,
            image = %image,
            status = "success",
            duration,
            bytes_in,
            "build"
        ),
        Err(err) => tracing::warn!(
            call_id = %call_id,
            image = %image,
            status = "failed",
            code = err.status().as_u16(),
            error = %err,
            duration,
            bytes_in,
            "build"
        ),
    }
}
