//! Assembling the root filesystem: a hardlink union of the packages' cache commits,
//! then the config's ostree layers, file ownership from the headers, and scriptlets.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::dnf::Package;
use super::rpmhdr::{self, RpmHeader};
use super::sandbox::{run_script, ProtectedTree};

fn checkout_opts(
    devino: &ostree::RepoDevInoCache,
    overwrite: ostree::RepoCheckoutOverwriteMode,
) -> ostree::RepoCheckoutAtOptions {
    ostree::RepoCheckoutAtOptions {
        overwrite_mode: overwrite,
        no_copy_fallback: true,
        devino_to_csum_cache: Some(devino.clone()),
        ..Default::default()
    }
}

/// Union the packages into `rootfs` (which must not exist yet). Two packages owning
/// one path with different content is an error naming both.
pub fn checkout_packages(
    repo: &ostree::Repo,
    rootfs: &Path,
    pkgs: &[Package],
    commits: &[String],
    hdrs: &[RpmHeader],
    devino: &ostree::RepoDevInoCache,
) -> Result<()> {
    let opts = checkout_opts(devino, ostree::RepoCheckoutOverwriteMode::UnionIdentical);
    for (i, (p, c)) in pkgs.iter().zip(commits).enumerate() {
        if let Err(e) = repo.checkout_at(
            Some(&opts),
            libc::AT_FDCWD,
            rootfs,
            c,
            gio::Cancellable::NONE,
        ) {
            let (path, other) = find_conflict(rootfs, &hdrs[i], &hdrs[..i]);
            match (path, other) {
                (Some(path), Some(other)) => bail!(
                    "file conflict: {path} is owned by both {} and {} with different content",
                    pkgs[other].nevra(),
                    p.nevra()
                ),
                _ => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("checking out package {}", p.nevra())))
                }
            }
        }
    }
    Ok(())
}

/// For a failed union checkout of `hdr`: the first path it shares with an earlier package.
fn find_conflict(
    rootfs: &Path,
    hdr: &RpmHeader,
    earlier: &[RpmHeader],
) -> (Option<String>, Option<usize>) {
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    for (j, h) in earlier.iter().enumerate() {
        for f in &h.files {
            owners.entry(f.path.as_str()).or_insert(j);
        }
    }
    for f in &hdr.files {
        if let Some(&j) = owners.get(f.path.as_str()) {
            let p = rootfs.join(f.path.trim_start_matches('/'));
            if p.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                return (Some(f.path.clone()), Some(j));
            }
        }
    }
    (None, None)
}

/// Check out an ostree layer (overlay dir, overrides/rootfs) over the tree: its files win.
pub fn checkout_layer(
    repo: &ostree::Repo,
    rootfs: &Path,
    rev: &str,
    devino: &ostree::RepoDevInoCache,
) -> Result<()> {
    let opts = checkout_opts(devino, ostree::RepoCheckoutOverwriteMode::UnionFiles);
    repo.checkout_at(
        Some(&opts),
        libc::AT_FDCWD,
        rootfs,
        rev,
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("checking out layer {rev}"))
}

/// Replace a hardlinked file by a private copy so it can be changed without touching the cache.
pub fn break_hardlink(path: &Path) -> Result<()> {
    let md = path.symlink_metadata()?;
    if !md.is_file() || md.nlink() < 2 {
        return Ok(());
    }
    let tmp = path.with_extension("cosa-copy");
    fs::copy(path, &tmp).with_context(|| format!("copying {}", path.display()))?;
    std::os::unix::fs::chown(&tmp, Some(md.uid()), Some(md.gid()))?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// /etc is where scriptlets and admins write: give it private copies up front.
pub fn unshare_etc(rootfs: &Path) -> Result<()> {
    let etc = rootfs.join("etc");
    if !etc.exists() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(&etc) {
        let e = e?;
        if e.file_type().is_file() {
            break_hardlink(e.path())?;
        }
    }
    Ok(())
}

fn id_map(path: &Path) -> Result<BTreeMap<String, u32>> {
    let s = fs::read_to_string(path).unwrap_or_default();
    let mut m = BTreeMap::new();
    for l in s.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 3 {
            if let Ok(id) = f[2].parse() {
                m.insert(f[0].to_string(), id);
            }
        }
    }
    Ok(m)
}

/// Give files the owners their headers name, looked up in the tree's passwd/group
/// (the payload carries none). Unknown users are an error naming the package.
pub fn apply_ownership(rootfs: &Path, hdrs: &[RpmHeader]) -> Result<()> {
    let users = id_map(&rootfs.join("etc/passwd"))?;
    let groups = id_map(&rootfs.join("etc/group"))?;
    for h in hdrs {
        for f in h.nonroot_files() {
            let uid = *users.get(&f.user).with_context(|| {
                format!(
                    "package {}: {} is owned by user {}, which the tree's /etc/passwd lacks",
                    h.name, f.path, f.user
                )
            })?;
            let gid = *groups.get(&f.group).with_context(|| {
                format!(
                    "package {}: {} is owned by group {}, which the tree's /etc/group lacks",
                    h.name, f.path, f.group
                )
            })?;
            let p = rootfs.join(f.path.trim_start_matches('/'));
            if p.symlink_metadata().is_err() {
                continue; // removed by a later layer or docs filtering
            }
            break_hardlink(&p)?;
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", p.display()))?;
        }
    }
    Ok(())
}

/// Which scriptlets to run.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Pre,
    Post,
    PostTrans,
}

/// Run one phase's scriptlets of every package, in dependency order.
pub fn run_scriptlets(tree: &ProtectedTree, hdrs: &[RpmHeader], phase: Phase) -> Result<usize> {
    let mut n = 0;
    for i in rpmhdr::install_order(hdrs) {
        let h = &hdrs[i];
        let (what, s) = match phase {
            Phase::Pre => ("%pre", &h.pre),
            Phase::Post => ("%post", &h.post),
            Phase::PostTrans => ("%posttrans", &h.posttrans),
        };
        if let Some(s) = s {
            tracing::debug!("running {what} of {}", h.name);
            // Argument 1: the number of instances after this install, as rpm passes.
            run_script(
                tree,
                &format!("{what} scriptlet of package {}", h.name),
                &s.prog,
                &s.body,
                Some("1"),
                &[],
            )?;
            n += 1;
        }
    }
    Ok(n)
}
