//! A resolved RPM: the type the resolver (`compose::dnf`) produces and the lockfiles
//! (`config::lockfile`), the import cache and the commit metadata consume.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One resolved package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// Repo id, or "@commandline" for local RPMs.
    pub repo: String,
    /// "sha256:<hex>" from the repo metadata; computed for local RPMs.
    pub checksum: String,
    pub size: u64,
    /// The .rpm file on disk: set by `download` (local RPMs: their own path).
    pub location: PathBuf,
}

impl Package {
    /// `name-[epoch:]version-release.arch`
    pub fn nevra(&self) -> String {
        format!("{}-{}", self.name, self.evra())
    }

    /// `[epoch:]version-release.arch`, the form rpm-ostree lockfiles use.
    pub fn evra(&self) -> String {
        if self.epoch == 0 {
            format!("{}-{}.{}", self.version, self.release, self.arch)
        } else {
            format!(
                "{}:{}-{}.{}",
                self.epoch, self.version, self.release, self.arch
            )
        }
    }

    /// The conventional file name of this package's RPM.
    pub fn filename(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evra_and_nevra() {
        let mut p = Package {
            name: "foo".into(),
            epoch: 0,
            version: "1.2".into(),
            release: "3".into(),
            arch: "x86_64".into(),
            repo: "r".into(),
            checksum: String::new(),
            size: 0,
            location: PathBuf::new(),
        };
        assert_eq!(p.evra(), "1.2-3.x86_64");
        assert_eq!(p.nevra(), "foo-1.2-3.x86_64");
        p.epoch = 2;
        assert_eq!(p.nevra(), "foo-2:1.2-3.x86_64");
        assert_eq!(p.filename(), "foo-1.2-3.x86_64.rpm");
    }
}
