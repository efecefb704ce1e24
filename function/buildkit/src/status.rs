//! A build's Status stream: BuildKit's `StatusResponse` messages read as they come, merged into
//! events for the caller and into the build's step log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::progress::{
    Event, LogChunk, StatusUpdate, Tracker, VertexStatusUpdate, VertexUpdate, WarningUpdate,
};
use crate::proto::control::{StatusRequest, StatusResponse};
use crate::steps::{lock, StepLog};
use crate::Client;

impl From<StatusResponse> for StatusUpdate {
    fn from(resp: StatusResponse) -> Self {
        Self {
            vertexes: resp
                .vertexes
                .into_iter()
                .map(|v| VertexUpdate {
                    digest: v.digest,
                    name: v.name,
                    cached: v.cached,
                    started: time(v.started),
                    completed: time(v.completed),
                    error: v.error,
                })
                .collect(),
            statuses: resp
                .statuses
                .into_iter()
                .map(|s| VertexStatusUpdate {
                    id: s.id,
                    vertex: s.vertex,
                    name: s.name,
                    current: s.current,
                    total: s.total,
                    timestamp: time(s.timestamp),
                    started: time(s.started),
                    completed: time(s.completed),
                })
                .collect(),
            logs: resp
                .logs
                .into_iter()
                .map(|l| LogChunk {
                    vertex: l.vertex,
                    timestamp: time(l.timestamp),
                    stream: l.stream,
                    data: l.msg,
                })
                .collect(),
            warnings: resp
                .warnings
                .into_iter()
                .map(|w| WarningUpdate {
                    vertex: w.vertex,
                    short: String::from_utf8_lossy(&w.short).into_owned(),
                })
                .collect(),
        }
    }
}

/// Reads the build's status stream into `events`, keeping the step log as it goes.
pub(crate) async fn follow_status(
    client: Client,
    build_ref: String,
    events: mpsc::Sender<Event>,
    log: Arc<Mutex<StepLog>>,
) {
    let mut stream = match client
        .control
        .clone()
        .status(StatusRequest { r#ref: build_ref })
        .await
    {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            tracing::warn!(
                message = status.message(),
                "could not follow the build's status"
            );
            return;
        }
    };
    let mut tracker = Tracker::new();
    // Bounded: a slow reader holds the status stream back instead of queueing without limit.
    let deliver = |batch: Vec<Event>| {
        let (events, log) = (&events, &log);
        async move {
            for event in batch {
                lock(log).observe(&event);
                // A reader that went away still lets the build finish.
                let _ = events.send(event).await;
            }
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(update)) => deliver(tracker.update(update.into())).await,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(
                    message = status.message(),
                    "status stream ended with an error"
                );
                break;
            }
        }
    }
    deliver(tracker.finish()).await;
}

/// A protobuf timestamp as `SystemTime`; Go's zero time (year 1) and anything before the epoch
/// count as unset.
fn time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}
