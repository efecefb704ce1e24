//! What `build` shows while it waits. On a terminal: the log scrolls above one live line with a
//! spinner, the elapsed time, a bar of Dockerfile steps (`[n/m]`) and the current step, or the
//! upload's bytes while the context is sent. Otherwise (a pipe, a CI log, `--progress plain`): the
//! log lines as the builder sent them, nothing else.

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
        }
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
        bar.println(text);
        if !self.building {
            self.building = true;
            bar.set_style(spinner_style());
            bar.unset_length();
            bar.set_position(0);
        }
        if let Some(step) = Step::parse(text) {
            if !self.steps {
                self.steps = true;
                bar.set_style(steps_style());
            }
            bar.set_length(step.total);
            bar.set_position(if step.done {
                step.index
            } else {
                step.index - 1
            });
            bar.set_message(step.name.to_owned());
        } else if is_stage(text) && !ends_with_duration(text) {
            bar.set_message(text.to_owned());
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
        let counts = head.rsplit(' ').next()?;
        let (index, total) = counts.split_once('/')?;
        let (index, total): (u64, u64) = (index.parse().ok()?, total.parse().ok()?);
        if index == 0 || index > total {
            return None;
        }
        Some(Step {
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
        let step = |index, total, name, done| {
            Some(Step {
                index,
                total,
                name,
                done,
            })
        };
        assert_eq!(
            Step::parse("[2/3] RUN make"),
            step(2, 3, "[2/3] RUN make", false)
        );
        assert_eq!(
            Step::parse("[2/3] RUN make 0.53s"),
            step(2, 3, "[2/3] RUN make 0.53s", true)
        );
        assert_eq!(
            Step::parse("CACHED [build 3/5] COPY . ."),
            step(3, 5, "[build 3/5] COPY . .", true)
        );
        // A RUN whose command ends in something like a duration is still running.
        assert_eq!(
            Step::parse("[1/2] RUN sleep 5s"),
            step(1, 2, "[1/2] RUN sleep 5s", false)
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
