//! `builds/builds.json`, per-build directories and `builds/latest`, in coreos-assembler's shape.

use fs_err as fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::meta::Meta;
use super::workdir::write_atomic;
use crate::config::lockfile::Lockfile;

pub const SCHEMA_VERSION: &str = "1.0.0";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildEntry {
    pub id: String,
    pub arches: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tag {
    pub name: String,
    pub created: String,
    pub target: String,
}

/// `builds/builds.json`: the builds, newest first, and the tags pointing at them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct BuildsJson {
    pub schema_version: String,
    pub builds: Vec<BuildEntry>,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Unix timestamp as meta.json writes times (`2020-01-15T19:31:31Z`).
pub fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Default for BuildsJson {
    fn default() -> Self {
        BuildsJson {
            schema_version: SCHEMA_VERSION.into(),
            builds: Vec::new(),
            timestamp: now_rfc3339(),
            tags: Vec::new(),
        }
    }
}

/// The build history of one workdir.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

impl History {
    pub fn new(builds_dir: PathBuf) -> Self {
        History { dir: builds_dir }
    }

    fn json_path(&self) -> PathBuf {
        self.dir.join("builds.json")
    }

    pub fn load(&self) -> Result<BuildsJson> {
        let p = self.json_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BuildsJson::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    pub fn save(&self, b: &BuildsJson) -> Result<()> {
        let mut b = b.clone();
        b.timestamp = now_rfc3339();
        let mut s = serde_json::to_vec_pretty(&b)?;
        s.push(b'\n');
        write_atomic(&self.json_path(), &s)?;
        self.update_latest(&b)
    }

    fn update_latest(&self, b: &BuildsJson) -> Result<()> {
        let link = self.dir.join("latest");
        let tmp = self.dir.join(".latest.tmp");
        let _ = fs::remove_file(&tmp);
        match b.builds.first() {
            Some(newest) => {
                fs_err::os::unix::fs::symlink(&newest.id, &tmp)?;
                fs::rename(&tmp, &link).with_context(|| format!("updating {}", link.display()))?;
            }
            None => {
                let _ = fs::remove_file(&link);
            }
        }
        Ok(())
    }

    /// `builds/<id>/<arch>`.
    pub fn build_dir(&self, id: &str, arch: &str) -> PathBuf {
        self.dir.join(id).join(arch)
    }

    /// Resolve a user-given build ID; `None` or `latest` means the newest.
    pub fn resolve_id(&self, id: Option<&str>) -> Result<String> {
        let b = self.load()?;
        match id {
            None | Some("latest") => match b.builds.first() {
                Some(e) => Ok(e.id.clone()),
                None => bail!("no builds yet in {} (run `cosa build`)", self.dir.display()),
            },
            Some(id) => {
                if b.builds.iter().any(|e| e.id == id) {
                    Ok(id.to_string())
                } else if let Some(t) = b.tags.iter().find(|t| t.name == id) {
                    Ok(t.target.clone())
                } else {
                    bail!(
                        "no build or tag named {id} in {}",
                        self.json_path().display()
                    )
                }
            }
        }
    }

    pub fn load_meta(&self, id: &str, arch: &str) -> Result<Meta> {
        Meta::load(&self.build_dir(id, arch).join("meta.json"))
    }

    /// The package set a build recorded (composed builds have it, imported ones not).
    pub fn build_lockfile(&self, id: &str, arch: &str) -> Result<Lockfile> {
        Lockfile::load(
            &self
                .build_dir(id, arch)
                .join(Lockfile::generated_name(arch)),
        )
    }

    /// Move a fully written staging directory into place as `builds/<id>/<arch>` and
    /// record the build as the newest. The staging dir must be inside `builds/`.
    pub fn commit_build(&self, staging: &Path, id: &str, arch: &str) -> Result<()> {
        let mut b = self.load()?;
        if b.builds.iter().any(|e| e.id == id) {
            bail!(
                "build {id} already exists in {}",
                self.json_path().display()
            );
        }
        let id_dir = self.dir.join(id);
        fs::create_dir_all(&id_dir).with_context(|| format!("creating {}", id_dir.display()))?;
        let dest = id_dir.join(arch);
        fs::rename(staging, &dest)
            .with_context(|| format!("moving {} to {}", staging.display(), dest.display()))?;
        b.builds.insert(
            0,
            BuildEntry {
                id: id.to_string(),
                arches: vec![arch.to_string()],
            },
        );
        if let Err(e) = self.save(&b) {
            // Keep builds/ and builds.json in agreement.
            let _ = fs::remove_dir_all(&id_dir);
            return Err(e);
        }
        Ok(())
    }

    /// Point tag `name` at a build (`None`: the newest), replacing a tag of that name;
    /// returns the build ID.
    pub fn add_tag(&self, name: &str, build: Option<&str>) -> Result<String> {
        let target = self.resolve_id(build)?;
        let mut b = self.load()?;
        b.tags.retain(|t| t.name != name);
        b.tags.push(Tag {
            name: name.to_string(),
            created: now_rfc3339(),
            target: target.clone(),
        });
        self.save(&b)?;
        Ok(target)
    }

    pub fn delete_tag(&self, name: &str) -> Result<()> {
        let mut b = self.load()?;
        let n = b.tags.len();
        b.tags.retain(|t| t.name != name);
        if b.tags.len() == n {
            bail!("no tag named {name}");
        }
        self.save(&b)
    }

    /// Remove leftovers of builds that were interrupted before they were recorded.
    pub fn clean_staging(&self) -> Result<()> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for e in rd {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(".staging-") {
                tracing::info!(
                    "removing leftover of an interrupted build: {}",
                    e.path().display()
                );
                fs::remove_dir_all(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    /// A fresh staging directory inside builds/ (same filesystem, so the final move is a rename).
    pub fn staging_dir(&self) -> Result<tempfile::TempDir> {
        fs::create_dir_all(&self.dir)?;
        tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&self.dir)
            .with_context(|| format!("creating a staging directory in {}", self.dir.display()))
    }
}

/// The repo ref that keeps a build's commit alive until the build is pruned.
pub fn build_ref(id: &str) -> String {
    format!("cosa/build/{id}")
}

/// The next version for a build: `automatic-version-prefix` with `<date:FORMAT>` expanded,
/// then `.N`, where N counts up from 0 among existing versions with the same prefix.
pub fn next_version(
    prefix: Option<&str>,
    existing: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let prefix = expand_date(prefix.unwrap_or("<date:%Y%m%d>"), now)?;
    let next = existing
        .iter()
        .filter_map(|v| {
            v.strip_prefix(&prefix)?
                .strip_prefix('.')?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(0, |n| n + 1);
    Ok(format!("{prefix}.{next}"))
}

fn expand_date(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("<date:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "<date:".len()..];
        let end = after
            .find('>')
            .with_context(|| format!("unterminated <date:…> in automatic-version-prefix {s:?}"))?;
        let fmt = &after[..end];
        let items: Vec<_> = chrono::format::StrftimeItems::new(fmt).collect();
        if items
            .iter()
            .any(|i| matches!(i, chrono::format::Item::Error))
        {
            bail!("invalid date format {fmt:?} in automatic-version-prefix {s:?}");
        }
        out.push_str(&now.format_with_items(items.into_iter()).to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn versions_count_up_within_a_prefix() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
            .unwrap();
        let p = Some("40.<date:%Y%m%d>.1");
        assert_eq!(next_version(p, &[], now).unwrap(), "40.20261120.1.0");
        let existing = vec![
            "40.20261120.1.0".into(),
            "40.20261120.1.1".into(),
            "40.20261119.1.7".into(),
        ];
        assert_eq!(next_version(p, &existing, now).unwrap(), "40.20261120.1.2");
        assert_eq!(next_version(None, &[], now).unwrap(), "20261120.0");
        assert!(next_version(Some("<date:%Y"), &[], now).is_err());
    }

    #[test]
    fn commit_build_records_newest_first_and_latest() {
        let t = tempfile::tempdir().unwrap();
        let h = History::new(t.path().to_path_buf());
        for id in ["1", "2"] {
            let s = h.staging_dir().unwrap().keep();
            fs::write(s.join("meta.json"), "{}").unwrap();
            h.commit_build(&s, id, "x86_64").unwrap();
        }
        let b = h.load().unwrap();
        assert_eq!(b.builds[0].id, "2");
        assert_eq!(b.schema_version, "1.0.0");
        assert_eq!(
            fs::read_link(t.path().join("latest")).unwrap(),
            Path::new("2")
        );
        assert!(t.path().join("2/x86_64/meta.json").exists());
        assert_eq!(h.resolve_id(None).unwrap(), "2");
        assert!(h.resolve_id(Some("nope")).is_err());
    }

    #[test]
    fn tags_name_builds() {
        let t = tempfile::tempdir().unwrap();
        let h = History::new(t.path().to_path_buf());
        for id in ["1", "2"] {
            let s = h.staging_dir().unwrap().keep();
            h.commit_build(&s, id, "x86_64").unwrap();
        }
        assert_eq!(h.add_tag("keep", Some("1")).unwrap(), "1");
        assert_eq!(h.add_tag("keep", None).unwrap(), "2");
        assert_eq!(h.load().unwrap().tags.len(), 1);
        assert_eq!(h.resolve_id(Some("keep")).unwrap(), "2");
        h.delete_tag("keep").unwrap();
        assert!(h.delete_tag("keep").is_err());
    }

    #[test]
    fn staging_leftovers_are_cleaned() {
        let t = tempfile::tempdir().unwrap();
        let h = History::new(t.path().to_path_buf());
        let s = h.staging_dir().unwrap().keep();
        h.clean_staging().unwrap();
        assert!(!s.exists());
    }
}
