use std::collections::BTreeMap;

use chrono::TimeZone;
use quick_xml::events::Event;

use super::*;

fn ctx() -> RunContext {
    RunContext {
        platform: "qemu".into(),
        version: "42.20261120.0".into(),
        accel: "tcg".into(),
        firmware: "bios".into(),
        transport: "agent".into(),
        started: Utc.with_ymd_and_hms(2026, 11, 20, 23, 0, 0).unwrap(),
    }
}

fn res(name: &str, outcome: Outcome, secs: f64, output: &str, attempt: u32) -> TestResult {
    TestResult {
        name: name.into(),
        outcome,
        duration: Duration::from_secs_f64(secs),
        output: output.into(),
        attempt,
        vm: Some(format!("vm-{name}")),
        console_log: Some(PathBuf::from(format!("tmp/kola/{name}/console.txt"))),
    }
}

fn sample() -> Vec<TestResult> {
    vec![
        res("basic", Outcome::Pass, 5.5, "", 1),
        res(
            "ext.config.files",
            Outcome::Fail,
            12.25,
            "console: \u{1b}[31mKernel panic - not syncing\u{1b}[0m\n<tail> & ]]> more",
            1,
        ),
        res(
            "ext.config.denied",
            Outcome::Skip,
            0.0,
            "denylisted: https://t/1",
            1,
        ),
        res("ext.config.flaky", Outcome::Fail, 3.0, "timed out", 1),
        res("ext.config.flaky", Outcome::Pass, 4.0, "", 2),
        res(
            "ext.config.warned",
            Outcome::Warn,
            2.0,
            "FAIL: known bug",
            1,
        ),
    ]
}

#[test]
fn exit_codes() {
    let pass = vec![
        res("a", Outcome::Pass, 1.0, "", 1),
        res("b", Outcome::Skip, 0.0, "", 1),
    ];
    assert_eq!(exit_code(&pass), 0);
    assert_eq!(exit_code(&[]), 0);
    let warn = vec![
        res("a", Outcome::Pass, 1.0, "", 1),
        res("w", Outcome::Warn, 1.0, "x", 1),
    ];
    assert_eq!(exit_code(&warn), 77);
    assert_eq!(exit_code(&sample()), 1);
    // A failure that passed on its rerun counts as a pass.
    let flake = vec![
        res("f", Outcome::Fail, 1.0, "x", 1),
        res("f", Outcome::Pass, 1.0, "", 2),
    ];
    assert_eq!(exit_code(&flake), 0);
    let flake_warn = [flake.clone(), warn].concat();
    assert_eq!(exit_code(&flake_warn), 77);
    let still = vec![
        res("f", Outcome::Fail, 1.0, "x", 1),
        res("f", Outcome::Fail, 1.0, "y", 2),
    ];
    assert_eq!(exit_code(&still), 1);
    // Attempt order, not list order, decides.
    let reordered = vec![
        res("f", Outcome::Pass, 1.0, "", 2),
        res("f", Outcome::Fail, 1.0, "x", 1),
    ];
    assert_eq!(exit_code(&reordered), 0);
}

#[test]
fn report_json_in_kola_shape() {
    let dir = tempfile::tempdir().unwrap();
    write_reports(dir.path(), &ctx(), &sample()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["result"], "FAIL");
    assert_eq!(v["platform"], "qemu");
    assert_eq!(v["version"], "42.20261120.0");
    assert_eq!(v["accel"], "tcg");
    let tests = v["tests"].as_array().unwrap();
    // Both attempts of the rerun test are kept.
    assert_eq!(tests.len(), 6);
    assert_eq!(tests[0]["name"], "basic");
    assert_eq!(tests[0]["result"], "PASS");
    // Go's time.Duration: nanoseconds.
    assert_eq!(tests[0]["duration"], 5_500_000_000u64);
    assert_eq!(tests[0]["subtests"], serde_json::json!([]));
    assert_eq!(tests[2]["result"], "SKIP");
    assert_eq!(tests[4]["attempt"], 2);
    assert_eq!(tests[5]["result"], "WARN");
    assert!(tests[1]["output"]
        .as_str()
        .unwrap()
        .contains("Kernel panic"));
    let back: JsonReport = serde_json::from_str(&text).unwrap();
    assert_eq!(back, JsonReport::new(&ctx(), &sample()));
}

/// The testsuite's attributes and, per testcase, its attributes and the
/// child element (failure/skipped) with its attributes.
type Case = (
    BTreeMap<String, String>,
    Option<(String, BTreeMap<String, String>)>,
);

fn parse_junit(xml: &str) -> (BTreeMap<String, String>, Vec<Case>) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let attrs = |e: &quick_xml::events::BytesStart| -> BTreeMap<String, String> {
        e.attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect()
    };
    let mut suite = BTreeMap::new();
    let mut cases: Vec<Case> = Vec::new();
    let mut depth = 0;
    loop {
        let ev = reader.read_event().expect("well-formed XML");
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(_) => {
                depth -= 1;
                (None, false)
            }
            Event::Eof => break,
            _ => (None, false),
        };
        if let Some(e) = start {
            match e.name().as_ref() {
                b"testsuite" => suite = attrs(&e),
                b"testcase" => cases.push((attrs(&e), None)),
                b"failure" | b"skipped" => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    cases.last_mut().unwrap().1 = Some((name, attrs(&e)));
                }
                _ => {}
            }
            if !empty {
                depth += 1;
            }
        }
    }
    assert_eq!(depth, 0, "unbalanced XML");
    (suite, cases)
}

#[test]
fn junit_is_valid_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    write_reports(dir.path(), &ctx(), &sample()).unwrap();
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(!xml.contains('\u{1b}'), "control characters are not XML");
    let (suite, cases) = parse_junit(&xml);
    assert_eq!(suite["name"], "kola");
    // One testcase per test: the flaky test's last attempt.
    assert_eq!(suite["tests"], "5");
    assert_eq!(suite["failures"], "1");
    // The skip and the warning.
    assert_eq!(suite["skipped"], "2");
    assert!(suite["timestamp"].starts_with("2026-11-20T23:00:00"));
    let names: Vec<&str> = cases.iter().map(|c| c.0["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "basic",
            "ext.config.files",
            "ext.config.denied",
            "ext.config.flaky",
            "ext.config.warned"
        ]
    );
    assert_eq!(cases[0].0["time"], "5.5");
    assert!(cases[0].1.is_none());
    let (kind, fail) = cases[1].1.as_ref().unwrap();
    assert_eq!(kind, "failure");
    assert!(fail["message"].contains("Kernel panic - not syncing"));
    assert_eq!(cases[1].0["time"], "12.25");
    let (kind, skip) = cases[2].1.as_ref().unwrap();
    assert_eq!(
        (kind.as_str(), skip["message"].as_str()),
        ("skipped", "denylisted: https://t/1")
    );
    assert!(cases[3].1.is_none(), "a rerun that passed is a pass");
    assert!(xml.contains("attempt 1: FAIL after 3.0s"));
    let (kind, warn) = cases[4].1.as_ref().unwrap();
    assert_eq!((kind.as_str(), warn["type"].as_str()), ("skipped", "WARN"));
    assert!(xml.contains("<![CDATA[platform=qemu version=42.20261120.0 accel=tcg firmware=bios"));
}

#[test]
fn junit_empty_run() {
    let (suite, cases) = parse_junit(&junit_xml(&ctx(), &[]).unwrap());
    assert_eq!(
        (suite["tests"].as_str(), suite["skipped"].as_str()),
        ("0", "0")
    );
    assert!(cases.is_empty());
}

#[test]
fn summary() {
    let t = summary_table(&sample());
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("TEST"));
    assert_eq!(lines.len(), 7, "{t}");
    let files = lines
        .iter()
        .find(|l| l.starts_with("ext.config.files"))
        .unwrap();
    assert!(files.contains("FAIL") && files.contains("12.2s"), "{files}");
    assert!(files.contains("console: "));
    assert!(!files.contains("<tail>"), "only the first line");
    let flaky = lines
        .iter()
        .find(|l| l.starts_with("ext.config.flaky"))
        .unwrap();
    assert!(
        flaky.contains("PASS") && flaky.contains("(attempt 2; attempt 1: FAIL timed out)"),
        "{flaky}"
    );
    assert!(lines[6].contains("5 tests: 2 passed, 1 failed, 1 warned, 1 skipped; FAIL"));
    assert!(t.lines().all(|l| l.chars().count() <= 110));

    // Many tests: the passes are counted, not listed.
    let many: Vec<TestResult> = (0..50)
        .map(|i| res(&format!("t{i}"), Outcome::Pass, 1.0, "", 1))
        .chain([res("bad", Outcome::Fail, 61.0, "\n  boom\nmore", 1)])
        .collect();
    let t = summary_table(&many);
    assert_eq!(t.lines().count(), 3, "{t}");
    assert!(t.contains("bad") && t.contains("1m01s") && t.contains("boom"));
    assert!(t.contains("51 tests: 50 passed (not listed), 1 failed"));
}
