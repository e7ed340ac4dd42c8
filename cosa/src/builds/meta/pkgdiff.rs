//! meta.json's `pkgdiff`: rpm-ostree's shape of the package changes between two
//! builds, `[name, kind, {"PreviousPackage": [name, evr, arch], "NewPackage": …}]`.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::config::lockfile::Lockfile;

/// One changed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PkgDiff(pub String, pub PkgDiffKind, pub PkgVersions);

/// rpm-ostree's numbers for what happened to a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum PkgDiffKind {
    Added = 1,
    Removed = 2,
    /// Upgraded or downgraded.
    Changed = 3,
}

impl From<PkgDiffKind> for u8 {
    fn from(k: PkgDiffKind) -> u8 {
        k as u8
    }
}

impl TryFrom<u8> for PkgDiffKind {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        match n {
            1 => Ok(PkgDiffKind::Added),
            2 => Ok(PkgDiffKind::Removed),
            3 => Ok(PkgDiffKind::Changed),
            _ => Err(format!("unknown pkgdiff kind {n} (expected 1, 2 or 3)")),
        }
    }
}

impl JsonSchema for PkgDiffKind {
    fn schema_name() -> Cow<'static, str> {
        "PkgDiffKind".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "enum": [1, 2, 3]})
    }
}

/// The package before and after; one side is absent for an added or removed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PkgVersions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_package: Option<PkgEvra>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_package: Option<PkgEvra>,
}

/// `[name, evr, arch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PkgEvra(pub String, pub String, pub String);

impl PkgEvra {
    /// From a lockfile entry: `name` and its `EVR.ARCH`.
    fn of(name: &str, evra: &str) -> Self {
        let (evr, arch) = evra.rsplit_once('.').unwrap_or((evra, ""));
        PkgEvra(name.to_string(), evr.to_string(), arch.to_string())
    }

    pub fn evr(&self) -> &str {
        &self.1
    }
}

/// The changes from `old`'s package set to `new`'s: added and changed packages in
/// name order, then removed ones.
pub fn pkgdiff(old: &Lockfile, new: &Lockfile) -> Vec<PkgDiff> {
    let mut out = Vec::new();
    for (n, p) in &new.packages {
        let versions = match old.packages.get(n) {
            None => PkgVersions {
                previous_package: None,
                new_package: Some(PkgEvra::of(n, &p.evra)),
            },
            Some(o) if o.evra != p.evra => PkgVersions {
                previous_package: Some(PkgEvra::of(n, &o.evra)),
                new_package: Some(PkgEvra::of(n, &p.evra)),
            },
            Some(_) => continue,
        };
        let kind = if versions.previous_package.is_some() {
            PkgDiffKind::Changed
        } else {
            PkgDiffKind::Added
        };
        out.push(PkgDiff(n.clone(), kind, versions));
    }
    for (n, o) in &old.packages {
        if !new.packages.contains_key(n) {
            out.push(PkgDiff(
                n.clone(),
                PkgDiffKind::Removed,
                PkgVersions {
                    previous_package: Some(PkgEvra::of(n, &o.evra)),
                    new_package: None,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::lockfile::LockedPackage;

    fn lock(pkgs: &[(&str, &str)]) -> Lockfile {
        Lockfile {
            packages: pkgs
                .iter()
                .map(|(n, evra)| {
                    (
                        n.to_string(),
                        LockedPackage {
                            evra: evra.to_string(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            metadata: None,
        }
    }

    #[test]
    fn rpm_ostree_shape() {
        let old = lock(&[
            ("a", "1-1.x86_64"),
            ("b", "1:2-1.noarch"),
            ("gone", "1-1.x86_64"),
        ]);
        let new = lock(&[
            ("a", "1-1.x86_64"),
            ("b", "1:3-1.noarch"),
            ("new", "5-2.x86_64"),
        ]);
        let d = pkgdiff(&old, &new);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!([
                ["b", 3, {"PreviousPackage": ["b", "1:2-1", "noarch"], "NewPackage": ["b", "1:3-1", "noarch"]}],
                ["new", 1, {"NewPackage": ["new", "5-2", "x86_64"]}],
                ["gone", 2, {"PreviousPackage": ["gone", "1-1", "x86_64"]}],
            ])
        );
        let back: Vec<PkgDiff> = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_value::<PkgDiff>(json!(["x", 4, {}])).is_err());
    }
}
