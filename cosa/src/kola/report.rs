//! Run results: kola's `report.json`, JUnit XML, the summary table and the
//! exit status CI gates on.

mod junit;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use junit::junit_xml;

/// Exit status when the only failures are of warn-only tests (kola's `--on-warn-failure-exit-77`).
pub const EXIT_WARN_ONLY: i32 = 77;

/// A test's result, serialized as kola does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
    /// Failed, but tolerated (denylist `warn: true`, grace period).
    Warn,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
            Outcome::Warn => "WARN",
        })
    }
}

/// One attempt of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
    pub duration: Duration,
    /// For a failure: the quoted console line, the test output's tail. For a skip: why.
    pub output: String,
    /// 1, or 2 for a `--rerun`.
    pub attempt: u32,
    /// The VM it ran on.
    pub vm: Option<String>,
    pub console_log: Option<PathBuf>,
}

/// What the whole run was on, said once in every report (in report.json, as
/// top-level keys beside `tests` and `result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunContext {
    pub platform: String,
    /// The build ID.
    pub version: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    pub firmware: String,
    /// How the harness reached the guests: `agent` or `ssh`.
    pub transport: String,
    pub started: DateTime<Utc>,
}

/// `report.json`: kola's shape (`tests`, `result`, `platform`, `version`)
/// plus what kola does not record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonReport {
    pub tests: Vec<JsonTest>,
    /// PASS, FAIL, or WARN when only warn-only tests failed.
    pub result: Outcome,
    #[serde(flatten)]
    pub run: RunContext,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonTest {
    pub name: String,
    /// kola's field; cosa runs no subtests.
    pub subtests: Vec<String>,
    pub result: Outcome,
    /// Nanoseconds, as kola (Go's `time.Duration`) writes it.
    pub duration: u64,
    pub output: String,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<PathBuf>,
}

impl JsonReport {
    pub fn new(ctx: &RunContext, results: &[TestResult]) -> Self {
        JsonReport {
            tests: results
                .iter()
                .map(|r| JsonTest {
                    name: r.name.clone(),
                    subtests: Vec::new(),
                    result: r.outcome,
                    duration: u64::try_from(r.duration.as_nanos()).unwrap_or(u64::MAX),
                    output: r.output.clone(),
                    attempt: r.attempt,
                    vm: r.vm.clone(),
                    console_log: r.console_log.clone(),
                })
                .collect(),
            result: overall(results),
            run: ctx.clone(),
        }
    }
}

/// Writes `dir/report.json` and `dir/junit.xml`.
pub fn write_reports(dir: &Path, ctx: &RunContext, results: &[TestResult]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join("report.json");
    let mut text = serde_json::to_string_pretty(&JsonReport::new(ctx, results))?;
    text.push('\n');
    std::fs::write(&json, text).with_context(|| format!("writing {}", json.display()))?;
    let xml = dir.join("junit.xml");
    std::fs::write(&xml, junit_xml(ctx, results)?)
        .with_context(|| format!("writing {}", xml.display()))?;
    Ok(())
}

/// The last attempt of each test, in first-seen order: what a test "did".
/// A failure that passed on `--rerun` counts as PASS (kola's flake handling).
pub fn final_attempts(results: &[TestResult]) -> Vec<&TestResult> {
    let mut last: BTreeMap<&str, &TestResult> = BTreeMap::new();
    let mut order = Vec::new();
    for r in results {
        match last.get(r.name.as_str()) {
            Some(prev) if prev.attempt > r.attempt => {}
            Some(_) => {
                last.insert(&r.name, r);
            }
            None => {
                order.push(r.name.as_str());
                last.insert(&r.name, r);
            }
        }
    }
    order
        .into_iter()
        .filter_map(|n| last.get(n).copied())
        .collect()
}

/// 0: everything passed or was skipped; 77: the only failures are warn-only;
/// 1: a test failed (on its last attempt).
pub fn exit_code(results: &[TestResult]) -> i32 {
    match overall(results) {
        Outcome::Fail => 1,
        Outcome::Warn => EXIT_WARN_ONLY,
        Outcome::Pass | Outcome::Skip => 0,
    }
}

fn overall(results: &[TestResult]) -> Outcome {
    let finals = final_attempts(results);
    if finals.iter().any(|r| r.outcome == Outcome::Fail) {
        Outcome::Fail
    } else if finals.iter().any(|r| r.outcome == Outcome::Warn) {
        Outcome::Warn
    } else {
        Outcome::Pass
    }
}

/// At most this many rows; beyond it only the tests that did not pass are listed.
const TABLE_ROWS: usize = 20;
const NAME_WIDTH: usize = 40;
const LINE_WIDTH: usize = 110;

/// One screen: name, result, duration, first line of the failure; then totals.
pub fn summary_table(results: &[TestResult]) -> String {
    let finals = final_attempts(results);
    let rows: Vec<&&TestResult> = if finals.len() <= TABLE_ROWS {
        finals.iter().collect()
    } else {
        finals
            .iter()
            .filter(|r| r.outcome != Outcome::Pass)
            .collect()
    };
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, NAME_WIDTH);
    let mut s = format!(
        "{:<width$}  {:<6}  {:>8}  DETAIL\n",
        "TEST", "RESULT", "TIME"
    );
    for r in rows.iter().take(TABLE_ROWS) {
        let mut detail = first_line(&r.output).to_string();
        if r.attempt > 1 {
            let earlier = results
                .iter()
                .filter(|e| e.name == r.name && e.attempt < r.attempt)
                .max_by_key(|e| e.attempt);
            let before = earlier
                .map(|e| {
                    format!(
                        "; attempt {}: {} {}",
                        e.attempt,
                        e.outcome,
                        first_line(&e.output)
                    )
                })
                .unwrap_or_default();
            detail = format!("(attempt {}{before}) {detail}", r.attempt);
        }
        let line = format!(
            "{:<width$}  {:<6}  {:>8}  {}",
            truncate(&r.name, width),
            r.outcome.to_string(),
            format_duration(r.duration),
            if r.outcome == Outcome::Pass && r.attempt == 1 {
                ""
            } else {
                detail.as_str()
            }
        );
        s.push_str(truncate(&line, LINE_WIDTH).trim_end());
        s.push('\n');
    }
    if rows.len() > TABLE_ROWS {
        s.push_str(&format!("… {} more not listed\n", rows.len() - TABLE_ROWS));
    }
    let count = |o| finals.iter().filter(|r| r.outcome == o).count();
    let hidden = finals.len() - rows.len();
    s.push_str(&format!(
        "{} tests: {} passed{}, {} failed, {} warned, {} skipped; {}\n",
        finals.len(),
        count(Outcome::Pass),
        if hidden > 0 { " (not listed)" } else { "" },
        count(Outcome::Fail),
        count(Outcome::Warn),
        count(Outcome::Skip),
        overall(results),
    ));
    s
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests;
