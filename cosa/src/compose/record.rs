//! What a compose records of itself in the build's meta.json.

use crate::builds::meta::{Meta, PkgDiff};

use super::Composed;

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
