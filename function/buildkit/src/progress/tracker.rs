//! The merge itself, by the rules of BuildKit's printer: each vertex's intervals of running,
//! throttled status counters, and log chunks cut into lines per (vertex, stream).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use super::model::{Event, LogChunk, StatusUpdate, VertexStatusUpdate, VertexUpdate};

/// A partial log line this long is emitted as it is: a step that draws progress bars with `\r`
/// and never writes a newline would otherwise grow its buffer without bound.
pub(super) const MAX_PARTIAL_LINE: usize = 64 * 1024;
/// A status in progress is reported again once it moved by this share of its total, or once
/// `MIN_TIME_DELTA` passed (buildctl's plain printer uses the same two thresholds), so that a
/// large transfer does not flood the log.
const MIN_PROGRESS_DELTA: f64 = 0.05;
const MIN_TIME_DELTA: Duration = Duration::from_secs(5);
/// How Go's `context.Canceled` reads at the end of a canceled vertex's error.
const CANCELED_SUFFIX: &str = "context canceled";

/// Merges a build's status messages into [`Event`]s.
pub(crate) struct Tracker {
    clock: Box<dyn FnMut() -> SystemTime + Send>,
    vertices: HashMap<String, Vertex>,
    statuses: HashMap<(String, String), Reported>,
    /// Unfinished lines, oldest first, so that flushing keeps their order.
    partials: Vec<Partial>,
}

#[derive(Default)]
struct Vertex {
    name: String,
    /// Start of the most recent interval.
    started: Option<SystemTime>,
    /// The current interval's start was reported (cached steps report only their end).
    announced: bool,
    /// The current interval's end was reported.
    finished: bool,
    /// Latest time seen in any message about this vertex.
    last_seen: Option<SystemTime>,
}

/// What a status was last reported as.
struct Reported {
    current: i64,
    at: SystemTime,
    done: bool,
}

struct Partial {
    vertex: String,
    stream: i64,
    bytes: Vec<u8>,
    /// When the line's first byte arrived.
    at: SystemTime,
}

impl Tracker {
    pub(crate) fn new() -> Self {
        Self::with_clock(SystemTime::now)
    }

    /// A tracker that asks `clock` for the time whenever the daemon gave none.
    pub(crate) fn with_clock(clock: impl FnMut() -> SystemTime + Send + 'static) -> Self {
        Self {
            clock: Box::new(clock),
            vertices: HashMap::new(),
            statuses: HashMap::new(),
            partials: Vec::new(),
        }
    }

    /// Merges one status message. Vertex changes come first, in message order, then statuses, log
    /// lines and warnings; a step's end waits until after those (and its unfinished lines) when
    /// the same message carries a status, output or a warning of that step.
    pub(crate) fn update(&mut self, update: StatusUpdate) -> Vec<Event> {
        let mut events = Vec::new();
        let busy: HashSet<&str> = (update.statuses.iter().map(|s| s.vertex.as_str()))
            .chain(update.logs.iter().map(|l| l.vertex.as_str()))
            .chain(update.warnings.iter().map(|w| w.vertex.as_str()))
            .collect();
        let mut ends = Vec::new();
        for vertex in &update.vertexes {
            if let Some(end) = self.vertex(vertex, &mut events) {
                if busy.contains(vertex.digest.as_str()) {
                    ends.push((vertex.digest.as_str(), end));
                } else {
                    self.flush(Some(&vertex.digest), &mut events);
                    events.push(end);
                }
            }
        }
        for status in &update.statuses {
            self.status(status, &mut events);
        }
        for chunk in &update.logs {
            self.log(chunk, &mut events);
        }
        for warning in &update.warnings {
            let at = self.time(&warning.vertex, None);
            events.push(Event::Warning {
                vertex: warning.vertex.clone(),
                message: warning.short.clone(),
                at,
            });
        }
        for (digest, end) in ends {
            self.flush(Some(digest), &mut events);
            events.push(end);
        }
        events
    }

    /// Emits the lines still waiting for their newline; call once the status stream ended.
    pub(crate) fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.flush(None, &mut events);
        events
    }

    /// Applies a vertex message, pushes its start and returns its end, if any.
    fn vertex(&mut self, update: &VertexUpdate, events: &mut Vec<Event>) -> Option<Event> {
        for t in [update.started, update.completed].into_iter().flatten() {
            self.time(&update.digest, Some(t));
        }
        let state = self.vertices.entry(update.digest.clone()).or_default();
        if !update.name.is_empty() {
            state.name.clone_from(&update.name);
        }
        // BuildKit repeats a vertex's initial (not yet started) message; it does not reset it.
        if state.started.is_some() && update.started.is_none() {
            return None;
        }
        if let Some(started) = update.started.filter(|&s| state.started != Some(s)) {
            // A new start after an end is a new interval; one while running only moves the start.
            if state.started.is_none() || state.finished {
                state.announced = false;
                state.finished = false;
            }
            state.started = Some(started);
        }
        if let Some(at) = state
            .started
            .filter(|_| !state.announced && !update.cached && !state.finished)
        {
            state.announced = true;
            events.push(Event::VertexStarted {
                digest: update.digest.clone(),
                name: state.name.clone(),
                at,
            });
        }
        if state.finished || (update.completed.is_none() && update.error.is_empty()) {
            return None;
        }
        state.finished = true;
        let (digest, name) = (update.digest.clone(), state.name.clone());
        let at = update
            .completed
            .or(state.last_seen)
            .unwrap_or_else(&mut self.clock);
        Some(if !update.error.is_empty() {
            let canceled = update.error.ends_with(CANCELED_SUFFIX);
            Event::VertexFailed {
                digest,
                name,
                at,
                error: update.error.clone(),
                canceled,
            }
        } else if update.cached {
            Event::VertexCached { digest, name, at }
        } else {
            let duration = state
                .started
                .and_then(|s| at.duration_since(s).ok())
                .unwrap_or_default();
            Event::VertexCompleted {
                digest,
                name,
                at,
                duration,
            }
        })
    }

    fn status(&mut self, update: &VertexStatusUpdate, events: &mut Vec<Event>) {
        let at = self.time(
            &update.vertex,
            update.completed.or(update.timestamp).or(update.started),
        );
        let done = update.completed.is_some();
        let key = (update.vertex.clone(), update.id.clone());
        if let Some(last) = self.statuses.get(&key) {
            let moved = if update.total > 0 {
                update.current.abs_diff(last.current) as f64 / update.total as f64
            } else {
                0.0
            };
            let waited = at.duration_since(last.at).unwrap_or_default();
            let repeat = done && last.done;
            let throttled =
                !done && !last.done && moved < MIN_PROGRESS_DELTA && waited < MIN_TIME_DELTA;
            if repeat || throttled {
                return;
            }
        }
        self.statuses.insert(
            key,
            Reported {
                current: update.current,
                at,
                done,
            },
        );
        events.push(Event::Status {
            vertex: update.vertex.clone(),
            id: update.id.clone(),
            current: update.current,
            total: update.total,
            at,
            started: update.started,
            completed: done,
        });
    }

    fn log(&mut self, chunk: &LogChunk, events: &mut Vec<Event>) {
        let at = self.time(&chunk.vertex, chunk.timestamp);
        let name = self
            .vertices
            .get(&chunk.vertex)
            .map(|v| v.name.clone())
            .unwrap_or_default();
        let index = match self
            .partials
            .iter()
            .position(|p| p.vertex == chunk.vertex && p.stream == chunk.stream)
        {
            Some(index) => index,
            None => {
                let (vertex, stream) = (chunk.vertex.clone(), chunk.stream);
                self.partials.push(Partial {
                    vertex,
                    stream,
                    bytes: Vec::new(),
                    at,
                });
                self.partials.len() - 1
            }
        };
        let partial = &mut self.partials[index];
        let mut lines = chunk.data.split(|&b| b == b'\n').peekable();
        while let Some(piece) = lines.next() {
            partial.bytes.extend_from_slice(piece);
            let ended = lines.peek().is_some();
            if ended || partial.bytes.len() >= MAX_PARTIAL_LINE {
                events.push(partial.take_line(name.clone()));
                partial.at = at;
            }
        }
        if partial.bytes.is_empty() {
            self.partials.remove(index);
        }
    }

    /// Emits the unfinished lines of `vertex` (of all vertices for `None`).
    fn flush(&mut self, vertex: Option<&str>, events: &mut Vec<Event>) {
        let vertices = &self.vertices;
        self.partials.retain_mut(|partial| {
            if vertex.is_some_and(|v| v != partial.vertex) {
                return true;
            }
            let name = vertices
                .get(&partial.vertex)
                .map(|v| v.name.clone())
                .unwrap_or_default();
            events.push(partial.take_line(name));
            false
        });
    }

    /// Records `t` as seen for `vertex` and returns it; without one, the vertex's latest known
    /// time, else the clock's.
    fn time(&mut self, vertex: &str, t: Option<SystemTime>) -> SystemTime {
        let state = self.vertices.entry(vertex.to_owned()).or_default();
        if let Some(t) = t {
            state.last_seen = Some(state.last_seen.map_or(t, |seen| seen.max(t)));
            return t;
        }
        state.last_seen.unwrap_or_else(&mut self.clock)
    }
}

impl Partial {
    /// The buffered line, lossily decoded and without a trailing `\r`, leaving the buffer empty.
    fn take_line(&mut self, vertex_name: String) -> Event {
        let bytes = std::mem::take(&mut self.bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(&bytes);
        let line = String::from_utf8_lossy(bytes).into_owned();
        Event::Log {
            vertex: self.vertex.clone(),
            vertex_name,
            stream: self.stream,
            line,
            at: self.at,
        }
    }
}
