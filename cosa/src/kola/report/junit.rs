//! JUnit XML through the `junit-report` crate: one testsuite, one testcase per
//! test (its last attempt; earlier attempts in its system-err).

use anyhow::{bail, Context, Result};
use junit_report::{OffsetDateTime, Report, TestCase, TestResult as JUnitResult, TestSuite};

use super::{final_attempts, first_line, Outcome, RunContext, TestResult};

/// The JUnit document for a run.
pub fn junit_xml(ctx: &RunContext, results: &[TestResult]) -> Result<String> {
    let mut suite = TestSuite::new("kola");
    let started = i128::from(ctx.started.timestamp()) * 1_000_000_000
        + i128::from(ctx.started.timestamp_subsec_nanos());
    suite.set_timestamp(
        OffsetDateTime::from_unix_timestamp_nanos(started).context("run start time")?,
    );
    suite.set_system_out(&xml_text(&format!(
        "platform={} version={} accel={} firmware={} transport={}\n",
        ctx.platform, ctx.version, ctx.accel, ctx.firmware, ctx.transport
    )));
    let finals = final_attempts(results);
    for r in &finals {
        suite.add_testcase(testcase(ctx, r, results));
    }
    let skipped = suite.skipped();
    let mut report = Report::new();
    report.add_testsuite(suite);
    let mut buf = Vec::new();
    report.write_xml(&mut buf).context("writing JUnit XML")?;
    let xml = String::from_utf8(buf).context("JUnit XML is not UTF-8")?;
    // junit-report counts skips but does not write the attribute CI tools read.
    let tag = "<testsuite ";
    let Some(at) = xml.find(tag) else {
        bail!("JUnit XML without a testsuite element");
    };
    let at = at + tag.len();
    Ok(format!(
        "{}skipped=\"{skipped}\" {}\n",
        &xml[..at],
        &xml[at..]
    ))
}

fn testcase(ctx: &RunContext, r: &TestResult, all: &[TestResult]) -> TestCase {
    let time = junit_report::Duration::try_from(r.duration).unwrap_or(junit_report::Duration::MAX);
    let output = xml_text(&r.output);
    let message = first_line(&output).to_string();
    let result = match r.outcome {
        Outcome::Pass => JUnitResult::Success,
        Outcome::Fail => JUnitResult::Failure {
            type_: "FAIL".into(),
            message,
            cause: Some(output),
        },
        Outcome::Skip => JUnitResult::SkippedWithCause {
            type_: "SKIP".into(),
            message,
            cause: None,
        },
        // JUnit has no "failed but tolerated": a skip keeps it visible without failing CI.
        Outcome::Warn => JUnitResult::SkippedWithCause {
            type_: "WARN".into(),
            message: format!("failed, counted as a warning: {message}"),
            cause: Some(output),
        },
    };
    let mut out = String::new();
    if let Some(vm) = &r.vm {
        out.push_str(&format!("vm: {vm}\n"));
    }
    if let Some(log) = &r.console_log {
        out.push_str(&format!("console: {}\n", log.display()));
    }
    let mut err = String::new();
    for earlier in all
        .iter()
        .filter(|e| e.name == r.name && e.attempt < r.attempt)
    {
        err.push_str(&format!(
            "attempt {}: {} after {:.1}s\n{}\n",
            earlier.attempt,
            earlier.outcome,
            earlier.duration.as_secs_f64(),
            earlier.output.trim_end()
        ));
    }
    TestCase {
        name: r.name.clone(),
        time,
        result,
        classname: Some(format!("kola.{}", ctx.platform)),
        filepath: None,
        system_out: (!out.is_empty()).then(|| xml_text(&out)),
        system_err: (!err.is_empty()).then(|| xml_text(&err)),
    }
}

/// Console output holds escape sequences and other characters XML 1.0 forbids,
/// and `]]>` would end the CDATA section the text is written in.
fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect::<String>()
        .replace("]]>", "]] >")
}
