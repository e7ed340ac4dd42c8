//! What a compose records of itself: the build directory (meta.json, commitmeta.json,
//! the generated lockfile, the resolved treefile) and its entry in builds.json.

use std::path::Path;

use anyhow::Result;
use cmdext::CommandRunExt;
use fs_err as fs;

use super::Composed;
use crate::builds::meta::pkgdiff::pkgdiff;
use crate::builds::meta::{Meta, PkgDiff};
use crate::builds::History;
use crate::config::lockfile::Lockfile;
use crate::config::treefile::Treefile;
use crate::package::Package;

/// A composed build, as meta.json describes it.
pub struct ComposedBuild<'a> {
    pub version: &'a str,
    /// The treefile's ref (`demo/x86_64/stable`); its first component names the OS.
    pub ostree_ref: &'a str,
    pub composed: &'a Composed,
    pub inputhash: &'a str,
    /// The commit's timestamp, Unix seconds.
    pub timestamp: u64,
    pub arch: &'a str,
    /// RPMs from `overrides/rpm` went in.
    pub overrides_active: bool,
    /// The config's git commit and whether it had uncommitted changes.
    pub config_git: Option<(String, bool)>,
    /// Changes from the previous build, when it recorded its packages.
    pub pkgdiff: Option<Vec<PkgDiff>>,
}

/// The meta.json of a composed build.
pub fn meta(b: &ComposedBuild) -> Meta {
    let name = b.ostree_ref.split('/').next().unwrap_or("cosa");
    let (config_gitrev, config_dirty) = match &b.config_git {
        Some((rev, dirty)) => (Some(rev.clone()), Some(*dirty)),
        None => (None, None),
    };
    Meta {
        summary: Some(format!("{name} {}", b.version)),
        ostree_ref: Some(b.ostree_ref.to_string()),
        ostree_content_checksum: Some(b.composed.content_checksum.clone()),
        rpm_ostree_inputhash: Some(b.inputhash.to_string()),
        overrides_active: b.overrides_active.then_some(true),
        config_gitrev,
        config_dirty,
        pkgdiff: b.pkgdiff.clone(),
        ..Meta::new(name, b.version, &b.composed.commit, b.timestamp, b.arch)
    }
}

/// The inputs of a compose that its build directory records.
pub struct Recording<'a> {
    pub repo: &'a ostree::Repo,
    pub tf: &'a Treefile,
    pub ostree_ref: &'a str,
    pub packages: &'a [Package],
    pub overrides_active: bool,
    /// The build this one follows, for the package diff.
    pub previous: Option<&'a str>,
    /// The config, for its git state.
    pub config_dir: &'a Path,
}

/// Write the build directory of a compose in a staging directory, then move it into
/// place as the newest build.
pub fn record(
    history: &History,
    r: &Recording,
    version: &str,
    composed: &Composed,
    inputhash: &str,
    timestamp: u64,
) -> Result<()> {
    let arch = r.tf.basearch.as_str();
    let lock = Lockfile::generated(r.packages);
    // A previous build without its lockfile (imported, or older) gets no diff.
    let changes = r
        .previous
        .and_then(|id| history.build_lockfile(id, arch).ok())
        .map(|old| pkgdiff(&old, &lock));
    let meta = meta(&ComposedBuild {
        version,
        ostree_ref: r.ostree_ref,
        composed,
        inputhash,
        timestamp,
        arch,
        overrides_active: r.overrides_active,
        config_git: git_state(r.config_dir),
        pkgdiff: changes,
    });

    let staging = history.staging_dir()?;
    let dir = staging.path();
    meta.save(&dir.join("meta.json"))?;
    let cm = super::commit::commit_metadata_json(r.repo, &composed.commit)?;
    fs::write(dir.join("commitmeta.json"), serde_json::to_vec_pretty(&cm)?)?;
    fs::write(dir.join(Lockfile::generated_name(arch)), lock.to_json()?)?;
    fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(r.tf)?)?;
    let staging_path = staging.keep();
    history.commit_build(&staging_path, version, arch)
}

/// The config's git commit and whether its tree has uncommitted changes; `None` when
/// it is not a git checkout.
fn git_state(dir: &Path) -> Option<(String, bool)> {
    let git = |args: &[&str]| {
        cmdext::command("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .run_get_string()
            .ok()
    };
    let rev = git(&["rev-parse", "HEAD"])?;
    let status = git(&["status", "--porcelain", "--", "."])?;
    Some((rev.trim().to_string(), !status.trim().is_empty()))
}
