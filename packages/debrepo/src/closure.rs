//! A closure definition (`<name>.toml`) and its pins (`<name>.lock`).
//!
//! The definition names the root packages, the names the stream's own recipes
//! provide (so Debian's are not pulled in), which provider answers a virtual
//! package, and the maintainer-script effects cosa cannot read from a script.
//! The lock pins every package of the resolved closure: name, version,
//! architecture and the SHA-256 of the .deb, one per line, sorted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Definition {
    /// What the closure is for, shown in the repo's summary.
    pub description: String,
    /// The packages the OS is made of; the closure is what they depend on.
    pub roots: Vec<String>,
    /// Names (real or virtual) the stream's own recipes provide: a dependency on
    /// one of them is satisfied outside the closure.
    #[serde(default)]
    pub external: Vec<String>,
    /// Virtual package -> the provider to take when no alternative is in the
    /// closure yet and several packages provide it.
    #[serde(default)]
    pub prefer: BTreeMap<String, String>,
    /// Package -> sysusers.d lines for the users and groups its maintainer
    /// scripts create (an empty list: it creates none that matter).
    #[serde(default)]
    pub sysusers: BTreeMap<String, Vec<String>>,
    /// Package -> systemd units its maintainer scripts enable beyond the ones
    /// cosa reads from debhelper's `deb-systemd-helper enable` lines.
    #[serde(default)]
    pub enable: BTreeMap<String, Vec<String>>,
    /// Package -> a %posttrans scriptlet standing in for what its maintainer
    /// scripts or dpkg triggers do after installation (`ldconfig` for libc-bin).
    #[serde(default)]
    pub posttrans: BTreeMap<String, String>,
    /// Package -> the alternatives its scripts install, for scripts that compute
    /// them (cosa reads only literal `update-alternatives --install` lines).
    /// Replaces what was read from that package's scripts.
    #[serde(default)]
    pub alternatives: BTreeMap<String, Vec<AlternativeDecl>>,
}

/// One `update-alternatives --install LINK NAME PATH PRIORITY`, declared.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlternativeDecl {
    pub name: String,
    pub link: String,
    pub path: String,
    pub priority: i64,
}

impl Definition {
    pub fn load(path: &Path) -> Result<Definition> {
        let text = fs::read_to_string(path)?;
        let def: Definition =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if def.roots.is_empty() {
            bail!("{}: `roots` is empty", path.display());
        }
        Ok(def)
    }

    pub fn is_external(&self, name: &str) -> bool {
        self.external.iter().any(|e| e == name)
    }
}

/// One pinned .deb.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pin {
    pub name: String,
    /// The Debian version, with its epoch.
    pub version: String,
    pub arch: String,
    pub sha256: String,
}

impl Pin {
    /// The file name the .deb is cached under (`NAME_VERSION_ARCH.deb`, epoch
    /// dropped, as Debian names them).
    pub fn file_name(&self) -> String {
        let v = self
            .version
            .split_once(':')
            .map_or(&*self.version, |(_, v)| v);
        format!("{}_{}_{}.deb", self.name, v, self.arch)
    }
}

pub const LOCK_HEADER: &str = "# Pinned Debian packages: NAME VERSION ARCH SHA256. Written by `debrepo lock`;\n# edit the .toml beside it and re-run, do not edit by hand.\n";

pub fn read_lock(path: &Path) -> Result<Vec<Pin>> {
    let text = fs::read_to_string(path)?;
    let mut pins = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [name, version, arch, sha256] = f[..] else {
            bail!(
                "{}:{}: expected NAME VERSION ARCH SHA256, got {line:?}",
                path.display(),
                i + 1
            );
        };
        pins.push(Pin {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            sha256: sha256.into(),
        });
    }
    pins.sort();
    Ok(pins)
}

pub fn render_lock(pins: &[Pin]) -> String {
    let mut s = String::from(LOCK_HEADER);
    for p in pins {
        let _ = writeln!(s, "{} {} {} {}", p.name, p.version, p.arch, p.sha256);
    }
    s
}

/// What changed between two locks, one line per package, for a person to read.
pub fn diff(old: &[Pin], new: &[Pin]) -> Vec<String> {
    let old: BTreeMap<&str, &Pin> = old.iter().map(|p| (p.name.as_str(), p)).collect();
    let new: BTreeMap<&str, &Pin> = new.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = Vec::new();
    for (name, p) in &new {
        match old.get(name) {
            None => out.push(format!("+ {name} {}", p.version)),
            Some(o) if o.version != p.version => {
                out.push(format!("~ {name} {} -> {}", o.version, p.version))
            }
            Some(o) if o.sha256 != p.sha256 => {
                out.push(format!("~ {name} {} (rebuilt: new checksum)", p.version))
            }
            Some(_) => {}
        }
    }
    for (name, o) in &old {
        if !new.contains_key(name) {
            out.push(format!("- {name} {}", o.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(name: &str, version: &str) -> Pin {
        Pin {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: "00".into(),
        }
    }

    #[test]
    fn lock_round_trips_and_names_files_without_epoch() {
        let pins = vec![pin("a", "1:9.2p1-2"), pin("b", "252.39-1~deb12u2")];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        fs::write(&p, render_lock(&pins)).unwrap();
        assert_eq!(read_lock(&p).unwrap(), pins);
        assert_eq!(pins[0].file_name(), "a_9.2p1-2_amd64.deb");
    }

    #[test]
    fn diff_lists_added_removed_and_changed() {
        let old = vec![pin("a", "1"), pin("b", "1")];
        let new = vec![pin("a", "2"), pin("c", "1")];
        assert_eq!(diff(&old, &new), ["~ a 1 -> 2", "+ c 1", "- b 1"]);
    }

    #[test]
    fn a_bad_lock_line_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        fs::write(&p, "# c\na 1 amd64\n").unwrap();
        let e = read_lock(&p).unwrap_err().to_string();
        assert!(e.contains("x.lock:2"), "{e}");
    }
}
