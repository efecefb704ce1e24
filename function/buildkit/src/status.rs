//! BuildKit's `StatusResponse` messages as the progress tracker's input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::progress::{LogChunk, StatusUpdate, VertexStatusUpdate, VertexUpdate, WarningUpdate};
use crate::proto::control::StatusResponse;

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

/// A protobuf timestamp as `SystemTime`; Go's zero time (year 1) and anything before the epoch
/// count as unset.
fn time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}
