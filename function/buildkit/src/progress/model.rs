//! The progress model: one status message as the daemon sent it, and the [`Event`]s the
//! [`super::Tracker`] merges such messages into.

use std::time::{Duration, SystemTime};

/// One `StatusResponse`, converted from protobuf by the caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StatusUpdate {
    pub(crate) vertexes: Vec<VertexUpdate>,
    pub(crate) statuses: Vec<VertexStatusUpdate>,
    pub(crate) logs: Vec<LogChunk>,
    pub(crate) warnings: Vec<WarningUpdate>,
}

/// A build step's state as the daemon last saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct VertexUpdate {
    pub(crate) digest: String,
    pub(crate) name: String,
    pub(crate) cached: bool,
    pub(crate) started: Option<SystemTime>,
    pub(crate) completed: Option<SystemTime>,
    pub(crate) error: String,
}

/// A progress counter of a step (a transfer, a layer push); counters are byte counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct VertexStatusUpdate {
    pub(crate) id: String,
    pub(crate) vertex: String,
    pub(crate) name: String,
    pub(crate) current: i64,
    pub(crate) total: i64,
    pub(crate) timestamp: Option<SystemTime>,
    pub(crate) started: Option<SystemTime>,
    pub(crate) completed: Option<SystemTime>,
}

/// Output of a step: an arbitrary piece of a stream, not aligned to lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LogChunk {
    pub(crate) vertex: String,
    pub(crate) timestamp: Option<SystemTime>,
    /// 1 for stdout, 2 for stderr.
    pub(crate) stream: i64,
    pub(crate) data: Vec<u8>,
}

/// A warning about a step (e.g. a Dockerfile lint).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WarningUpdate {
    pub(crate) vertex: String,
    pub(crate) short: String,
}

/// Something that happened during a build, in the order it should be shown. Times are the
/// daemon's; where it gave none, the last time known for the step, else the local clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A step started (again, if it had completed before).
    VertexStarted {
        digest: String,
        name: String,
        at: SystemTime,
    },
    /// A step completed; `duration` is measured from its most recent start.
    VertexCompleted {
        digest: String,
        name: String,
        at: SystemTime,
        duration: Duration,
    },
    /// A step's result came from the cache.
    VertexCached {
        digest: String,
        name: String,
        at: SystemTime,
    },
    /// A step failed; `canceled` when it was only stopped because the build was canceled.
    VertexFailed {
        digest: String,
        name: String,
        at: SystemTime,
        error: String,
        canceled: bool,
    },
    /// A step's progress counter, keyed by (`vertex`, `id`); in-progress values are throttled.
    /// `started` is when the daemon began it, where it said: a counter that starts and ends
    /// between two status messages arrives only once, already completed.
    Status {
        vertex: String,
        id: String,
        current: i64,
        total: i64,
        at: SystemTime,
        started: Option<SystemTime>,
        completed: bool,
    },
    /// One line of a step's output (`stream` 1 is stdout, 2 stderr), without its line ending.
    Log {
        vertex: String,
        vertex_name: String,
        stream: i64,
        line: String,
        at: SystemTime,
    },
    /// A warning about a step.
    Warning {
        vertex: String,
        message: String,
        at: SystemTime,
    },
}
