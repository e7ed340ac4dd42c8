//! Resolving and downloading the package set of a treefile (`cosa fetch`, and the
//! first step of `cosa build`).

use std::path::PathBuf;

use anyhow::Result;
use fs_err as fs;

use super::dnf::{Dnf, DownloadStats, Package, PackageRequest, RepoSetup};
use crate::builds::workdir::write_atomic;
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
        Err(e) => return Err(e.into()),
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
    fs::create_dir_all(&rpms)?;
    let stats = dnf.download(&mut packages, &rpms)?;
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Fetched {
        overrides_active: !local_rpms.is_empty(),
        packages,
        stats,
    })
}

/// How `cosa fetch` runs.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Refuse packages the config's lockfile does not pin.
    pub strict: bool,
    /// Also write the resolved set as the config's `manifest-lock.<arch>.json`.
    pub update_lockfile: bool,
}

/// What `fetch_and_lock` did.
pub struct FetchedAndLocked {
    pub fetched: Fetched,
    /// The generated lockfile in the workdir.
    pub lockfile: PathBuf,
    /// The config's lockfile, when it was updated.
    pub config_lockfile: Option<PathBuf>,
}

/// `cosa fetch`: fetch, and record the resolved set as the workdir's generated lockfile
/// (and, if asked, as the config's pins).
pub fn fetch_and_lock(wd: &Workdir, tf: &Treefile, o: &FetchOptions) -> Result<FetchedAndLocked> {
    let _lock = wd.lock("fetch", true)?;
    let fetched = fetch(wd, tf, o.strict)?;
    let lockfile = generated_lockfile_path(wd, &tf.basearch);
    write_atomic(
        &lockfile,
        &Lockfile::generated(&fetched.packages).to_json()?,
    )?;
    let config_lockfile = if o.update_lockfile {
        let dest = tf
            .config_dir
            .join(format!("manifest-lock.{}.json", tf.basearch));
        let mut l = Lockfile::generated(&fetched.packages);
        // Pins in the config carry no generation time: it would change on every update.
        l.metadata = None;
        write_atomic(&dest, &l.to_json()?)?;
        Some(dest)
    } else {
        None
    };
    Ok(FetchedAndLocked {
        fetched,
        lockfile,
        config_lockfile,
    })
}

/// Where fetch leaves the generated lockfile in the workdir.
pub fn generated_lockfile_path(wd: &Workdir, arch: &str) -> PathBuf {
    wd.tmp_dir().join(Lockfile::generated_name(arch))
}
