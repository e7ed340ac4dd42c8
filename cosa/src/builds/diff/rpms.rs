//! `--rpms`: the package sets of two lockfiles, changes sorted into upgrades and
//! downgrades by rpm's version order.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::{Change, Lines};
use crate::builds::meta::pkgdiff::{pkgdiff, PkgDiff, PkgDiffKind, PkgEvra};
use crate::compose::dnf::rpmvercmp;
use crate::config::lockfile::Lockfile;

/// One package of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    /// `EPOCH:VERSION-RELEASE`, the epoch only when the package sets one.
    pub evr: String,
    pub arch: String,
}

impl From<&PkgEvra> for Package {
    fn from(p: &PkgEvra) -> Self {
        Package {
            name: p.0.clone(),
            evr: p.1.clone(),
            arch: p.2.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RpmsDiff {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    pub upgraded: Vec<Change<Package>>,
    pub downgraded: Vec<Change<Package>>,
    /// Versions equal in rpm's order but the entries differ (the arch, or an EVR
    /// spelled differently).
    pub changed: Vec<Change<Package>>,
}

impl RpmsDiff {
    /// From `old`'s package set to `new`'s (meta.json's `pkgdiff`, sorted by kind).
    pub fn of(old: &Lockfile, new: &Lockfile) -> Self {
        let mut d = RpmsDiff::default();
        for PkgDiff(_, kind, v) in pkgdiff(old, new) {
            let (from, to) = (v.previous_package.as_ref(), v.new_package.as_ref());
            match (kind, from, to) {
                (PkgDiffKind::Added, _, Some(p)) => d.added.push(p.into()),
                (PkgDiffKind::Removed, Some(p), _) => d.removed.push(p.into()),
                (PkgDiffKind::Changed, Some(f), Some(t)) => {
                    let c = Change {
                        from: f.into(),
                        to: t.into(),
                    };
                    match evr_cmp(f.evr(), t.evr()) {
                        Ordering::Less => d.upgraded.push(c),
                        Ordering::Greater => d.downgraded.push(c),
                        Ordering::Equal => d.changed.push(c),
                    }
                }
                // pkgdiff fills the sides its kind names.
                _ => {}
            }
        }
        d.added.sort_by(|a, b| a.name.cmp(&b.name));
        d.removed.sort_by(|a, b| a.name.cmp(&b.name));
        for l in [&mut d.upgraded, &mut d.downgraded, &mut d.changed] {
            l.sort_by(|a, b| a.to.name.cmp(&b.to.name));
        }
        d
    }

    pub(super) fn lines(&self) -> Lines {
        let mut l = Lines::new();
        for p in &self.added {
            l.push((p.name.clone(), format!("+ {} {}", p.name, p.evr)));
        }
        for p in &self.removed {
            l.push((p.name.clone(), format!("- {} {}", p.name, p.evr)));
        }
        let changes = [
            (&self.upgraded, ""),
            (&self.downgraded, " (downgrade)"),
            (&self.changed, ""),
        ];
        for (list, note) in changes {
            for c in list {
                let (f, t) = (&c.from, &c.to);
                let line = if f.evr == t.evr || f.arch != t.arch {
                    format!(
                        "~ {} {}.{} -> {}.{}{note}",
                        t.name, f.evr, f.arch, t.evr, t.arch
                    )
                } else {
                    format!("~ {} {} -> {}{note}", t.name, f.evr, t.evr)
                };
                l.push((t.name.clone(), line));
            }
        }
        l
    }
}

/// Compare two `[EPOCH:]VERSION[-RELEASE]` as rpm does: epoch (absent is 0), then
/// version, then release.
pub fn evr_cmp(a: &str, b: &str) -> Ordering {
    let split = |s: &'_ str| -> (u64, String, String) {
        let (e, vr) = match s.split_once(':') {
            Some((e, vr)) => (e.parse().unwrap_or(0), vr),
            None => (0, s),
        };
        let (v, r) = vr.rsplit_once('-').unwrap_or((vr, ""));
        (e, v.to_string(), r.to_string())
    };
    let (ea, va, ra) = split(a);
    let (eb, vb, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(&va, &vb))
        .then_with(|| rpmvercmp(&ra, &rb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lockfile::LockedPackage;
    use Ordering::*;

    #[test]
    fn rpm_version_order() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("10", "9", Greater),
            ("1.010", "1.10", Equal),
            ("1.0a", "1.0", Greater),
            ("a", "1", Less),
            ("1.a", "1.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^", "1.0^", Equal),
            ("1_0", "1.0", Equal),
            ("fc39", "fc40", Less),
            ("6.0.0", "6.0.0-", Equal),
        ] {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a), want.reverse(), "{b} vs {a}");
        }
        assert_eq!(evr_cmp("1:1.0-1", "2.0-1"), Greater);
        assert_eq!(evr_cmp("0:2.0-1", "2.0-1"), Equal);
        assert_eq!(evr_cmp("6.0-1", "6.1-1"), Less);
        assert_eq!(evr_cmp("6.1-10", "6.1-9"), Greater);
    }

    fn lock(pkgs: &[(&str, &str)]) -> Lockfile {
        Lockfile {
            packages: pkgs
                .iter()
                .map(|(n, evra)| {
                    let p = LockedPackage {
                        evra: evra.to_string(),
                        ..Default::default()
                    };
                    (n.to_string(), p)
                })
                .collect(),
            metadata: None,
        }
    }

    #[test]
    fn packages_sorted_by_what_happened() {
        let old = lock(&[
            ("kernel", "6.0-1.x86_64"),
            ("glibc", "2.39-2.x86_64"),
            ("tool", "1-1.noarch"),
            ("gone", "1-1.x86_64"),
            ("same", "1-1.x86_64"),
        ]);
        let new = lock(&[
            ("kernel", "6.1-1.x86_64"),
            ("glibc", "2.39-1.x86_64"),
            ("tool", "1-1.x86_64"),
            ("jq", "1:1.7-1.x86_64"),
            ("same", "1-1.x86_64"),
        ]);
        let d = RpmsDiff::of(&old, &new);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({
                "added": [{"name": "jq", "evr": "1:1.7-1", "arch": "x86_64"}],
                "removed": [{"name": "gone", "evr": "1-1", "arch": "x86_64"}],
                "upgraded": [{
                    "from": {"name": "kernel", "evr": "6.0-1", "arch": "x86_64"},
                    "to": {"name": "kernel", "evr": "6.1-1", "arch": "x86_64"},
                }],
                "downgraded": [{
                    "from": {"name": "glibc", "evr": "2.39-2", "arch": "x86_64"},
                    "to": {"name": "glibc", "evr": "2.39-1", "arch": "x86_64"},
                }],
                "changed": [{
                    "from": {"name": "tool", "evr": "1-1", "arch": "noarch"},
                    "to": {"name": "tool", "evr": "1-1", "arch": "x86_64"},
                }],
            })
        );
        let mut lines: Vec<String> = d.lines().into_iter().map(|(_, l)| l).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "+ jq 1:1.7-1",
                "- gone 1-1",
                "~ glibc 2.39-2 -> 2.39-1 (downgrade)",
                "~ kernel 6.0-1 -> 6.1-1",
                "~ tool 1-1.noarch -> 1-1.x86_64",
            ]
        );
        assert_eq!(RpmsDiff::of(&old, &old), RpmsDiff::default());
    }
}
