//! `cosa prune` as one stage: delete the builds the retention policy does not keep,
//! then the repo refs, cached package imports and downloaded RPMs that no remaining
//! build uses. A build's images, OCI archive and SBOM live in its directory and go
//! with it; what prune frees is counted by inode, so a file another build still links
//! is not counted.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use fs_err as fs;

use super::pkgcache;
use crate::builds::history::{build_ref, BuildsJson};
use crate::builds::retention::{decide, KeepReason, StreamPolicy};
use crate::builds::{History, Workdir};

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// What the stream keeps.
    pub policy: StreamPolicy,
    /// Only say what would be deleted.
    pub dry_run: bool,
}

/// What `prune` did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct Pruned {
    /// Every build, newest first, with why it is kept (empty: deleted).
    pub decisions: Vec<(String, BTreeSet<KeepReason>)>,
    /// The builds deleted, newest first.
    pub builds: Vec<String>,
    /// Directories under builds/ that builds.json does not list (what an interrupted
    /// build or prune left), deleted too.
    pub leftovers: Vec<String>,
    /// Bytes of build directories (images, OCI archives, logs) freed, or to be freed.
    pub freed_build_bytes: u64,
    /// Cached package imports dropped.
    pub dropped_packages: usize,
    /// Bytes of ostree objects freed.
    pub freed_bytes: u64,
}

/// A build's age from its meta.json `coreos-assembler.build-timestamp`.
fn build_age(h: &History, id: &str, arch: &str) -> Option<Duration> {
    let m = h.load_meta(id, arch).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(m.build_timestamp.as_deref()?).ok()?;
    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}

/// Delete the builds the policy does not keep, and what only they used.
pub fn prune(wd: &Workdir, arch: &str, o: &PruneOptions) -> Result<Pruned> {
    let _lock = wd.lock("prune", true)?;
    let h = History::new(wd.builds_dir());
    if !o.dry_run {
        h.clean_staging()?;
    }
    let mut b = h.load()?;
    let decisions = decide(&b, &o.policy, |id| build_age(&h, id, arch));
    let doomed: Vec<String> = decisions
        .iter()
        .filter(|(_, why)| why.is_empty())
        .map(|(id, _)| id.clone())
        .collect();
    let leftovers = leftover_dirs(wd, &b)?;
    let mut dirs: Vec<_> = doomed.iter().map(|id| wd.builds_dir().join(id)).collect();
    dirs.extend(leftovers.iter().map(|n| wd.builds_dir().join(n)));
    let freed_build_bytes = freed_by_removing(&dirs)?;
    if (doomed.is_empty() && leftovers.is_empty()) || o.dry_run {
        return Ok(Pruned {
            decisions,
            builds: doomed,
            leftovers,
            freed_build_bytes,
            ..Pruned::default()
        });
    }
    // builds.json first: a build it no longer lists is garbage even if removal stops halfway.
    b.builds.retain(|e| !doomed.contains(&e.id));
    h.save(&b)?;
    let repo = pkgcache::open_repo(&wd.repo_path())?;
    for (id, dir) in doomed.iter().chain(&leftovers).zip(&dirs) {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        repo.set_ref_immediate(None, &build_ref(id), None, gio::Cancellable::NONE)
            .with_context(|| format!("deleting the ref of build {id}"))?;
    }
    let dropped_packages = prune_package_cache(wd, &h, &b, &repo, arch)?;
    let (_, _, freed_bytes) = repo
        .prune(ostree::RepoPruneFlags::REFS_ONLY, 0, gio::Cancellable::NONE)
        .context("pruning the ostree repo")?;
    Ok(Pruned {
        decisions,
        builds: doomed,
        leftovers,
        freed_build_bytes,
        dropped_packages,
        freed_bytes,
    })
}

/// Build directories builds.json does not list. The workdir lock is held, so no
/// command is writing one.
fn leftover_dirs(wd: &Workdir, b: &BuildsJson) -> Result<Vec<String>> {
    let dir = wd.builds_dir();
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let listed = b.builds.iter().any(|x| x.id == name);
        if !listed && !name.starts_with('.') && e.file_type()?.is_dir() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// The bytes removing `dirs` gives back: the blocks of each file all of whose links
/// are inside them.
fn freed_by_removing(dirs: &[impl AsRef<Path>]) -> Result<u64> {
    let mut inodes: HashMap<(u64, u64), (u64, u64, u64)> = HashMap::new();
    for d in dirs {
        let d = d.as_ref();
        if !d.exists() {
            continue;
        }
        for e in walkdir::WalkDir::new(d) {
            let e = e.with_context(|| format!("reading {}", d.display()))?;
            let m = e
                .metadata()
                .with_context(|| format!("reading {}", e.path().display()))?;
            let v = inodes
                .entry((m.dev(), m.ino()))
                .or_insert((m.nlink(), 0, m.blocks() * 512));
            v.1 += 1;
        }
    }
    Ok(inodes
        .values()
        .filter(|(nlink, seen, _)| seen >= nlink)
        .map(|(_, _, bytes)| bytes)
        .sum())
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

    #[test]
    fn freed_bytes_count_only_files_no_kept_build_links() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("own"), vec![1u8; 64 * 1024]).unwrap();
        fs::write(a.join("shared"), vec![2u8; 128 * 1024]).unwrap();
        fs::hard_link(a.join("shared"), b.join("shared")).unwrap();
        fs::hard_link(a.join("own"), a.join("own2")).unwrap();
        let only_a = freed_by_removing(&[&a]).unwrap();
        let both = freed_by_removing(&[&a, &b]).unwrap();
        // `own` (two links, both in a) is freed; `shared` only when b goes too.
        assert!((64 * 1024..128 * 1024).contains(&only_a), "{only_a}");
        assert!(both >= only_a + 128 * 1024, "{both}");
    }
}
