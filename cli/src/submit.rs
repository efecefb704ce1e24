//! `build`: sign a request tar and POST it to a builder, printing the NDJSON progress as it
//! arrives; success only when the final line says so.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::TryStreamExt;
use handler::wire::{Report, Status};
use http_body_util::BodyExt;
use indicatif::ProgressBar;

use crate::display::Display;
use crate::spool::Spooled;
use crate::transport::Target;

/// What the builder answered in the end.
pub(crate) struct Outcome {
    pub(crate) image: String,
    pub(crate) digest: Option<String>,
    /// Dockerfile steps, and how many came from the cache.
    pub(crate) steps: Option<handler::wire::Steps>,
    /// `sha256:…` of the signed request, as the image's annotation names it.
    pub(crate) request_digest: Option<String>,
    /// The attestation manifests pushed with the image.
    pub(crate) attestations: Vec<String>,
}

/// POSTs a signed request to `url` with `extra` headers; returns the response, body streaming.
/// `sent` counts the bytes uploaded.
async fn post(
    target: &Target,
    request: Spooled,
    extra: &[(&str, &str)],
    sent: Option<ProgressBar>,
) -> Result<http::Response<hyper::body::Incoming>> {
    let mut conn = target.connect().await?;
    let mut req = http::Request::post(&conn.path)
        .header(http::header::HOST, &conn.authority)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(http::header::CONTENT_LENGTH, request.len)
        .header("x-build-signature", &request.signature);
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    conn.send(req.body(counted(request.into_body(), sent))?)
        .await
        .context("sending the build request")
}

/// Submits through the gateway's queue: `/function/…` becomes `/async-function/…`, the result is
/// POSTed to `callback_url` when the build ends. Returns the call id.
pub(crate) async fn submit_async(
    target: &Target,
    request: Spooled,
    callback_url: &str,
) -> Result<String> {
    let queued = Target {
        url: target.url.replacen("/function/", "/async-function/", 1),
        ..target.clone()
    };
    let resp = post(&queued, request, &[("x-callback-url", callback_url)], None).await?;
    let status = resp.status();
    let call_id = resp
        .headers()
        .get("x-call-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status != http::StatusCode::ACCEPTED {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "the gateway answered {status} instead of 202: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(call_id)
}

/// Judges a builder result object: `Ok` with image and digest on success.
pub(crate) fn outcome(result: &Report, status: http::StatusCode) -> Result<Outcome> {
    match result.status {
        Status::Success => Ok(Outcome {
            image: result.image.clone(),
            digest: result.digest.clone(),
            steps: result.steps,
            request_digest: result.request_digest.clone(),
            attestations: result.attestations.clone(),
        }),
        _ => {
            let error = result.error.as_deref().unwrap_or("no error message");
            if status == http::StatusCode::UNAUTHORIZED {
                bail!("the builder rejected the signature ({status}): {error}");
            }
            // An NDJSON answer is 200 from its first line: its status says nothing then.
            if status == http::StatusCode::OK {
                bail!("build failed: {error}");
            }
            bail!("build failed ({status}): {error}")
        }
    }
}

/// Shows the log lines of a builder result object.
pub(crate) fn show_log(result: &Report, display: &mut Display) {
    for log in result.log.iter().flatten() {
        display.line(log);
    }
}

/// POSTs `request` to the target (`http[s]://host:port[/build]`), showing each log line as it arrives.
pub(crate) async fn submit(
    target: &Target,
    request: Spooled,
    display: &mut Display,
) -> Result<Outcome> {
    let sent = display.upload(request.len);
    let resp = post(target, request, &[("accept", handler::wire::NDJSON)], sent).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut last: Option<Report> = None;
    while let Some(frame) = body.frame().await {
        // hyper's "connection closed before message completed" (or a reset): the builder went
        // away, e.g. a `serve` stopped with Ctrl-C, which cancels the build.
        let frame = frame.map_err(|_| anyhow!(GONE))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(value) = serde_json::from_slice::<Report>(&line) else {
                continue;
            };
            show_log(&value, display);
            last = Some(value);
        }
    }
    // A non-NDJSON error answer (e.g. 401) is one JSON object without a newline.
    if !pending.is_empty() {
        last = serde_json::from_slice(&pending).ok().or(last);
    }
    let last = last.ok_or_else(|| anyhow!("the builder answered {status} without a result"))?;
    if last.status == Status::InProgress {
        bail!("{GONE}");
    }
    outcome(&last, status)
}

/// A streamed answer that ends before its last line.
const GONE: &str = "the builder closed the connection before the build finished";

/// `body`, advancing `sent` by each chunk as hyper takes it.
fn counted(body: openfaas_runtime::Body, sent: Option<ProgressBar>) -> openfaas_runtime::Body {
    let Some(sent) = sent else {
        return body;
    };
    openfaas_runtime::Body::from_stream(body.into_data_stream().inspect_ok(move |chunk| {
        sent.inc(chunk.len() as u64);
        if Some(sent.position()) == sent.length() {
            sent.set_message("sent, waiting for the builder");
        }
    }))
}
