//! Golden tests of the [`Tracker`]: status messages in, events in brief out.

use std::time::{Duration, SystemTime};

use super::model::{
    Event, LogChunk, StatusUpdate, VertexStatusUpdate, VertexUpdate, WarningUpdate,
};
use super::tracker::{Tracker, MAX_PARTIAL_LINE};

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
