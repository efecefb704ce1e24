//! What `build` shows while it waits. On a terminal: the log scrolls above one live line with a
//! spinner, the elapsed time, a bar of Dockerfile steps (`[n/m]`) and the current step, or the
//! upload's bytes while the context is sent. Otherwise (a pipe, a CI log, `--progress plain`): the
//! log lines as the builder sent them, nothing else.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the spinner and elapsed time redraw.
const TICK: Duration = Duration::from_millis(120);

/// `--progress`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Progress {
    /// Live on a terminal, plain otherwise.
    Auto,
    /// One line per log line, as sent.
    Plain,
}

/// The build's output on stdout.
pub(crate) struct Display {
    live: Option<ProgressBar>,
    /// The live line shows the build (not the upload) since the first log line.
    building: bool,
    /// The live line has a bar of numbered steps.
    steps: bool,
    screen: Screen,
}

/// What the terminal shows of the log, line by line: a pure function of the lines so far.
#[derive(Default)]
struct Screen {
    /// Steps per stage (stage name, `""` when unnamed).
    totals: HashMap<String, u64>,
    started: HashSet<(String, u64)>,
    done: HashSet<(String, u64)>,
    /// Started and not done, oldest first: the newest is on the live line.
    running: Vec<((String, u64), String)>,
    /// Stage lines already shown: two vertices with the same name (`[internal] load metadata`
    /// for each stage of one base) read as one repeated line.
    shown: HashSet<String>,
    /// The image the builder pushes once the export ends (none for `--skip-push`).
    push: Option<String>,
}

/// What one log line changes on a terminal.
#[derive(Debug, Default, PartialEq, Eq)]
struct Update {
    /// Scroll the line above the live line (false for a repeat).
    print: bool,
    /// Steps done out of all steps known, for the bar.
    bar: Option<(u64, u64)>,
    /// The live line's new text.
    message: Option<String>,
}

impl Screen {
    /// Steps are numbered per stage (`[builder 2/5]`, `[stage-1 1/2]`) and stages run in
    /// parallel: the bar counts the steps done out of all the stages' steps, so it only moves
    /// forward. A start or end line seen before is not shown again (the `CACHED` line after a
    /// base image's end line, a `FROM` shared by two stages).
    fn update(&mut self, text: &str) -> Update {
        if let Some(step) = Step::parse(text) {
            let key = (step.stage.to_owned(), step.index);
            self.totals.insert(step.stage.to_owned(), step.total);
            let new = if step.done {
                self.running.retain(|(k, _)| *k != key);
                self.done.insert(key)
            } else if self.done.contains(&key) || !self.started.insert(key.clone()) {
                false
            } else {
                self.running.push((key, step.name.to_owned()));
                true
            };
            if !new {
                return Update::default();
            }
            let message = match self.running.last() {
                Some((_, running)) => running.clone(),
                None => step.name.to_owned(),
            };
            return Update {
                print: true,
                bar: Some((self.done.len() as u64, self.total())),
                message: Some(message),
            };
        }
        let mut update = Update {
            print: true,
            ..Update::default()
        };
        if !is_stage(text) {
            return update;
        }
        if !self.shown.insert(text.to_owned()) {
            return Update::default();
        }
        let ended = ends_with_duration(text);
        if text.starts_with("exporting to ") {
            // Every step is done once the export runs, also those a shared FROM stood for.
            let total = self.total();
            if total > 0 {
                update.bar = Some((total, total));
            }
            if let (true, Some(image)) = (ended, &self.push) {
                update.message = Some(format!("pushing {image}"));
            }
        }
        if !ended {
            update.message = Some(text.to_owned());
        }
        update
    }

    fn total(&self) -> u64 {
        self.totals.values().sum()
    }
}

impl Display {
    pub(crate) fn new(progress: Progress) -> Self {
        let tty = progress == Progress::Auto
            && std::io::stdout().is_terminal()
            && std::env::var("TERM").map_or(true, |term| term != "dumb");
        let live = tty.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            bar.set_style(spinner_style());
            bar.set_message("sending the build context");
            bar.enable_steady_tick(TICK);
            bar
        });
        Self {
            live,
            building: false,
            steps: false,
            screen: Screen::default(),
        }
    }

    /// The builder pushes `image` after the export: the live line says so while it does.
    pub(crate) fn pushes(&mut self, image: Option<String>) {
        self.screen.push = image;
    }

    /// A handle for counting uploaded bytes, on a terminal.
    pub(crate) fn upload(&self, total: u64) -> Option<ProgressBar> {
        let bar = self.live.as_ref()?;
        bar.set_length(total);
        bar.set_style(bytes_style());
        Some(bar.clone())
    }

    /// Shows one log line (`<RFC3339> <text>` as the builder renders it).
    pub(crate) fn line(&mut self, line: &str) {
        let Some(bar) = &self.live else {
            println!("{line}");
            return;
        };
        let text = strip_time(line);
        if !self.building {
            self.building = true;
            bar.set_style(spinner_style());
            bar.unset_length();
            bar.set_position(0);
        }
        let update = self.screen.update(text);
        if update.print {
            bar.println(text);
        }
        if let Some((done, total)) = update.bar {
            if !self.steps {
                self.steps = true;
                bar.set_style(steps_style());
            }
            bar.set_length(total);
            bar.set_position(done);
        }
        if let Some(message) = update.message {
            bar.set_message(message);
        }
    }

    /// Prints a message of our own (not a log line), and shows it on the live line.
    pub(crate) fn note(&mut self, message: &str) {
        match &self.live {
            Some(bar) => {
                bar.println(message);
                bar.set_message(message.to_owned());
            }
            None => println!("{message}"),
        }
    }

    /// Removes the live line, leaving the log and what is printed next.
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.live.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.finish();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}").expect("a valid template")
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {elapsed:>4} [{bar:24}] {bytes}/{total_bytes} {wide_msg}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

fn steps_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:24}] {pos}/{len} {wide_msg}")
        .expect("a valid template")
        .progress_chars("=> ")
}

/// The text after the builder's RFC 3339 time stamp.
fn strip_time(line: &str) -> &str {
    match line.split_once(' ') {
        Some((time, text))
            if time.len() >= 20 && time.as_bytes()[4] == b'-' && time.ends_with('Z') =>
        {
            text
        }
        _ => line,
    }
}

/// Lines that start a stage outside the Dockerfile's numbered steps.
fn is_stage(text: &str) -> bool {
    text.starts_with("[internal] ")
        || text.starts_with("exporting to ")
        || text.starts_with("pushing ")
        || text.starts_with("naming to ")
}

/// A numbered Dockerfile step: `[stage n/m] INSTRUCTION`, `CACHED [n/m] …`, or its end line
/// with the duration after it.
#[derive(Debug, PartialEq, Eq)]
struct Step<'a> {
    /// The stage's name, `""` for an unnamed single stage (`[2/3]`).
    stage: &'a str,
    index: u64,
    total: u64,
    name: &'a str,
    done: bool,
}

impl<'a> Step<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (cached, rest) = match text.strip_prefix("CACHED ") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let inner = rest.strip_prefix('[')?;
        let (head, _) = inner.split_once(']')?;
        // `[2/3]` or `[builder 2/3]`.
        let (stage, counts) = head.rsplit_once(' ').unwrap_or(("", head));
        let (index, total) = counts.split_once('/')?;
        let (index, total): (u64, u64) = (index.parse().ok()?, total.parse().ok()?);
        if index == 0 || index > total {
            return None;
        }
        Some(Step {
            stage,
            index,
            total,
            name: rest,
            done: cached || ends_with_duration(rest),
        })
    }
}

/// A vertex's end line: its name, then the seconds it took (`0.53s`).
fn ends_with_duration(text: &str) -> bool {
    text.rsplit_once(' ')
        .and_then(|(_, last)| last.strip_suffix('s'))
        .is_some_and(|secs| secs.contains('.') && secs.parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_read_from_the_builder_log() {
        let step = |stage, index, total, name, done| {
            Some(Step {
                stage,
                index,
                total,
                name,
                done,
            })
        };
        assert_eq!(
            Step::parse("[2/3] RUN make"),
            step("", 2, 3, "[2/3] RUN make", false)
        );
        assert_eq!(
            Step::parse("[2/3] RUN make 0.53s"),
            step("", 2, 3, "[2/3] RUN make 0.53s", true)
        );
        assert_eq!(
            Step::parse("CACHED [build 3/5] COPY . ."),
            step("build", 3, 5, "[build 3/5] COPY . .", true)
        );
        // A RUN whose command ends in something like a duration is still running.
        assert_eq!(
            Step::parse("[1/2] RUN sleep 5s"),
            step("", 1, 2, "[1/2] RUN sleep 5s", false)
        );
        for other in [
            "[internal] load build context",
            "hello",
            "[0/3] x",
            "[4/3] x",
            "[a/b] x",
        ] {
            assert_eq!(Step::parse(other), None, "{other}");
        }
    }

    /// A two-stage build as dockerd 20.10's BuildKit logs it: stages numbered on their own, a
    /// base image shared by both stages shown once, then the push.
    #[test]
    fn the_bar_only_moves_forward_and_repeats_are_not_shown() {
        let log = [
            "[internal] load metadata for reg/busybox:latest",
            "[internal] load metadata for reg/busybox:latest 0.00s",
            "[internal] load metadata for reg/busybox:latest",
            "[internal] load metadata for reg/busybox:latest 0.00s",
            "[b 1/2] FROM reg/busybox:latest",
            "[b 1/2] FROM reg/busybox:latest 0.00s",
            "CACHED [b 1/2] FROM reg/busybox:latest",
            "[b 2/2] RUN sleep 2",
            "[a 2/2] RUN sleep 1",
            "one",
            "[a 2/2] RUN sleep 1 1.18s",
            "[stage-2 2/4] COPY --from=a /one /one",
            "[stage-2 2/4] COPY --from=a /one /one 0.01s",
            "[b 2/2] RUN sleep 2 2.08s",
            "exporting to image",
            "exporting layers done",
            "exporting to image 0.01s",
        ];
        let mut screen = Screen {
            push: Some("reg/x:1".into()),
            ..Screen::default()
        };
        let mut shown = Vec::new();
        for text in log {
            let update = screen.update(text);
            let bar = update
                .bar
                .map_or(String::new(), |(d, t)| format!("{d}/{t}"));
            let message = update.message.unwrap_or_default();
            if update.print {
                shown.push(format!("{text} | {bar} | {message}"));
            }
        }
        assert_eq!(
            shown,
            [
                "[internal] load metadata for reg/busybox:latest |  | [internal] load metadata for reg/busybox:latest",
                "[internal] load metadata for reg/busybox:latest 0.00s |  | ",
                "[b 1/2] FROM reg/busybox:latest | 0/2 | [b 1/2] FROM reg/busybox:latest",
                "[b 1/2] FROM reg/busybox:latest 0.00s | 1/2 | [b 1/2] FROM reg/busybox:latest 0.00s",
                "[b 2/2] RUN sleep 2 | 1/2 | [b 2/2] RUN sleep 2",
                "[a 2/2] RUN sleep 1 | 1/4 | [a 2/2] RUN sleep 1",
                "one |  | ",
                "[a 2/2] RUN sleep 1 1.18s | 2/4 | [b 2/2] RUN sleep 2",
                "[stage-2 2/4] COPY --from=a /one /one | 2/8 | [stage-2 2/4] COPY --from=a /one /one",
                "[stage-2 2/4] COPY --from=a /one /one 0.01s | 3/8 | [b 2/2] RUN sleep 2",
                "[b 2/2] RUN sleep 2 2.08s | 4/8 | [b 2/2] RUN sleep 2 2.08s",
                "exporting to image | 8/8 | exporting to image",
                "exporting layers done |  | ",
                "exporting to image 0.01s | 8/8 | pushing reg/x:1",
            ]
        );
    }

    #[test]
    fn the_time_stamp_is_dropped_on_a_terminal() {
        assert_eq!(
            strip_time("2026-01-02T03:04:05Z [1/2] FROM x"),
            "[1/2] FROM x"
        );
        assert_eq!(strip_time("2026-01-02T03:04:05.123Z hello"), "hello");
        assert_eq!(strip_time("plain text here"), "plain text here");
    }
}
