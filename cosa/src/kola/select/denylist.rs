//! `kola-denylist.yaml`: known failures, skipped (or run as warn-only) per
//! stream, architecture and platform, in coreos-assembler's format.

use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use serde::Deserialize;

use super::glob::Glob;
use crate::kola::test::KolaTest;

/// Not a test pattern: a matching entry turns off the console checks (kola's).
pub const SKIP_CONSOLE_WARNINGS: &str = "skip-console-warnings";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denylist(pub Vec<DenyEntry>);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyEntry {
    /// A test name glob.
    pub pattern: String,
    /// Where the failure is tracked (an issue URL).
    #[serde(default)]
    pub tracker: Option<String>,
    /// Applies only to these streams (empty: all).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Applies only on these architectures (empty: all).
    #[serde(default)]
    pub arches: Vec<String>,
    /// Applies only on these platforms (empty: all).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Skip until this date; from that day on the test runs again.
    #[serde(default)]
    pub snooze: Option<NaiveDate>,
    /// Run the test, but its failure counts as WARN.
    #[serde(default)]
    pub warn: bool,
}

/// What an applicable entry does to the tests it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DenyAction {
    Skip(String),
    Warn,
}

impl Denylist {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let entries: Option<Vec<DenyEntry>> = serde_yaml::from_str(text)?;
        let entries = entries.unwrap_or_default();
        for (i, e) in entries.iter().enumerate() {
            if e.pattern.trim().is_empty() {
                bail!("entry {}: empty pattern", i + 1);
            }
            Glob::new(&e.pattern).with_context(|| format!("entry {}", i + 1))?;
        }
        Ok(Denylist(entries))
    }

    pub fn entries(&self) -> &[DenyEntry] {
        &self.0
    }

    /// Every test pattern must match a known test: a stale entry is an error,
    /// not a silent no-op.
    pub fn check_patterns(&self, tests: &[KolaTest]) -> Result<()> {
        let unmatched: Vec<&str> = self
            .0
            .iter()
            .filter(|e| e.pattern != SKIP_CONSOLE_WARNINGS)
            .filter(|e| {
                let g = Glob::new(&e.pattern);
                !g.is_ok_and(|g| tests.iter().any(|t| g.matches(&t.name)))
            })
            .map(|e| e.pattern.as_str())
            .collect();
        if !unmatched.is_empty() {
            bail!(
                "denylist pattern(s) matching no test: {} (a stale entry, or one naming a test cosa does not have, such as kola's built-in Go tests: remove it, or run with --no-denylist)",
                unmatched.join(", ")
            );
        }
        Ok(())
    }

    /// The entries that apply to this platform, architecture and stream
    /// (entries scoped to streams do not apply when the stream is unknown).
    fn applicable<'a>(
        &'a self,
        platform: &'a str,
        arch: &'a str,
        stream: Option<&'a str>,
    ) -> impl Iterator<Item = &'a DenyEntry> + 'a {
        let within = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|i| i == v))
        };
        self.0.iter().filter(move |e| {
            within(&e.arches, Some(arch))
                && within(&e.platforms, Some(platform))
                && within(&e.streams, stream)
        })
    }

    /// Whether an applicable `skip-console-warnings` entry turns off console checks.
    pub fn skips_console_warnings(&self, platform: &str, arch: &str, stream: Option<&str>) -> bool {
        self.applicable(platform, arch, stream)
            .any(|e| e.pattern == SKIP_CONSOLE_WARNINGS)
    }

    /// The (glob, action) rules in force today, as kola applies them: a
    /// snoozed entry skips until its date, then the test runs (as WARN if
    /// `warn`); an unsnoozed entry skips, or with `warn` runs as WARN.
    pub(super) fn rules(
        &self,
        platform: &str,
        arch: &str,
        stream: Option<&str>,
        today: NaiveDate,
    ) -> Result<Vec<(Glob, DenyAction)>> {
        let mut rules = Vec::new();
        for e in self.applicable(platform, arch, stream) {
            if e.pattern == SKIP_CONSOLE_WARNINGS {
                continue;
            }
            let tracker = e
                .tracker
                .as_deref()
                .map(|t| format!(": {t}"))
                .unwrap_or_default();
            let action = match e.snooze {
                Some(until) if today < until => {
                    DenyAction::Skip(format!("denylisted, snoozed until {until}{tracker}"))
                }
                Some(_) if !e.warn => continue,
                _ if e.warn => DenyAction::Warn,
                _ => DenyAction::Skip(format!("denylisted{tracker}")),
            };
            rules.push((Glob::new(&e.pattern)?, action));
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_kola_format() {
        let d = Denylist::parse(
            "# comment\n\
             - pattern: ext.config.a*\n  tracker: https://example.com/1\n\
             - pattern: basic\n  snooze: 2026-12-01\n  warn: true\n  arches: [x86_64]\n  platforms: [qemu]\n  streams: [next]\n",
        )
        .unwrap();
        assert_eq!(d.0.len(), 2);
        assert_eq!(d.0[1].snooze, NaiveDate::from_ymd_opt(2026, 12, 1));
        assert!(d.0[1].warn);
        assert_eq!(Denylist::parse("[]\n").unwrap().0, []);
        assert_eq!(Denylist::parse("# nothing\n").unwrap().0, []);
    }

    #[test]
    fn parse_errors() {
        let e = format!(
            "{:#}",
            Denylist::parse("- pattern: a\n  owner: me\n").unwrap_err()
        );
        assert!(e.contains("unknown field `owner`"), "{e}");
        assert!(Denylist::parse("- tracker: x\n").is_err());
        assert!(Denylist::parse("- pattern: 'a['\n").is_err());
        assert!(Denylist::parse("- pattern: a\n  snooze: soon\n").is_err());
    }

    #[test]
    fn load_names_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kola-denylist.yaml");
        std::fs::write(&p, "- pattern: a\n  bogus: 1\n").unwrap();
        let e = format!("{:#}", Denylist::load(&p).unwrap_err());
        assert!(
            e.contains("kola-denylist.yaml") && e.contains("bogus"),
            "{e}"
        );
    }

    #[test]
    fn console_warnings_entry() {
        let d = Denylist::parse("- pattern: skip-console-warnings\n  platforms: [aws]\n").unwrap();
        assert!(d.skips_console_warnings("aws", "x86_64", None));
        assert!(!d.skips_console_warnings("qemu", "x86_64", None));
        // Not a test pattern: never "matches no test".
        d.check_patterns(&[]).unwrap();
    }
}
