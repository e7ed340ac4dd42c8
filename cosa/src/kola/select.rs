//! Which tests a run runs: name globs, tags, `requiredTag`, platform /
//! architecture / distro, the denylist and sharding, with kola's semantics
//! (mantle/kola/harness.go `filterTests`, `ParseDenyListYaml`, `shardTests`).

mod denylist;
mod glob;
mod shard;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use chrono::NaiveDate;

use denylist::DenyAction;
pub use denylist::{DenyEntry, Denylist, SKIP_CONSOLE_WARNINGS};
pub use glob::Glob;
pub use shard::Shard;

use super::test::{KolaTest, PLATFORM_INDEPENDENT_TAG};

/// kola's grace period: a test's failures count as WARN for this long after its `creationDate`.
pub const GRACE_PERIOD_DAYS: i64 = 30;

/// `--tag T` or `--tag '!T'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    Include(String),
    Exclude(String),
}

impl TagFilter {
    pub fn parse(s: &str) -> Result<TagFilter> {
        let f = match s.strip_prefix('!') {
            Some(t) => TagFilter::Exclude(t.trim().to_string()),
            None => TagFilter::Include(s.trim().to_string()),
        };
        if matches!(&f, TagFilter::Include(t) | TagFilter::Exclude(t) if t.is_empty() || t.contains(char::is_whitespace))
        {
            bail!("--tag `{s}`: expected one tag, or `!TAG` to exclude one");
        }
        Ok(f)
    }
}

impl FromStr for TagFilter {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        TagFilter::parse(s)
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagFilter::Include(t) => f.write_str(t),
            TagFilter::Exclude(t) => write!(f, "!{t}"),
        }
    }
}

/// What the user asked for and what the run is on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Name globs; empty: all tests.
    pub patterns: Vec<String>,
    pub tags: Vec<TagFilter>,
    pub platform: String,
    pub arch: String,
    pub distro: String,
    /// For stream-scoped denylist entries; `None`: those do not apply.
    pub stream: Option<String>,
    pub denylist: Option<Denylist>,
    pub shard: Option<Shard>,
}

impl Selection {
    /// An applicable `skip-console-warnings` denylist entry turns off console checks.
    pub fn skip_console_warnings(&self) -> bool {
        self.denylist.as_ref().is_some_and(|d| {
            d.skips_console_warnings(&self.platform, &self.arch, self.stream.as_deref())
        })
    }
}

/// The outcome of selection.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    pub run: Vec<KolaTest>,
    /// Tests the user's patterns/tags picked that will not run, and why.
    pub skipped: Vec<(String, String)>,
    /// Run, but a failure counts as WARN (denylist `warn: true`, or a test
    /// within its `creationDate` grace period). kola does not rerun these.
    pub warn_only: BTreeSet<String>,
}

/// Applies `sel` to `tests`. Errors: a pattern (the user's or the denylist's)
/// that matches no test, a malformed glob. With a shard, `run` and `skipped`
/// both hold only that shard's tests, so N shards' reports merge without
/// duplicates.
pub fn select(tests: Vec<KolaTest>, sel: &Selection, today: NaiveDate) -> Result<Selected> {
    let patterns = sel
        .patterns
        .iter()
        .map(|p| Glob::new(p))
        .collect::<Result<Vec<_>>>()?;
    let unmatched: Vec<&str> = patterns
        .iter()
        .filter(|g| !tests.iter().any(|t| g.matches(&t.name)))
        .map(Glob::as_str)
        .collect();
    if !unmatched.is_empty() {
        bail!("pattern(s) matching no test: {}", unmatched.join(", "));
    }
    let deny_rules = match &sel.denylist {
        Some(d) => {
            d.check_patterns(&tests)?;
            d.rules(&sel.platform, &sel.arch, sel.stream.as_deref(), today)?
        }
        None => Vec::new(),
    };
    let include: Vec<&str> = sel
        .tags
        .iter()
        .filter_map(|t| match t {
            TagFilter::Include(t) => Some(t.as_str()),
            TagFilter::Exclude(_) => None,
        })
        .collect();
    let exclude: Vec<&str> = sel
        .tags
        .iter()
        .filter_map(|t| match t {
            TagFilter::Exclude(t) => Some(t.as_str()),
            TagFilter::Include(_) => None,
        })
        .collect();

    let mut out = Selected::default();
    for t in tests {
        let name_match = patterns.iter().any(|g| g.matches(&t.name));
        let tag_match = include
            .iter()
            .any(|i| t.has_tag(i) || t.meta.required_tag.as_deref() == Some(i));
        if exclude.iter().any(|e| t.has_tag(e)) {
            continue;
        }
        if let Some(rt) = &t.meta.required_tag {
            if !include.contains(&rt.as_str()) {
                if name_match {
                    out.skipped.push((
                        t.name,
                        format!("requires tag {rt} (select it with --tag {rt})"),
                    ));
                }
                continue;
            }
        }
        // With patterns, a test is picked by name or tag; without, by tag if any
        // (all tests but the explicit-only ones when there is no tag either).
        let picked = if patterns.is_empty() {
            (include.is_empty() && !t.meta.explicit_only) || tag_match
        } else {
            name_match || tag_match
        };
        if !picked {
            continue;
        }
        if let Some(why) = not_for_this_run(&t, sel) {
            out.skipped.push((t.name, why));
            continue;
        }
        if let Some(bu) = &t.meta.butane_config {
            out.skipped.push((
                t.name.clone(),
                format!(
                    "its first-boot config is Butane ({}), which cosa cannot translate; commit a config.ign",
                    bu.display()
                ),
            ));
            continue;
        }
        let mut warn = false;
        let mut denied = None;
        for (g, action) in &deny_rules {
            if g.matches(&t.name) {
                match action {
                    DenyAction::Skip(why) => {
                        denied = Some(why.clone());
                        break;
                    }
                    DenyAction::Warn => warn = true,
                }
            }
        }
        if let Some(why) = denied {
            out.skipped.push((t.name, why));
            continue;
        }
        if let Some(created) = t.meta.creation_date {
            if today < created + chrono::Duration::days(GRACE_PERIOD_DAYS) {
                warn = true;
            }
        }
        if warn {
            out.warn_only.insert(t.name.clone());
        }
        out.run.push(t);
    }
    if let Some(shard) = &sel.shard {
        out.run.retain(|t| shard.contains(&t.name));
        out.skipped.retain(|(n, _)| shard.contains(n));
        out.warn_only.retain(|n| shard.contains(n));
    }
    Ok(out)
}

/// Why `t` does not run on this platform / architecture / distro, if it does not.
fn not_for_this_run(t: &KolaTest, sel: &Selection) -> Option<String> {
    let m = &t.meta;
    // kola runs platform-independent tests on qemu only.
    let qemu_only = ["qemu".to_string()];
    let platforms: &[String] = if t.has_tag(PLATFORM_INDEPENDENT_TAG) {
        &qemu_only
    } else {
        &m.platforms
    };
    let checks = [
        ("platform", &sel.platform, platforms, &m.exclude_platforms),
        (
            "architecture",
            &sel.arch,
            &m.architectures[..],
            &m.exclude_architectures,
        ),
        ("distro", &sel.distro, &m.distros[..], &m.exclude_distros),
    ];
    for (what, value, include, exclude) in checks {
        if exclude.contains(value) {
            return Some(format!(
                "{what} {value} is excluded (!{})",
                exclude.join(" ")
            ));
        }
        if !include.is_empty() && !include.contains(value) {
            return Some(format!(
                "{what} {value} is not one of: {}",
                include.join(" ")
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests;
