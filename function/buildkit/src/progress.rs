//! A build's progress: BuildKit's status messages merged into typed events, by the rules of
//! BuildKit's own printer (`util/progress/progressui`): vertices keyed by digest, statuses by
//! (vertex, ID), logs appended per (vertex, stream) and split into lines.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

/// A partial log line this long is emitted as it is: a step that draws progress bars with `\r`
/// and never writes a newline would otherwise grow its buffer without bound.
const MAX_PARTIAL_LINE: usize = 64 * 1024;
/// A status in progress is reported again once it moved by this share of its total, or once
/// `MIN_TIME_DELTA` passed (buildctl's plain printer uses the same two thresholds), so that a
/// large transfer does not flood the log.
const MIN_PROGRESS_DELTA: f64 = 0.05;
const MIN_TIME_DELTA: Duration = Duration::from_secs(5);
/// How Go's `context.Canceled` reads at the end of a canceled vertex's error.
const CANCELED_SUFFIX: &str = "context canceled";

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
    Status {
        vertex: String,
        id: String,
        current: i64,
        total: i64,
        at: SystemTime,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Test times are milliseconds after this; the injected clock always says 99000.
    const BASE: Duration = Duration::from_secs(1_767_323_045);

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + BASE + Duration::from_millis(ms)
    }

    /// Feeds `updates` to a fresh tracker and finishes it; each event in brief.
    fn run(updates: Vec<StatusUpdate>) -> Vec<String> {
        let mut tracker = Tracker::with_clock(|| t(99_000));
        let mut events: Vec<Event> = updates
            .into_iter()
            .flat_map(|u| tracker.update(u))
            .collect();
        events.extend(tracker.finish());
        let ms = |at: &SystemTime| at.duration_since(t(0)).unwrap().as_millis();
        let brief = |event: &Event| match event {
            Event::VertexStarted { digest, at, .. } => format!("start {digest} @{}", ms(at)),
            Event::VertexCompleted {
                digest,
                at,
                duration,
                ..
            } => {
                format!("done {digest} {}ms @{}", duration.as_millis(), ms(at))
            }
            Event::VertexCached { digest, at, .. } => format!("cached {digest} @{}", ms(at)),
            Event::VertexFailed {
                digest,
                error,
                canceled,
                at,
                ..
            } => {
                format!("failed {digest} {error:?} canceled={canceled} @{}", ms(at))
            }
            Event::Status {
                id,
                current,
                completed,
                at,
                ..
            } => format!("{id} {current} done={completed} @{}", ms(at)),
            Event::Log {
                vertex,
                vertex_name,
                stream,
                line,
                at,
            } => {
                format!("log {vertex} {vertex_name:?} {stream} {line:?} @{}", ms(at))
            }
            Event::Warning {
                vertex,
                message,
                at,
            } => format!("warn {vertex} {message} @{}", ms(at)),
        };
        events.iter().map(brief).collect()
    }

    fn vertex(digest: &str, started: Option<u64>, completed: Option<u64>) -> VertexUpdate {
        let (started, completed) = (started.map(t), completed.map(t));
        VertexUpdate {
            digest: digest.into(),
            name: "make".into(),
            started,
            completed,
            ..Default::default()
        }
    }

    fn vertices(vertexes: Vec<VertexUpdate>) -> StatusUpdate {
        StatusUpdate {
            vertexes,
            ..Default::default()
        }
    }

    fn chunk(stream: i64, data: &[u8], at: Option<u64>) -> LogChunk {
        LogChunk {
            vertex: "d".into(),
            stream,
            data: data.to_vec(),
            timestamp: at.map(t),
        }
    }

    fn logs(logs: Vec<LogChunk>) -> StatusUpdate {
        StatusUpdate {
            logs,
            ..Default::default()
        }
    }

    #[test]
    fn a_repeated_vertex_message_emits_nothing() {
        let (pending, running, done) = (
            vertex("d", None, None),
            vertex("d", Some(10), None),
            vertex("d", Some(10), Some(530)),
        );
        let events = run(vec![
            vertices(vec![pending.clone()]),
            vertices(vec![running.clone()]),
            vertices(vec![running, pending.clone()]),
            vertices(vec![done.clone()]),
            vertices(vec![done, pending]),
        ]);
        assert_eq!(events, ["start d @10", "done d 520ms @530"]);
    }

    #[test]
    fn a_restart_after_completion_is_a_second_start() {
        let events = run(vec![
            vertices(vec![
                vertex("d", Some(0), Some(100)),
                vertex("d", Some(200), None),
            ]),
            // A start that moves while running is no new start, but the duration counts from it.
            vertices(vec![vertex("d", Some(250), None)]),
            vertices(vec![vertex("d", Some(250), Some(400))]),
        ]);
        assert_eq!(
            events,
            [
                "start d @0",
                "done d 100ms @100",
                "start d @200",
                "done d 150ms @400"
            ]
        );
    }

    #[test]
    fn a_cached_step_reports_only_its_end() {
        let cached = VertexUpdate {
            cached: true,
            ..vertex("d", Some(5), None)
        };
        let done = VertexUpdate {
            completed: Some(t(5)),
            ..cached.clone()
        };
        assert_eq!(
            run(vec![
                vertices(vec![cached]),
                vertices(vec![done.clone()]),
                vertices(vec![done])
            ]),
            ["cached d @5"]
        );
    }

    #[test]
    fn failures_and_cancellations() {
        let failed = VertexUpdate {
            error: "exit code: 2".into(),
            ..vertex("d", Some(0), Some(70))
        };
        // Never started and no time of its own: the clock's time.
        let canceled = VertexUpdate {
            error: "rpc error: context canceled".into(),
            ..vertex("e", None, None)
        };
        assert_eq!(
            run(vec![vertices(vec![failed, canceled])]),
            [
                "start d @0",
                r#"failed d "exit code: 2" canceled=false @70"#,
                r#"failed e "rpc error: context canceled" canceled=true @99000"#
            ]
        );
    }

    #[test]
    fn statuses_are_throttled_until_they_move_or_complete() {
        let status = |current, at, done: bool| StatusUpdate {
            statuses: vec![VertexStatusUpdate {
                vertex: "d".into(),
                id: "sha256:aa".into(),
                current,
                total: 1000,
                timestamp: Some(t(at)),
                completed: done.then(|| t(at)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let updates = [
            (0, 0, false),
            (10, 100, false),
            (49, 200, false),
            (60, 300, false),
            (61, 5300, false),
        ];
        let more = [(62, 5400, false), (1000, 5500, true), (1000, 5600, true)];
        let events = run(updates
            .into_iter()
            .chain(more)
            .map(|(current, at, done)| status(current, at, done))
            .collect());
        let want = [
            "0 done=false @0",
            "60 done=false @300",
            "61 done=false @5300",
            "1000 done=true @5500",
        ];
        assert_eq!(events, want.map(|s| format!("sha256:aa {s}")));
    }

    #[test]
    fn log_lines_span_chunks_and_a_partial_line_is_flushed_when_its_step_ends() {
        let events = run(vec![
            vertices(vec![vertex("d", Some(0), None)]),
            logs(vec![chunk(1, b"hel", Some(10))]),
            logs(vec![
                chunk(1, b"lo\r\nwor", Some(20)),
                chunk(1, b"ld\n\nbye\nno newline", Some(30)),
            ]),
            // Output and the end in one message: the end comes after the output.
            StatusUpdate {
                vertexes: vec![vertex("d", Some(0), Some(50))],
                logs: vec![chunk(1, b" here", Some(40))],
                ..Default::default()
            },
        ]);
        let lines = [
            r#""hello" @10"#,
            r#""world" @20"#,
            r#""" @30"#,
            r#""bye" @30"#,
            r#""no newline here" @30"#,
        ];
        let mut want = vec!["start d @0".to_owned()];
        want.extend(lines.map(|l| format!(r#"log d "make" 1 {l}"#)));
        want.push("done d 50ms @50".into());
        assert_eq!(events, want);
    }

    #[test]
    fn partial_lines_are_flushed_on_finish_in_arrival_order() {
        // An unknown vertex; a chunk without a time gets the vertex's last known time.
        let events = run(vec![
            logs(vec![chunk(1, b"out", Some(5))]),
            logs(vec![chunk(2, b"err", None)]),
        ]);
        assert_eq!(events, [r#"log d "" 1 "out" @5"#, r#"log d "" 2 "err" @5"#]);
    }

    #[test]
    fn stdout_and_stderr_are_split_separately() {
        let events = run(vec![logs(vec![
            chunk(1, b"out one, ", Some(1)),
            chunk(2, b"err one\nerr ", Some(2)),
            chunk(1, b"still out one\n", Some(3)),
            chunk(2, b"two\n", Some(4)),
        ])]);
        let want = [
            r#"2 "err one" @2"#,
            r#"1 "out one, still out one" @1"#,
            r#"2 "err two" @2"#,
        ];
        assert_eq!(events, want.map(|l| format!(r#"log d "" {l}"#)));
    }

    #[test]
    fn output_is_decoded_lossily_even_split_inside_a_character() {
        let e = "é".as_bytes();
        let chunks = vec![
            chunk(1, &e[..1], Some(1)),
            chunk(1, &[&e[1..], b"\n"].concat(), None),
            chunk(1, b"a\xff\n", None),
        ];
        assert_eq!(
            run(vec![logs(chunks)]),
            [r#"log d "" 1 "é" @1"#, "log d \"\" 1 \"a\u{fffd}\" @1"]
        );
    }

    #[test]
    fn an_endless_line_is_cut_at_the_limit() {
        let long = vec![b'x'; MAX_PARTIAL_LINE];
        let events = run(vec![logs(vec![
            chunk(1, &long, Some(1)),
            chunk(1, b"y\n", Some(2)),
        ])]);
        let long = String::from_utf8(long).unwrap();
        assert_eq!(
            events,
            [
                format!(r#"log d "" 1 "{long}" @1"#),
                r#"log d "" 1 "y" @2"#.to_owned()
            ]
        );
    }

    #[test]
    fn starts_come_before_output_and_other_steps_end_first() {
        let events = run(vec![
            vertices(vec![vertex("a", Some(0), None)]),
            StatusUpdate {
                vertexes: vec![vertex("a", Some(0), Some(9)), vertex("d", Some(10), None)],
                logs: vec![chunk(1, b"hi\n", Some(11))],
                warnings: vec![WarningUpdate {
                    vertex: "d".into(),
                    short: "careful".into(),
                }],
                ..Default::default()
            },
        ]);
        assert_eq!(
            events,
            [
                "start a @0",
                "done a 9ms @9",
                "start d @10",
                r#"log d "make" 1 "hi" @11"#,
                "warn d careful @11"
            ]
        );
    }
}
