//! Progress events as Builder API log lines: `<RFC3339 UTC, seconds> <text>`, e.g.
//! `2022-06-23T09:10:13Z exporting to image 5.18s`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::progress::Event;

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// The log line for `event`, or `None` for an event that is not shown (a counter still moving).
///
/// Counters are shown once, when done. BuildKit's counters are always byte counts (file sync,
/// layer pulls and pushes; buildctl formats every one as bytes), so a counter with a value is
/// written as a decimal size like buildctl's: `transferring context: 1.23kB done`, or
/// `sha256:… 1.20MB / 3.40MB done` when it stopped short of its total. A counter with neither a
/// value nor a total marks a one-off step and is written without one: `exporting layers done`.
pub fn render(event: &Event) -> Option<String> {
    let (at, text) = match event {
        Event::VertexStarted { name, at, .. } => (at, name.clone()),
        Event::VertexCompleted {
            name, at, duration, ..
        } => (at, format!("{name} {:.2}s", duration.as_secs_f64())),
        Event::VertexCached { name, at, .. } => (at, format!("CACHED {name}")),
        Event::VertexFailed {
            name,
            at,
            canceled: true,
            ..
        } => (at, format!("CANCELED {name}")),
        Event::VertexFailed {
            name, at, error, ..
        } => (at, format!("ERROR {name}: {error}")),
        Event::Status {
            completed: false, ..
        } => return None,
        Event::Status {
            id,
            current,
            total,
            at,
            ..
        } => (at, counter(id, *current, *total)),
        Event::Log { line, at, .. } => (at, line.clone()),
        Event::Warning { message, at, .. } => (at, format!("WARN: {message}")),
    };
    Some(log_line(*at, &text))
}

/// A Builder API log line: `<RFC3339 UTC, seconds> <text>`, the one shape of every line of a
/// build's log, the daemon's and the builder's own.
pub fn log_line(at: SystemTime, text: &str) -> String {
    format!("{} {text}", timestamp(at))
}

fn counter(id: &str, current: i64, total: i64) -> String {
    match (current, total) {
        (0, 0) => format!("{id} done"),
        (current, total) if total > 0 && current != total => {
            format!("{id} {} / {} done", bytes(current), bytes(total))
        }
        (current, _) => format!("{id} {} done", bytes(current)),
    }
}

/// A byte count in decimal SI units with two decimals, as Go's `units.Bytes` prints with `%.2f`
/// (`123B`, `1.23kB`, `3.40MB`); below 1000 the plain count (where Go would print `02B`).
fn bytes(n: i64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let magnitude = n.unsigned_abs();
    let mut unit = 0;
    let mut base = 1u64;
    while unit + 1 < UNITS.len() && magnitude >= base * 1000 {
        base *= 1000;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n}B");
    }
    format!("{:.2}{}", n as f64 / base as f64, UNITS[unit])
}

/// `at` to the second, in UTC; times RFC 3339 cannot write are clamped to its range.
fn timestamp(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(LAST_RFC3339_SECOND);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{
        LogChunk, StatusUpdate, Tracker, VertexStatusUpdate, VertexUpdate, WarningUpdate,
    };

    fn t(ms: u64) -> SystemTime {
        humantime::parse_rfc3339("2026-01-02T03:04:05Z").unwrap() + Duration::from_millis(ms)
    }

    fn vertex(
        digest: &str,
        name: &str,
        started: Option<u64>,
        completed: Option<u64>,
    ) -> VertexUpdate {
        let (started, completed) = (started.map(t), completed.map(t));
        VertexUpdate {
            digest: digest.into(),
            name: name.into(),
            started,
            completed,
            ..VertexUpdate::default()
        }
    }

    fn status(
        vertex: &str,
        id: &str,
        current: i64,
        total: i64,
        at: u64,
        done: bool,
    ) -> VertexStatusUpdate {
        let (timestamp, completed) = (Some(t(at)), done.then(|| t(at)));
        VertexStatusUpdate {
            vertex: vertex.into(),
            id: id.into(),
            current,
            total,
            timestamp,
            completed,
            ..Default::default()
        }
    }

    fn log(vertex: &str, stream: i64, data: &str, at: u64) -> LogChunk {
        LogChunk {
            vertex: vertex.into(),
            stream,
            data: data.into(),
            timestamp: Some(t(at)),
        }
    }

    #[test]
    fn sizes_read_like_buildkit() {
        let cases = [
            (0, "0B"),
            (123, "123B"),
            (999, "999B"),
            (1000, "1.00kB"),
            (1234, "1.23kB"),
        ];
        let more = [
            (3_400_000, "3.40MB"),
            (-2500, "-2.50kB"),
            (i64::MAX, "9.22EB"),
            (i64::MIN, "-9.22EB"),
        ];
        for (n, want) in cases.into_iter().chain(more) {
            assert_eq!(bytes(n), want, "{n}");
        }
    }

    #[test]
    fn every_event_has_its_line() {
        let (digest, name, at) = (String::new(), "[2/3] RUN false".to_owned(), t(999));
        let error =
            "process \"/bin/sh -c false\" did not complete successfully: exit code: 1".to_owned();
        let status = |id: &str, current, total, completed| Event::Status {
            vertex: String::new(),
            id: id.into(),
            current,
            total,
            at,
            started: None,
            completed,
        };
        let cases = [
            (Event::VertexStarted { digest: digest.clone(), name: name.clone(), at }, Some("[2/3] RUN false")),
            (
                Event::VertexCompleted {
                    digest: digest.clone(),
                    name: name.clone(),
                    at,
                    duration: Duration::from_millis(5),
                },
                Some("[2/3] RUN false 0.01s"),
            ),
            (Event::VertexCached { digest: digest.clone(), name: name.clone(), at }, Some("CACHED [2/3] RUN false")),
            (
                Event::VertexFailed { digest: digest.clone(), name: name.clone(), at, error, canceled: false },
                Some("ERROR [2/3] RUN false: process \"/bin/sh -c false\" did not complete successfully: exit code: 1"),
            ),
            (
                Event::VertexFailed { digest, name, at, error: "context canceled".into(), canceled: true },
                Some("CANCELED [2/3] RUN false"),
            ),
            (status("transferring context:", 12, 0, false), None),
            (status("transferring context:", 1234, 0, true), Some("transferring context: 1.23kB done")),
            (status("sha256:aa", 1_200_000, 3_400_000, true), Some("sha256:aa 1.20MB / 3.40MB done")),
            (status("pushing layers", 0, 0, true), Some("pushing layers done")),
            (
                Event::Log { vertex: String::new(), vertex_name: String::new(), stream: 2, line: "oops".into(), at },
                Some("oops"),
            ),
            (Event::Warning { vertex: String::new(), message: "FromAsCasing".into(), at }, Some("WARN: FromAsCasing")),
        ];
        for (event, want) in cases {
            let want = want.map(|text| format!("2026-01-02T03:04:05Z {text}"));
            assert_eq!(render(&event), want, "{event:?}");
        }
    }

    #[test]
    fn times_outside_rfc3339_are_clamped_not_a_panic() {
        let event = |at| Event::Warning {
            vertex: String::new(),
            message: "w".into(),
            at,
        };
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(render(&event(far)).unwrap(), "9999-12-31T23:59:59Z WARN: w");
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            render(&event(before)).unwrap(),
            "1970-01-01T00:00:00Z WARN: w"
        );
    }

    /// A small build, message by message as BuildKit sends them:
    /// `FROM alpine:3.19`, `RUN echo hello; echo warn >&2; printf done`, `COPY app.sh /`.
    fn small_build() -> Vec<StatusUpdate> {
        let (def, ignore, meta, from, ctx, run, copy, export) = (
            "sha256:d1",
            "sha256:d2",
            "sha256:d3",
            "sha256:d4",
            "sha256:d5",
            "sha256:d6",
            "sha256:d7",
            "sha256:d8",
        );
        let from_name = "[1/3] FROM docker.io/library/alpine:3.19@sha256:c5b1261d";
        let run_name = "[2/3] RUN echo hello; echo warn >&2; printf done";
        let layer = "sha256:4abcf2066143";
        let pending = |digest, name| vertex(digest, name, None, None);
        let update = |vertexes, statuses, logs| StatusUpdate {
            vertexes,
            statuses,
            logs,
            warnings: Vec::new(),
        };
        vec![
            update(
                vec![vertex(
                    def,
                    "[internal] load build definition from Dockerfile",
                    Some(0),
                    None,
                )],
                vec![],
                vec![],
            ),
            update(
                vec![],
                vec![status(def, "transferring dockerfile:", 0, 0, 10, false)],
                vec![],
            ),
            StatusUpdate {
                vertexes: vec![vertex(
                    def,
                    "[internal] load build definition from Dockerfile",
                    Some(0),
                    Some(40),
                )],
                statuses: vec![status(def, "transferring dockerfile:", 120, 0, 30, true)],
                warnings: vec![WarningUpdate {
                    vertex: def.into(),
                    short: "FromAsCasing: 'as' and 'FROM' differ".into(),
                }],
                logs: vec![],
            },
            update(
                vec![vertex(
                    ignore,
                    "[internal] load .dockerignore",
                    Some(50),
                    Some(80),
                )],
                vec![status(ignore, "transferring context:", 2, 0, 70, true)],
                vec![],
            ),
            update(
                vec![vertex(
                    meta,
                    "[internal] load metadata for docker.io/library/alpine:3.19",
                    Some(90),
                    None,
                )],
                vec![],
                vec![],
            ),
            update(
                vec![vertex(
                    meta,
                    "[internal] load metadata for docker.io/library/alpine:3.19",
                    Some(90),
                    Some(1320),
                )],
                vec![],
                vec![],
            ),
            update(
                vec![
                    pending(from, from_name),
                    pending(ctx, "[internal] load build context"),
                    pending(run, run_name),
                ],
                vec![],
                vec![],
            ),
            update(
                vec![
                    vertex(from, from_name, Some(1400), None),
                    vertex(ctx, "[internal] load build context", Some(1400), None),
                    pending(copy, "[3/3] COPY app.sh /"),
                ],
                vec![
                    status(
                        from,
                        "resolve docker.io/library/alpine:3.19@sha256:c5b1261d",
                        0,
                        0,
                        1410,
                        true,
                    ),
                    status(from, layer, 0, 3_400_000, 1420, false),
                    status(ctx, "transferring context:", 1234, 0, 1450, false),
                ],
                vec![],
            ),
            update(
                vec![],
                vec![status(from, layer, 100_000, 3_400_000, 1500, false)],
                vec![],
            ),
            update(
                vec![vertex(
                    ctx,
                    "[internal] load build context",
                    Some(1400),
                    Some(1460),
                )],
                vec![
                    status(from, layer, 1_000_000, 3_400_000, 1600, false),
                    status(ctx, "transferring context:", 1234, 0, 1455, true),
                ],
                vec![],
            ),
            update(
                vec![vertex(from, from_name, Some(1400), Some(2010))],
                vec![
                    status(from, layer, 3_400_000, 3_400_000, 1900, true),
                    status(from, &format!("extracting {layer}"), 0, 0, 2000, true),
                ],
                vec![],
            ),
            update(
                vec![vertex(run, run_name, Some(2020), None)],
                vec![],
                vec![log(run, 1, "hello\n", 2300)],
            ),
            update(
                vec![],
                vec![],
                vec![log(run, 2, "warn\r\n", 2310), log(run, 1, "do", 2320)],
            ),
            update(
                vec![vertex(run, run_name, Some(2020), Some(2550))],
                vec![],
                vec![log(run, 1, "ne", 2330)],
            ),
            update(
                vec![VertexUpdate {
                    cached: true,
                    ..vertex(copy, "[3/3] COPY app.sh /", Some(2560), Some(2560))
                }],
                vec![],
                vec![],
            ),
            update(
                vec![vertex(export, "exporting to image", Some(2570), None)],
                vec![],
                vec![],
            ),
            update(
                vec![vertex(export, "exporting to image", Some(2570), Some(3080))],
                vec![
                    status(export, "exporting layers", 0, 0, 2900, true),
                    status(export, "writing image sha256:9f0e1d2c", 0, 0, 3000, true),
                    status(
                        export,
                        "naming to docker.io/library/app:latest",
                        0,
                        0,
                        3070,
                        true,
                    ),
                ],
                vec![],
            ),
            update(
                vec![vertex(export, "exporting to image", Some(2570), Some(3080))],
                vec![],
                vec![],
            ),
        ]
    }

    #[test]
    fn a_small_build_renders_as_the_builder_api_log() {
        let mut tracker = Tracker::with_clock(|| panic!("every message carries its time"));
        let mut events: Vec<Event> = small_build()
            .into_iter()
            .flat_map(|update| tracker.update(update))
            .collect();
        events.extend(tracker.finish());
        let lines: Vec<String> = events.iter().filter_map(render).collect();
        let expected = [
            "2026-01-02T03:04:05Z [internal] load build definition from Dockerfile",
            "2026-01-02T03:04:05Z transferring dockerfile: 120B done",
            "2026-01-02T03:04:05Z WARN: FromAsCasing: 'as' and 'FROM' differ",
            "2026-01-02T03:04:05Z [internal] load build definition from Dockerfile 0.04s",
            "2026-01-02T03:04:05Z [internal] load .dockerignore",
            "2026-01-02T03:04:05Z transferring context: 2B done",
            "2026-01-02T03:04:05Z [internal] load .dockerignore 0.03s",
            "2026-01-02T03:04:05Z [internal] load metadata for docker.io/library/alpine:3.19",
            "2026-01-02T03:04:06Z [internal] load metadata for docker.io/library/alpine:3.19 1.23s",
            "2026-01-02T03:04:06Z [1/3] FROM docker.io/library/alpine:3.19@sha256:c5b1261d",
            "2026-01-02T03:04:06Z [internal] load build context",
            "2026-01-02T03:04:06Z resolve docker.io/library/alpine:3.19@sha256:c5b1261d done",
            "2026-01-02T03:04:06Z transferring context: 1.23kB done",
            "2026-01-02T03:04:06Z [internal] load build context 0.06s",
            "2026-01-02T03:04:06Z sha256:4abcf2066143 3.40MB done",
            "2026-01-02T03:04:07Z extracting sha256:4abcf2066143 done",
            "2026-01-02T03:04:07Z [1/3] FROM docker.io/library/alpine:3.19@sha256:c5b1261d 0.61s",
            "2026-01-02T03:04:07Z [2/3] RUN echo hello; echo warn >&2; printf done",
            "2026-01-02T03:04:07Z hello",
            "2026-01-02T03:04:07Z warn",
            "2026-01-02T03:04:07Z done",
            "2026-01-02T03:04:07Z [2/3] RUN echo hello; echo warn >&2; printf done 0.53s",
            "2026-01-02T03:04:07Z CACHED [3/3] COPY app.sh /",
            "2026-01-02T03:04:07Z exporting to image",
            "2026-01-02T03:04:07Z exporting layers done",
            "2026-01-02T03:04:08Z writing image sha256:9f0e1d2c done",
            "2026-01-02T03:04:08Z naming to docker.io/library/app:latest done",
            "2026-01-02T03:04:08Z exporting to image 0.51s",
        ];
        for (n, (line, want)) in lines.iter().zip(expected).enumerate() {
            assert_eq!(line, want, "line {n}");
        }
        assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    }
}
