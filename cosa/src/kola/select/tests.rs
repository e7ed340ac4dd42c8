use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;
use crate::kola::test::{Builtin, TestBody, TestMeta};

fn test(name: &str, edit: impl FnOnce(&mut TestMeta)) -> KolaTest {
    let mut meta = TestMeta::default();
    edit(&mut meta);
    KolaTest {
        name: name.into(),
        body: TestBody::Builtin(Builtin::Basic),
        meta,
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn sample() -> Vec<KolaTest> {
    vec![
        test("basic", |m| m.tags = strs(&["basic"])),
        test("reboot", |m| m.tags = strs(&["basic", "reboot"])),
        test("ext.config.files.a", |m| {
            m.tags = strs(&["external", "files"])
        }),
        test("ext.config.files.b", |m| {
            m.tags = strs(&["external", "files", "slow"])
        }),
        test("ext.config.k8s", |m| {
            m.tags = strs(&["external"]);
            m.required_tag = Some("k8s".into());
        }),
        test("ext.config.aws-only", |m| m.platforms = strs(&["aws"])),
        test("ext.config.not-s390x", |m| {
            m.exclude_architectures = strs(&["s390x"])
        }),
        test("ext.config.rhcos", |m| m.distros = strs(&["rhcos"])),
        test("ext.config.indep", |m| {
            m.tags = strs(&["platform-independent"])
        }),
    ]
}

fn sel() -> Selection {
    Selection {
        platform: "qemu".into(),
        arch: "x86_64".into(),
        distro: "fcos".into(),
        ..Selection::default()
    }
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

fn run(tests: Vec<KolaTest>, s: &Selection) -> Vec<String> {
    select(tests, s, today())
        .unwrap()
        .run
        .into_iter()
        .map(|t| t.name)
        .collect()
}

fn skipped(tests: Vec<KolaTest>, s: &Selection) -> Vec<(String, String)> {
    select(tests, s, today()).unwrap().skipped
}

#[test]
fn default_selects_all_that_apply() {
    let s = sel();
    assert_eq!(
        run(sample(), &s),
        [
            "basic",
            "reboot",
            "ext.config.files.a",
            "ext.config.files.b",
            "ext.config.not-s390x",
            "ext.config.indep",
        ]
    );
    let why: Vec<String> = skipped(sample(), &s).into_iter().map(|(n, _)| n).collect();
    // The k8s test needs its tag and was not asked for by name: not listed.
    assert_eq!(why, ["ext.config.aws-only", "ext.config.rhcos"]);
}

#[test]
fn globs() {
    let mut s = sel();
    s.patterns = strs(&["ext.config.files.*", "reb??t"]);
    assert_eq!(
        run(sample(), &s),
        ["reboot", "ext.config.files.a", "ext.config.files.b"]
    );
    s.patterns = strs(&["nothing*", "basic"]);
    let e = select(sample(), &s, today()).unwrap_err().to_string();
    assert!(e.contains("nothing*") && !e.contains("basic"), "{e}");
    s.patterns = strs(&["bad["]);
    assert!(select(sample(), &s, today()).is_err());
}

#[test]
fn tags() {
    let mut s = sel();
    s.tags = vec![TagFilter::parse("files").unwrap()];
    assert_eq!(
        run(sample(), &s),
        ["ext.config.files.a", "ext.config.files.b"]
    );
    s.tags.push(TagFilter::parse("!slow").unwrap());
    assert_eq!(run(sample(), &s), ["ext.config.files.a"]);
    // A pattern and a tag: either picks a test, as in kola.
    s.patterns = strs(&["basic"]);
    assert_eq!(run(sample(), &s), ["basic", "ext.config.files.a"]);
    // Only exclusions: everything else.
    s.patterns.clear();
    s.tags = vec![TagFilter::Exclude("basic".into())];
    assert!(!run(sample(), &s).contains(&"reboot".to_string()));
    assert!(run(sample(), &s).contains(&"ext.config.indep".to_string()));

    assert_eq!(
        TagFilter::parse("!x").unwrap(),
        TagFilter::Exclude("x".into())
    );
    assert!(TagFilter::parse("!").is_err());
    assert!(TagFilter::parse("a b").is_err());
    assert_eq!(TagFilter::Exclude("x".into()).to_string(), "!x");
}

#[test]
fn required_tag() {
    let mut s = sel();
    s.patterns = strs(&["ext.config.k*"]);
    assert!(run(sample(), &s).is_empty());
    let sk = skipped(sample(), &s);
    assert_eq!(sk.len(), 1);
    assert!(sk[0].1.contains("--tag k8s"), "{sk:?}");
    s.tags = vec![TagFilter::Include("k8s".into())];
    assert_eq!(run(sample(), &s), ["ext.config.k8s"]);
    s.patterns.clear();
    assert_eq!(run(sample(), &s), ["ext.config.k8s"]);
}

#[test]
fn platform_arch_distro() {
    let mut s = sel();
    s.platform = "aws".into();
    let r = run(sample(), &s);
    assert!(r.contains(&"ext.config.aws-only".into()));
    // platform-independent runs on qemu only.
    assert!(!r.contains(&"ext.config.indep".into()));
    let sk = skipped(sample(), &s);
    assert!(sk
        .iter()
        .any(|(n, why)| n == "ext.config.indep" && why.contains("platform aws")));

    let mut s = sel();
    s.arch = "s390x".into();
    let sk = skipped(sample(), &s);
    assert!(sk
        .iter()
        .any(|(n, why)| n == "ext.config.not-s390x"
            && why == "architecture s390x is excluded (!s390x)"));

    let mut s = sel();
    s.distro = "rhcos".into();
    assert!(run(sample(), &s).contains(&"ext.config.rhcos".into()));
}

#[test]
fn butane_config_is_skipped_with_reason() {
    let tests = vec![test("ext.config.bu", |m| {
        m.butane_config = Some(PathBuf::from("/c/tests/kola/bu/config.bu"))
    })];
    let out = select(tests, &sel(), today()).unwrap();
    assert!(out.run.is_empty());
    assert!(out.skipped[0].1.contains("Butane"), "{:?}", out.skipped);
}

fn denylist(yaml: &str) -> Selection {
    Selection {
        denylist: Some(Denylist::parse(yaml).unwrap()),
        stream: Some("testing".into()),
        ..sel()
    }
}

#[test]
fn denylist_skip_and_tracker() {
    let s = denylist("- pattern: ext.config.files.*\n  tracker: https://tracker/1\n");
    let out = select(sample(), &s, today()).unwrap();
    assert!(!out
        .run
        .iter()
        .any(|t| t.name.starts_with("ext.config.files")));
    let sk: Vec<_> = out
        .skipped
        .iter()
        .filter(|(n, _)| n.starts_with("ext.config.files"))
        .collect();
    assert_eq!(sk.len(), 2);
    assert_eq!(sk[0].1, "denylisted: https://tracker/1");
}

#[test]
fn denylist_scoping() {
    for (yaml, applies) in [
        ("- pattern: basic\n  arches: [s390x]\n", false),
        ("- pattern: basic\n  arches: [x86_64]\n", true),
        ("- pattern: basic\n  platforms: [aws, gcp]\n", false),
        ("- pattern: basic\n  platforms: [qemu]\n", true),
        ("- pattern: basic\n  streams: [next]\n", false),
        ("- pattern: basic\n  streams: [testing, next]\n", true),
    ] {
        let r = run(sample(), &denylist(yaml));
        assert_eq!(!r.contains(&"basic".into()), applies, "{yaml}");
    }
    // A stream-scoped entry does not apply when the stream is unknown.
    let mut s = denylist("- pattern: basic\n  streams: [testing]\n");
    s.stream = None;
    assert!(run(sample(), &s).contains(&"basic".into()));
}

#[test]
fn denylist_snooze_and_warn() {
    // Snoozed until a future date: skipped until then.
    let s = denylist("- pattern: basic\n  snooze: 2026-11-21\n  tracker: T\n");
    let out = select(sample(), &s, today()).unwrap();
    assert!(out.skipped.contains(&(
        "basic".into(),
        "denylisted, snoozed until 2026-11-21: T".into()
    )));
    // From the snooze date on, the test runs again.
    let s = denylist("- pattern: basic\n  snooze: 2026-11-20\n");
    let out = select(sample(), &s, today()).unwrap();
    assert!(out.run.iter().any(|t| t.name == "basic"));
    assert!(out.warn_only.is_empty());
    // An expired snooze with warn: runs, failures are warnings.
    let s = denylist("- pattern: basic\n  snooze: 2026-01-01\n  warn: true\n");
    let out = select(sample(), &s, today()).unwrap();
    assert_eq!(out.warn_only, BTreeSet::from(["basic".to_string()]));
    // warn without snooze: runs as warn-only.
    let s = denylist("- pattern: ext.config.files.*\n  warn: true\n");
    let out = select(sample(), &s, today()).unwrap();
    assert_eq!(
        out.warn_only,
        BTreeSet::from(["ext.config.files.a".into(), "ext.config.files.b".into()])
    );
    assert!(out.run.iter().any(|t| t.name == "ext.config.files.a"));
}

#[test]
fn denylist_pattern_matching_nothing_is_an_error() {
    let s = denylist("- pattern: basic\n- pattern: ext.config.gone\n  tracker: T\n");
    let e = select(sample(), &s, today()).unwrap_err().to_string();
    assert!(
        e.contains("ext.config.gone") && !e.contains("basic,"),
        "{e}"
    );
    // Even when the entry is scoped to another platform: the entry is stale.
    let s = denylist("- pattern: ext.config.gone\n  platforms: [aws]\n");
    assert!(select(sample(), &s, today()).is_err());
}

#[test]
fn grace_period_warns() {
    let tests = vec![
        test("new", |m| {
            m.creation_date = NaiveDate::from_ymd_opt(2026, 11, 1)
        }),
        test("old", |m| {
            m.creation_date = NaiveDate::from_ymd_opt(2026, 9, 1)
        }),
    ];
    let out = select(tests, &sel(), today()).unwrap();
    assert_eq!(out.run.len(), 2);
    assert_eq!(out.warn_only, BTreeSet::from(["new".to_string()]));
}

#[test]
fn shards_split_run_and_skips_without_overlap() {
    let mut tests = sample();
    tests.extend((0..60).map(|i| test(&format!("ext.config.gen{i}"), |_| {})));
    let s = denylist("- pattern: ext.config.gen1*\n  warn: true\n- pattern: ext.config.gen2*\n");
    let all = select(tests.clone(), &s, today()).unwrap();
    for n in [1, 2, 3, 5] {
        let mut run = BTreeSet::new();
        let mut skip = BTreeSet::new();
        let mut warn = BTreeSet::new();
        for m in 1..=n {
            let mut sm = s.clone();
            sm.shard = Some(Shard::parse(&format!("{m}/{n}")).unwrap());
            let part = select(tests.clone(), &sm, today()).unwrap();
            for t in part.run {
                assert!(run.insert(t.name), "overlap in {m}/{n}");
            }
            for (t, _) in part.skipped {
                assert!(skip.insert(t), "overlap in {m}/{n}");
            }
            warn.extend(part.warn_only);
        }
        let want: BTreeSet<String> = all.run.iter().map(|t| t.name.clone()).collect();
        assert_eq!(run, want, "shards of {n}");
        let want: BTreeSet<String> = all.skipped.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(skip, want, "shards of {n}");
        assert_eq!(warn, all.warn_only);
    }
}

#[test]
fn console_warnings_flag() {
    let s = denylist("- pattern: skip-console-warnings\n  platforms: [qemu]\n");
    assert!(s.skip_console_warnings());
    select(sample(), &s, today()).unwrap();
    assert!(!sel().skip_console_warnings());
}

#[test]
fn explicit_only_tests_need_a_name_or_a_tag() {
    let tests = || {
        let mut v = sample();
        v.push(test("iso-live-login.bios", |m| {
            m.tags = strs(&["testiso", "iso"]);
            m.explicit_only = true;
        }));
        v
    };
    // A bare run leaves it out, and says nothing of it.
    let s = sel();
    assert!(!run(tests(), &s).contains(&"iso-live-login.bios".to_string()));
    assert!(!skipped(tests(), &s)
        .iter()
        .any(|(n, _)| n == "iso-live-login.bios"));
    // A pattern or a tag picks it.
    let mut s = sel();
    s.patterns = strs(&["iso-*"]);
    assert_eq!(run(tests(), &s), ["iso-live-login.bios"]);
    let mut s = sel();
    s.tags = vec![TagFilter::Include("testiso".into())];
    assert_eq!(run(tests(), &s), ["iso-live-login.bios"]);
    // Another tag does not.
    s.tags = vec![TagFilter::Include("basic".into())];
    assert_eq!(run(tests(), &s), ["basic", "reboot"]);
}
