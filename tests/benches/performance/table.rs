//! The benchmark's table: one row per measurement, medians with min–max, and each row's ratio
//! to the peer it is measured against in the same run.

use std::fmt::Write as _;

/// What a row's samples are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Seconds (wall or CPU); lower is better.
    Secs,
    /// A rate (MB/s, requests/s); higher is better.
    Rate(&'static str),
    /// A size (MiB) or a count; lower is better.
    Amount(&'static str),
}

/// One measured row.
pub(crate) struct Row {
    pub(crate) section: String,
    pub(crate) name: String,
    pub(crate) samples: Vec<f64>,
    pub(crate) unit: Unit,
    /// Rows (in the same section) this one is compared with, each with its target, e.g. `≤ 0.9×`.
    pub(crate) versus: Vec<(String, String)>,
    pub(crate) note: String,
}

/// All rows, in the order measured.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<Row>,
    section: String,
}

impl Table {
    pub(crate) fn section(&mut self, name: impl Into<String>) {
        self.section = name.into();
    }

    /// Adds a row; returns it for [`Row::versus`] and [`Row::note`].
    pub(crate) fn add(
        &mut self,
        name: impl Into<String>,
        samples: Vec<f64>,
        unit: Unit,
    ) -> &mut Row {
        assert!(!samples.is_empty(), "a row needs samples");
        self.rows.push(Row {
            section: self.section.clone(),
            name: name.into(),
            samples,
            unit,
            versus: Vec::new(),
            note: String::new(),
        });
        self.rows.last_mut().unwrap()
    }

    fn find(&self, section: &str, name: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.section == section && r.name == name)
    }

    /// The table as Markdown, ready for docs/benchmarks.md.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mut section = None;
        for row in &self.rows {
            if section != Some(&row.section) {
                section = Some(&row.section);
                let _ = writeln!(out, "\n**{}**\n", row.section);
                let _ = writeln!(out, "| row | median (min–max) | ratio | target |");
                let _ = writeln!(out, "|---|---|---|---|");
            }
            let (mut ratios, mut targets) = (Vec::new(), Vec::new());
            for (peer, target) in &row.versus {
                ratios.push(match self.find(&row.section, peer) {
                    Some(peer) => format!(
                        "{:.2}× {}",
                        median(&row.samples) / median(&peer.samples),
                        peer.name
                    ),
                    None => format!("(no row {peer:?})"),
                });
                targets.push(target.clone());
            }
            let (ratio, target) = (ratios.join("<br>"), targets.join("<br>"));
            let note = if row.note.is_empty() {
                String::new()
            } else {
                format!(" {}", row.note)
            };
            let _ = writeln!(
                out,
                "| {} | {}{note} | {ratio} | {target} |",
                row.name,
                format_samples(&row.samples, row.unit)
            );
        }
        out
    }
}

impl Row {
    /// Compares this row with `peer` (a row of the same section) against `target`.
    pub(crate) fn versus(&mut self, peer: &str, target: &str) -> &mut Self {
        self.versus.push((peer.to_owned(), target.to_owned()));
        self
    }

    /// A note after the figures, e.g. the bytes a warm run sent.
    pub(crate) fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.note = note.into();
        self
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    stats(v).0
}

pub(crate) fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn format_samples(samples: &[f64], unit: Unit) -> String {
    let (med, min, max) = stats(samples);
    let one = |v: f64| match unit {
        Unit::Secs if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        Unit::Secs => format!("{v:.2} s"),
        Unit::Rate(u) | Unit::Amount(u) => format!("{v:.1} {u}"),
    };
    if samples.len() == 1 {
        one(med)
    } else {
        format!("{} ({}–{})", one(med), one(min), one(max))
    }
}
