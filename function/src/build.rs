//! `POST /build`: intake (verify → index) → run → respond, as one JSON object or as NDJSON lines.

use std::sync::Arc;
use std::time::Instant;

use openfaas_runtime::http::header;
use openfaas_runtime::{Request, Response};

use crate::intake::prepare;
use crate::respond::Answer;
use crate::Builder;

pub(crate) async fn handle(builder: &Arc<Builder>, req: Request) -> Response {
    let answer = Answer {
        started: Instant::now(),
        call_id: req
            .headers()
            .get("x-call-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| format!("fb-{}", crate::intake::unique()), str::to_owned),
    };
    let ndjson = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(crate::wire::NDJSON));
    let prepared = match prepare(builder, req).await {
        Ok(prepared) => prepared,
        Err(err) => return answer.refused(&err),
    };
    if ndjson {
        answer.ndjson(Arc::clone(builder), prepared)
    } else {
        answer.json(builder, prepared).await
    }
}
