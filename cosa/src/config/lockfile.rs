//! rpm-ostree lockfiles: `manifest-lock.<arch>.json` (pins in the config),
//! `manifest-lock.overrides.<arch>.{json,yaml}` (pins that win over those), and the
//! `manifest-lock.generated.<arch>.json` that `cosa fetch` and `cosa build` write.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::package::Package;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub evra: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Only in override lockfiles (rpm-ostree's format): which repo to take it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Lockfile {
    #[serde(default)]
    pub packages: BTreeMap<String, LockedPackage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl Lockfile {
    pub fn load(path: &Path) -> Result<Self> {
        let s = fs_err::read_to_string(path).context("reading lockfile")?;
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml {
            serde_yaml::from_str(&s).with_context(|| format!("parsing lockfile {}", path.display()))
        } else {
            serde_json::from_str(&s).with_context(|| format!("parsing lockfile {}", path.display()))
        }
    }

    /// The config's pins for `arch`: the base lockfile, then the overrides lockfile
    /// on top. `None` when the config has neither.
    pub fn for_config(config_dir: &Path, arch: &str) -> Result<Option<Self>> {
        let mut merged: Option<Lockfile> = None;
        for name in [
            format!("manifest-lock.{arch}.json"),
            format!("manifest-lock.overrides.{arch}.json"),
            format!("manifest-lock.overrides.{arch}.yaml"),
            "manifest-lock.overrides.yaml".to_string(),
        ] {
            let p = config_dir.join(&name);
            if p.exists() {
                let l = Lockfile::load(&p)?;
                merged
                    .get_or_insert_with(Lockfile::default)
                    .packages
                    .extend(l.packages);
            }
        }
        Ok(merged)
    }

    /// The name of the lockfile `cosa fetch` and `cosa build` write.
    pub fn generated_name(arch: &str) -> String {
        format!("manifest-lock.generated.{arch}.json")
    }

    /// name → evra, as the resolver takes it.
    pub fn pins(&self) -> BTreeMap<String, String> {
        self.packages
            .iter()
            .map(|(k, v)| (k.clone(), v.evra.clone()))
            .collect()
    }

    /// The lockfile describing a resolved package set.
    pub fn generated(pkgs: &[Package]) -> Self {
        Lockfile {
            packages: pkgs
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        LockedPackage {
                            evra: p.evra(),
                            digest: Some(p.checksum.clone()),
                            metadata: None,
                        },
                    )
                })
                .collect(),
            // meta.json's time format; formatted here so config does not depend on builds.
            metadata: Some(serde_json::json!({
                "generated": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
            })),
        }
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("manifest-lock.x86_64.json"),
            r#"{"packages": {"a": {"evra": "1-1.x86_64"}, "b": {"evra": "2-1.noarch"}}}"#,
        )
        .unwrap();
        std::fs::write(
            t.path().join("manifest-lock.overrides.yaml"),
            "packages:\n  a:\n    evra: 1-2.x86_64\n",
        )
        .unwrap();
        let l = Lockfile::for_config(t.path(), "x86_64").unwrap().unwrap();
        assert_eq!(l.pins()["a"], "1-2.x86_64");
        assert_eq!(l.pins()["b"], "2-1.noarch");
        assert!(Lockfile::for_config(t.path(), "aarch64").unwrap().is_some());
        let empty = tempfile::tempdir().unwrap();
        assert!(Lockfile::for_config(empty.path(), "x86_64")
            .unwrap()
            .is_none());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("l.json");
        std::fs::write(
            &p,
            r#"{"packages": {"a": {"evra": "1-1.x86_64", "bogus": 1}}}"#,
        )
        .unwrap();
        let e = Lockfile::load(&p).unwrap_err();
        assert!(format!("{e:#}").contains("bogus"), "{e:#}");
    }
}
