//! `cosa prune` as one stage: delete old untagged builds, then the repo refs, cached
//! package imports and downloaded RPMs that no remaining build uses.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use fs_err as fs;

use super::pkgcache;
use crate::builds::history::{build_ref, BuildsJson};
use crate::builds::{History, Workdir};

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Keep this many newest builds (tagged builds are always kept).
    pub keep: usize,
    /// Only say what would be deleted.
    pub dry_run: bool,
}

/// What `prune` did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct Pruned {
    /// The builds deleted, newest first.
    pub builds: Vec<String>,
    /// Cached package imports dropped.
    pub dropped_packages: usize,
    /// Bytes of ostree objects freed.
    pub freed_bytes: u64,
}

/// Delete the builds beyond the newest `keep` that no tag points at, and what only they used.
pub fn prune(wd: &Workdir, arch: &str, o: &PruneOptions) -> Result<Pruned> {
    let _lock = wd.lock("prune", true)?;
    let h = History::new(wd.builds_dir());
    let mut b = h.load()?;
    let doomed = doomed_builds(&b, o.keep);
    if doomed.is_empty() || o.dry_run {
        return Ok(Pruned {
            builds: doomed,
            ..Pruned::default()
        });
    }
    // builds.json first: a build it no longer lists is garbage even if removal stops halfway.
    b.builds.retain(|e| !doomed.contains(&e.id));
    h.save(&b)?;
    let repo = pkgcache::open_repo(&wd.repo_path())?;
    for id in &doomed {
        let dir = wd.builds_dir().join(id);
        fs::remove_dir_all(&dir)?;
        repo.set_ref_immediate(None, &build_ref(id), None, gio::Cancellable::NONE)
            .with_context(|| format!("deleting the ref of build {id}"))?;
    }
    let dropped_packages = prune_package_cache(wd, &h, &b, &repo, arch)?;
    let (_, _, freed_bytes) = repo
        .prune(ostree::RepoPruneFlags::REFS_ONLY, 0, gio::Cancellable::NONE)
        .context("pruning the ostree repo")?;
    Ok(Pruned {
        builds: doomed,
        dropped_packages,
        freed_bytes,
    })
}

/// The builds beyond the newest `keep` that no tag points at.
fn doomed_builds(b: &BuildsJson, keep: usize) -> Vec<String> {
    let tagged: BTreeSet<&str> = b.tags.iter().map(|t| t.target.as_str()).collect();
    b.builds
        .iter()
        .skip(keep)
        .filter(|e| !tagged.contains(e.id.as_str()))
        .map(|e| e.id.clone())
        .collect()
}

/// The package cache follows the builds: drop the import refs and downloaded RPMs of
/// packages that no remaining build's lockfile names (coreos-assembler's cache only grows).
fn prune_package_cache(
    wd: &Workdir,
    h: &History,
    b: &BuildsJson,
    repo: &ostree::Repo,
    arch: &str,
) -> Result<usize> {
    let mut keep_refs = BTreeSet::new();
    let mut keep_files = BTreeSet::new();
    for e in &b.builds {
        let Ok(l) = h.build_lockfile(&e.id, arch) else {
            // A build without its lockfile (imported, or older): keep every package.
            return Ok(0);
        };
        for (name, p) in &l.packages {
            let (evr, a) = p.evra.rsplit_once('.').unwrap_or((&p.evra, ""));
            let nevra = format!("{name}-{evr}.{a}");
            keep_refs.insert(pkgcache::cache_ref(&nevra));
            // Download names drop the epoch: NAME-VERSION-RELEASE.ARCH.rpm.
            let evr_no_epoch = evr.split_once(':').map_or(evr, |x| x.1);
            keep_files.insert(format!("{name}-{evr_no_epoch}.{a}.rpm"));
        }
    }
    let mut dropped = 0;
    let refs = repo.list_refs(Some("cosa/pkg"), gio::Cancellable::NONE)?;
    for r in refs.keys() {
        let full = format!("cosa/pkg/{r}");
        if !keep_refs.contains(&full) {
            repo.set_ref_immediate(None, &full, None, gio::Cancellable::NONE)
                .with_context(|| format!("deleting ref {full}"))?;
            dropped += 1;
        }
    }
    if let Ok(rd) = fs::read_dir(wd.rpms_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".rpm") && !keep_files.contains(&name) {
                fs::remove_file(e.path())?;
            }
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::history::{BuildEntry, Tag};

    #[test]
    fn tagged_and_newest_builds_are_kept() {
        let entry = |id: &str| BuildEntry {
            id: id.into(),
            arches: vec!["x86_64".into()],
        };
        let b = BuildsJson {
            builds: vec![entry("4"), entry("3"), entry("2"), entry("1")],
            tags: vec![Tag {
                name: "keep".into(),
                created: String::new(),
                target: "2".into(),
            }],
            ..BuildsJson::default()
        };
        assert_eq!(doomed_builds(&b, 1), vec!["3", "1"]);
        assert!(doomed_builds(&b, 4).is_empty());
    }
}
