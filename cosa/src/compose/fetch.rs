//! Resolving and downloading the package set of a treefile (`cosa fetch`, and the
//! first step of `cosa build`).

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::dnf::{Dnf, DownloadStats, Package, PackageRequest, RepoSetup};
use crate::builds::Workdir;
use crate::config::lockfile::Lockfile;
use crate::config::treefile::Treefile;

pub struct Fetched {
    /// Sorted by name, each with its local `location`.
    pub packages: Vec<Package>,
    /// Whether overrides/rpm replaced any package.
    pub overrides_active: bool,
    pub stats: DownloadStats,
}

fn files_with_ext(dir: &std::path::Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                if p.extension().is_some_and(|e| e == ext) {
                    v.push(p);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    v.sort();
    Ok(v)
}

/// Resolve the treefile's packages against its repos (the `.repo` files beside it),
/// with the config's lockfile pins and the workdir's overrides/rpm, and download them.
pub fn fetch(wd: &Workdir, tf: &Treefile, strict: bool) -> Result<Fetched> {
    let setup = RepoSetup {
        repo_files: files_with_ext(&tf.config_dir, "repo")?,
        enabled: tf.repos.clone(),
        releasever: tf.releasever.clone(),
        basearch: tf.basearch.clone(),
        cache_dir: wd.cache_dir().join("dnf"),
    };
    let local_rpms = files_with_ext(&wd.overrides_rpm_dir(), "rpm")?;
    let lock = Lockfile::for_config(&tf.config_dir, &tf.basearch)?;
    if strict && lock.is_none() {
        anyhow::bail!(
            "--strict: the config in {} has no manifest-lock.{}.json",
            tf.config_dir.display(),
            tf.basearch
        );
    }
    let req = PackageRequest {
        install: tf.packages.clone(),
        exclude: tf.exclude_packages.clone(),
        local_rpms: local_rpms.clone(),
        locked: lock.as_ref().map(Lockfile::pins),
        strict,
        recommends: tf.recommends.unwrap_or(false),
    };
    let mut dnf = Dnf::new(&setup)?;
    let mut packages = dnf.resolve(&req)?;
    let rpms = wd.rpms_dir();
    fs::create_dir_all(&rpms).with_context(|| format!("creating {}", rpms.display()))?;
    let stats = dnf.download(&mut packages, &rpms)?;
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Fetched {
        overrides_active: !local_rpms.is_empty(),
        packages,
        stats,
    })
}

/// Where fetch leaves the generated lockfile in the workdir.
pub fn generated_lockfile_path(wd: &Workdir, arch: &str) -> PathBuf {
    wd.tmp_dir().join(generated_lockfile_name(arch))
}

pub fn generated_lockfile_name(arch: &str) -> String {
    format!("manifest-lock.generated.{arch}.json")
}
