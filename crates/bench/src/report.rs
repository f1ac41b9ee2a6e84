//! Markdown output: a table per workload, the ratios computed within the run, and the
//! files under `bench/results/`.
//!
//! Ratios only ever compare rows of the same transport measured in the same invocation:
//! Conflux over loopback against the floor and PocketBase, Conflux in-process against
//! SurrealDB embedded. Absolute times drift on a shared machine; ratios taken minutes
//! apart on the same machine are what the README may quote.

use std::fmt::Write as _;
use std::path::Path;

use conflux_common::{Error, Result};

use crate::measure::latency::{ms, RunResult, RunSet, Summary};
use crate::targets::{System, TargetInfo, Transport};

/// A Markdown table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Column headers.
    pub headers: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.headers.join(" | "));
        let _ = writeln!(
            out,
            "|{}|",
            self.headers
                .iter()
                .map(|_| "---")
                .collect::<Vec<_>>()
                .join("|")
        );
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

/// One system's result for one configuration of a workload, or why there is none.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Which system, how reached, how durable.
    pub target: TargetInfo,
    /// The configuration (e.g. `N = 1,000`), the key ratios are computed within.
    pub config: String,
    /// The runs, or the reason the system has no number here.
    pub result: std::result::Result<RunSet, String>,
}

impl Outcome {
    /// The median run, when there is one.
    pub fn median(&self) -> Option<&RunResult> {
        self.result.as_ref().ok().and_then(RunSet::median)
    }
}

/// `a ÷ b` as `×1.23`, or `–` when either is missing or zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => {
            let r = a / b;
            if r >= 100.0 {
                format!("×{r:.0}")
            } else if r >= 0.1 {
                format!("×{r:.2}")
            } else {
                // Three significant digits for small ratios (×0.00123).
                let digits = (2 - r.log10().floor() as i32).clamp(3, 9) as usize;
                format!("×{r:.digits$}")
            }
        }
        _ => "–".into(),
    }
}

/// The ratio table of a workload: for each configuration, Conflux over loopback divided by
/// the floor and by PocketBase, and Conflux in-process divided by SurrealDB embedded, on
/// p50, p99 and CPU per 1,000 notifications. `value` picks the latency the workload
/// compares on (delivery latency, request latency, ...).
pub fn ratios<F>(outcomes: &[Outcome], value: F) -> Table
where
    F: Fn(&RunResult) -> (u64, u64, Option<f64>),
{
    let mut table = Table::new(&[
        "Configuration",
        "Comparison (same transport, same run)",
        "p50 ratio",
        "p99 ratio",
        "CPU/1k ratio",
    ]);
    let mut configs: Vec<&str> = Vec::new();
    for outcome in outcomes {
        if !configs.contains(&outcome.config.as_str()) {
            configs.push(&outcome.config);
        }
    }
    let find = |config: &str, system: System, transport: Transport| {
        outcomes.iter().find(|o| {
            o.config == config && o.target.system == system && o.target.transport == transport
        })
    };
    for config in configs {
        let pairs = [
            (
                Transport::Loopback,
                System::Floor,
                "Conflux ÷ floor (over loopback)",
            ),
            (
                Transport::Loopback,
                System::PocketBase,
                "Conflux ÷ PocketBase (over loopback)",
            ),
            (
                Transport::InProcess,
                System::Surreal,
                "Conflux ÷ SurrealDB embedded (in-process)",
            ),
        ];
        for (transport, peer, label) in pairs {
            let (Some(ours), Some(theirs)) = (
                find(config, System::Conflux, transport),
                find(config, peer, transport),
            ) else {
                continue;
            };
            let cells = match (ours.median(), theirs.median()) {
                (Some(a), Some(b)) => {
                    let (a50, a99, acpu) = value(a);
                    let (b50, b99, bcpu) = value(b);
                    vec![
                        ratio(Some(a50 as f64), Some(b50 as f64)),
                        ratio(Some(a99 as f64), Some(b99 as f64)),
                        ratio(acpu, bcpu),
                    ]
                }
                _ => {
                    let reason = theirs
                        .result
                        .as_ref()
                        .err()
                        .or(ours.result.as_ref().err())
                        .cloned()
                        .unwrap_or_default();
                    vec![format!("n/a ({reason})"), "–".into(), "–".into()]
                }
            };
            let mut row = vec![config.to_string(), label.to_string()];
            row.extend(cells);
            table.row(row);
        }
    }
    table
}

/// One latency of `summary` in milliseconds, or `none` when nothing was recorded (for
/// example nothing was delivered before the run's drain time ran out).
pub fn latency_cell(summary: &Summary, pick: fn(&Summary) -> u64) -> String {
    if summary.count == 0 {
        "none".into()
    } else {
        ms(pick(summary))
    }
}

/// CPU seconds per 1,000 with three significant digits.
pub fn cpu_cell(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 1.0 => format!("{v:.2}"),
        Some(v) if v >= 0.01 => format!("{v:.3}"),
        Some(v) => format!("{v:.4}"),
        None => "n/a".into(),
    }
}

/// Write `text` to `path`, creating the folder.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| Error::internal(format!("cannot create {}: {err}", dir.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|err| Error::internal(format!("cannot write {}: {err}", path.display())))
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_computed_from_the_epoch() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_516), (2026, 3, 4));
    }

    #[test]
    fn tables_render_as_markdown() {
        let mut table = Table::new(&["System", "p50 ms"]);
        table.row(vec!["Conflux".into(), "1.20".into()]);
        assert_eq!(
            table.markdown(),
            "| System | p50 ms |\n|---|---|\n| Conflux | 1.20 |\n"
        );
    }

    #[test]
    fn ratios_need_both_numbers() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), "×1.50");
        assert_eq!(ratio(Some(1.0), Some(800.0)), "×0.00125");
        assert_eq!(ratio(Some(3.0), None), "–");
        assert_eq!(ratio(Some(3.0), Some(0.0)), "–");
    }
}
