//! `POST /build`, the one driver of the pipeline: intake (verify → index → config and policy) →
//! run (session + solve, progress as log lines) → respond (one JSON object, or NDJSON lines while
//! the build runs). Each stage takes what the one before produced; none calls a later one.
//! Intake's time and outcome are counted here, a build's where it runs (`run.rs`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use openfaas_runtime::http::header;
use openfaas_runtime::{Request, Response};
use tokio::sync::mpsc;

use crate::builder::Builder;
use crate::error::BuildError;
use crate::intake::{prepare, Prepared};
use crate::metrics::Stage;
use crate::respond::{Answer, LogTail};
use crate::run::{run, Ran};

/// NDJSON lines queued for a client that reads slower than the build prints.
const NDJSON_QUEUE: usize = 16;

pub(crate) async fn handle(builder: &Arc<Builder>, req: Request) -> Response {
    let call_id = req
        .headers()
        .get("x-call-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| format!("fb-{}", crate::id::unique()), str::to_owned);
    let answer = Answer::new(call_id);
    let ndjson = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(crate::wire::NDJSON));
    let intake = Instant::now();
    let prepared = prepare(builder, req).await;
    builder.metrics.stage(Stage::Intake, intake.elapsed());
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            builder.metrics.refused(err.status());
            return answer.refused(&err);
        }
    };
    builder.metrics.received(prepared.bytes_in);
    let answer = answer.about(&prepared);
    if ndjson {
        stream(Arc::clone(builder), prepared, answer)
    } else {
        whole(builder, prepared, answer).await
    }
}

/// Builds, then answers with one JSON object holding the (last lines of the) log.
async fn whole(builder: &Builder, prepared: Prepared, answer: Answer) -> Response {
    let mut tail = LogTail::default();
    let ran = run(builder, prepared, |batch| {
        tail.extend(batch);
        std::future::ready(true)
    })
    .await
    .unwrap_or_else(|| Ran {
        result: Err(BuildError::Internal {
            context: "the build stopped without an outcome".to_owned(),
            source: None,
        }),
        steps: None,
        daemon: None,
    });
    answer.json(ran, tail.into_lines())
}

/// Answers at once with an NDJSON stream: one `in_progress` line per batch of log lines as they
/// happen, then the outcome. A client that goes away cancels the build.
fn stream(builder: Arc<Builder>, prepared: Prepared, answer: Answer) -> Response {
    let (lines, lines_rx) = mpsc::channel::<Bytes>(NDJSON_QUEUE);
    let build = tokio::spawn(async move {
        let sink = |batch: Vec<String>| {
            let (line, lines) = (answer.progress(batch), lines.clone());
            async move { lines.send(line).await.is_ok() }
        };
        // None: the client went away, and dropping the build cancelled it.
        let Some(ran) = run(&builder, prepared, sink).await else {
            return;
        };
        let _ = lines.send(answer.last_line(ran)).await;
    });
    crate::respond::ndjson(lines_rx, build)
}
