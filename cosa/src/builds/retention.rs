//! Retention policies for `cosa prune --policy FILE`: which builds of a stream to keep.
//!
//! A policy file is YAML keyed by stream name, as coreos-assembler's cloud-prune
//! policy is; each stream says what it keeps:
//!
//! ```yaml
//! stable:
//!   keep-last-n: 3          # the newest N builds
//!   keep-tagged: true       # builds a tag points at (the default)
//!   keep-younger-than: 30d  # builds made less than this long ago (s, h, d, w, y)
//! testing-devel:
//!   keep-last-n: 10
//! ```
//!
//! A build is kept if any rule keeps it; the newest build is always kept (a stream
//! cannot be pruned to nothing). One workdir holds one stream's builds, as one
//! coreos-assembler bucket prefix does, so the stream is given on the command line
//! or taken from the config's `stream` variable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::history::BuildsJson;

/// What one stream keeps.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StreamPolicy {
    /// Keep the newest N builds.
    #[serde(default)]
    pub keep_last_n: Option<usize>,
    /// Keep every build a tag points at.
    #[serde(default = "yes")]
    pub keep_tagged: bool,
    /// Keep builds younger than this (`30d`, `12h`, `2w`, `1y`).
    #[serde(default, deserialize_with = "de_age")]
    pub keep_younger_than: Option<Duration>,
}

fn yes() -> bool {
    true
}

impl StreamPolicy {
    /// The `cosa prune --keep N` policy: the newest N and the tagged ones.
    pub fn keep_last(n: usize) -> Self {
        StreamPolicy {
            keep_last_n: Some(n),
            keep_tagged: true,
            keep_younger_than: None,
        }
    }
}

fn de_age<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_age(&s).map(Some).map_err(serde::de::Error::custom)
}

/// `30d`, `12h`, `2w`, `1y` (365 days), `90s`.
pub fn parse_age(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("age {s:?}: expected a number and a unit (s, h, d, w, y)"))?;
    let secs = match unit {
        "s" => 1,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        "m" => bail!("age {s:?}: `m` is ambiguous (minutes or months); say it in days or hours"),
        _ => bail!("age {s:?}: unknown unit {unit:?} (use s, h, d, w or y)"),
    };
    Ok(Duration::from_secs(n * secs))
}

/// A policy file: stream name → what it keeps.
#[derive(Debug, Clone)]
pub struct Policy {
    streams: BTreeMap<String, StreamPolicy>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path)?;
        Self::parse(&text).with_context(|| format!("reading prune policy {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let streams: BTreeMap<String, StreamPolicy> = serde_yaml::from_str(text)?;
        if streams.is_empty() {
            bail!("the policy names no stream");
        }
        for (name, p) in &streams {
            if p.keep_last_n == Some(0) {
                bail!("stream {name}: keep-last-n must be at least 1 (the newest build is always kept)");
            }
            if p.keep_last_n.is_none() && p.keep_younger_than.is_none() && !p.keep_tagged {
                bail!("stream {name}: the policy keeps nothing but the newest build; say keep-last-n, keep-younger-than or keep-tagged");
            }
        }
        Ok(Policy { streams })
    }

    /// The policy of `stream`, or an error listing the streams the file has.
    pub fn stream(&self, stream: &str) -> Result<&StreamPolicy> {
        self.streams.get(stream).with_context(|| {
            format!(
                "the policy has no entry for stream {stream} (it has: {})",
                self.streams.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Why a build is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepReason {
    Newest,
    LastN,
    Tagged,
    Young,
}

impl KeepReason {
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Newest => "newest",
            KeepReason::LastN => "keep-last-n",
            KeepReason::Tagged => "tagged",
            KeepReason::Young => "keep-younger-than",
        }
    }
}

/// The decision for every build of `b`, newest first: `Ok(reasons kept)` or `Err(())` for
/// a build to delete. `age` gives a build's age (`None`: unknown, which keeps it when the
/// policy has an age rule: a build whose age cannot be told is not known to be old).
pub fn decide(
    b: &BuildsJson,
    p: &StreamPolicy,
    age: impl Fn(&str) -> Option<Duration>,
) -> Vec<(String, BTreeSet<KeepReason>)> {
    let tagged: BTreeSet<&str> = b.tags.iter().map(|t| t.target.as_str()).collect();
    b.builds
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut why = BTreeSet::new();
            if i == 0 {
                why.insert(KeepReason::Newest);
            }
            if p.keep_last_n.is_some_and(|n| i < n) {
                why.insert(KeepReason::LastN);
            }
            if p.keep_tagged && tagged.contains(e.id.as_str()) {
                why.insert(KeepReason::Tagged);
            }
            if let Some(max) = p.keep_younger_than {
                if age(&e.id).is_none_or(|a| a < max) {
                    why.insert(KeepReason::Young);
                }
            }
            (e.id.clone(), why)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::history::{BuildEntry, Tag};

    fn builds(ids: &[&str], tagged: &[&str]) -> BuildsJson {
        BuildsJson {
            builds: ids
                .iter()
                .map(|id| BuildEntry {
                    id: id.to_string(),
                    arches: vec!["x86_64".into()],
                })
                .collect(),
            tags: tagged
                .iter()
                .map(|t| Tag {
                    name: format!("t{t}"),
                    created: String::new(),
                    target: t.to_string(),
                })
                .collect(),
            ..BuildsJson::default()
        }
    }

    fn doomed(d: &[(String, BTreeSet<KeepReason>)]) -> Vec<&str> {
        d.iter()
            .filter(|(_, w)| w.is_empty())
            .map(|(id, _)| id.as_str())
            .collect()
    }

    #[test]
    fn ages_parse_with_units_and_refuse_ambiguity() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_age("1y").unwrap(), Duration::from_secs(365 * 86_400));
        assert!(format!("{:#}", parse_age("6m").unwrap_err()).contains("ambiguous"));
        assert!(format!("{:#}", parse_age("d").unwrap_err()).contains("number"));
        assert!(format!("{:#}", parse_age("3 days").unwrap_err()).contains("unit"));
    }

    #[test]
    fn policy_files_are_checked() {
        let p = Policy::parse(
            "stable: {keep-last-n: 2}\nnext: {keep-younger-than: 7d, keep-tagged: false}\n",
        )
        .unwrap();
        assert_eq!(p.stream("stable").unwrap(), &StreamPolicy::keep_last(2));
        let e = format!("{:#}", p.stream("rawhide").unwrap_err());
        assert!(e.contains("rawhide") && e.contains("next, stable"), "{e}");
        for (bad, want) in [
            ("stable: {keep-last-n: 0}", "at least 1"),
            ("stable: {keep-tagged: false}", "keeps nothing"),
            ("stable: {keep-last: 3}", "unknown field"),
            ("stable: {keep-younger-than: 3m}", "ambiguous"),
            ("{}", "no stream"),
        ] {
            let e = format!("{:#}", Policy::parse(bad).unwrap_err());
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn a_build_is_kept_if_any_rule_keeps_it() {
        let b = builds(&["5", "4", "3", "2", "1"], &["2"]);
        let day = Duration::from_secs(86_400);
        let age = |id: &str| {
            let n: u64 = id.parse().unwrap();
            // Build 5 is a day old, build 1 five days old; build 3's age is unknown.
            (n != 3).then(|| day * (6 - n as u32))
        };
        let p = StreamPolicy::keep_last(2);
        assert_eq!(doomed(&decide(&b, &p, age)), ["3", "1"]);
        let p = StreamPolicy {
            keep_last_n: None,
            keep_tagged: false,
            keep_younger_than: Some(day * 3),
        };
        // 5 (1 d) and 4 (2 d) are young, 3 is of unknown age; 2 and 1 go, tag or not.
        assert_eq!(doomed(&decide(&b, &p, age)), ["2", "1"]);
        let p = StreamPolicy {
            keep_last_n: Some(1),
            keep_tagged: true,
            keep_younger_than: Some(day),
        };
        let d = decide(&b, &p, age);
        assert_eq!(doomed(&d), ["4", "1"]);
        assert_eq!(d[2].1, [KeepReason::Young].into_iter().collect());
        assert_eq!(
            d[0].1,
            [KeepReason::Newest, KeepReason::LastN]
                .into_iter()
                .collect()
        );
        assert_eq!(d[3].1, [KeepReason::Tagged].into_iter().collect());
    }
}
