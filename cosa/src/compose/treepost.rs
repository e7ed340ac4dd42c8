//! Treefile-driven changes to the assembled tree and the ostree conventions a
//! bootable commit needs: kernel and initramfs under /usr/lib/modules, the rpmdb
//! inside /usr, /etc moved to /usr/etc, /var empty (its content as tmpfiles.d).

use fs_err as fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::rpmhdr::RpmHeader;
use super::sandbox::{run_read_only, run_script, Bind, ProtectedTree};
use crate::config::treefile::Treefile;
use cmdext::CommandRunExt;

/// Where the rpmdb lives in the tree.
pub const RPMDB_PATH: &str = "usr/lib/sysimage/rpm";

fn in_tree(rootfs: &Path, p: &str) -> PathBuf {
    rootfs.join(p.trim_start_matches('/'))
}

fn remove_path(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => return Ok(()),
    }
    .with_context(|| format!("removing {}", p.display()))
}

/// rpm's common options for writing only the database.
const JUSTDB: [&str; 6] = [
    "--justdb",
    "--nodeps",
    "--noscripts",
    "--notriggers",
    "--nosignature",
    "--nodigest",
];

fn rpm_in(rootfs: &Path) -> Command {
    let mut c = cmdext::command("rpm");
    c.arg("--root")
        .arg(rootfs)
        .args(["--dbpath", &format!("/{RPMDB_PATH}")]);
    c
}

fn install_justdb(rootfs: &Path, rpms: &[&Path]) -> Result<()> {
    rpm_in(rootfs)
        .args(JUSTDB)
        .args([
            "--ignorearch",
            "--ignoreos",
            "--ignoresize",
            "--replacefiles",
            "--replacepkgs",
            "-i",
        ])
        .args(rpms)
        .run()
        .context("writing the rpmdb")?;
    Ok(())
}

/// Write the rpmdb of exactly these packages into the tree. With a `parent` commit
/// that has one, its database is the start: only the packages that changed are
/// erased and added (a one-package rebuild touches one package, not 300).
pub fn write_rpmdb(
    repo: &ostree::Repo,
    rootfs: &Path,
    hdrs: &[RpmHeader],
    parent: Option<&str>,
) -> Result<()> {
    let db = rootfs.join(RPMDB_PATH);
    if let Some(parent) = parent {
        match update_parent_rpmdb(repo, rootfs, hdrs, parent) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::debug!("rpmdb from the parent {parent}: {e:#}; writing it whole"),
        }
        remove_path(&db)?;
    }
    fs::create_dir_all(&db)?;
    let all: Vec<&Path> = hdrs.iter().map(|h| h.path.as_path()).collect();
    install_justdb(rootfs, &all)
}

/// Start from the parent commit's rpmdb and apply the difference. Ok(false) when
/// the parent has no rpmdb or the difference is most of the packages.
fn update_parent_rpmdb(
    repo: &ostree::Repo,
    rootfs: &Path,
    hdrs: &[RpmHeader],
    parent: &str,
) -> Result<bool> {
    let db = rootfs.join(RPMDB_PATH);
    remove_path(&db)?;
    if let Some(parent) = db.parent() {
        fs::create_dir_all(parent)?;
    }
    let opts = ostree::RepoCheckoutAtOptions {
        subpath: Some(PathBuf::from(format!("/{RPMDB_PATH}"))),
        force_copy: true,
        ..Default::default()
    };
    if repo
        .checkout_at(
            Some(&opts),
            libc::AT_FDCWD,
            &db,
            parent,
            gio::Cancellable::NONE,
        )
        .is_err()
    {
        return Ok(false);
    }
    let old = rpm_in(rootfs)
        .args([
            "-qa",
            "--qf",
            &format!("{}\\n", super::rpmhdr::DBKEY_FORMAT),
        ])
        .run_get_string()
        .context("listing the parent's rpmdb")?;
    let old: std::collections::BTreeSet<&str> = old.lines().collect();
    let new: std::collections::BTreeSet<&str> = hdrs.iter().map(|h| h.dbkey.as_str()).collect();
    let erase: Vec<&str> = old
        .difference(&new)
        .map(|k| k.split(' ').next().unwrap_or(k))
        .collect();
    let add: Vec<&Path> = hdrs
        .iter()
        .filter(|h| !old.contains(h.dbkey.as_str()))
        .map(|h| h.path.as_path())
        .collect();
    if erase.len() + add.len() > hdrs.len() / 2 {
        return Ok(false);
    }
    tracing::debug!(
        "rpmdb from the parent: {} erased, {} added",
        erase.len(),
        add.len()
    );
    if !erase.is_empty() {
        rpm_in(rootfs)
            .args(JUSTDB)
            .arg("-e")
            .args(&erase)
            .run()
            .context("erasing changed packages from the rpmdb")?;
    }
    if !add.is_empty() {
        install_justdb(rootfs, &add)?;
    }
    Ok(true)
}

/// `add-files`, `remove-from-packages`, `remove-files`, `documentation: false`.
pub fn apply_file_edits(rootfs: &Path, tf: &Treefile, hdrs: &[RpmHeader]) -> Result<()> {
    for (src, dest) in &tf.add_files {
        let d = in_tree(rootfs, dest);
        if let Some(parent) = d.parent() {
            fs::create_dir_all(parent)?;
        }
        remove_path(&d)?;
        fs::copy(src, &d)
            .with_context(|| format!("add-files: copying {} to {dest}", src.display()))?;
    }
    for rfp in &tf.remove_from_packages {
        let h = hdrs
            .iter()
            .find(|h| h.name == rfp.package)
            .with_context(|| {
                format!(
                    "remove-from-packages: package {} is not in the package set",
                    rfp.package
                )
            })?;
        let res: Vec<regex::Regex> = rfp
            .patterns
            .iter()
            .map(|p| {
                regex::Regex::new(p)
                    .with_context(|| format!("remove-from-packages: bad regex {p:?}"))
            })
            .collect::<Result<_>>()?;
        for f in &h.files {
            if res.iter().any(|r| r.is_match(&f.path)) {
                remove_path(&in_tree(rootfs, &f.path))?;
            }
        }
    }
    for p in &tf.remove_files {
        let path = in_tree(rootfs, p);
        if path.symlink_metadata().is_err() {
            tracing::warn!("remove-files: {p} is not in the tree");
        }
        remove_path(&path)?;
    }
    if tf.documentation == Some(false) {
        for h in hdrs {
            for f in h.files.iter().filter(|f| f.doc) {
                let p = in_tree(rootfs, &f.path);
                if p.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&p)?;
                }
            }
        }
    }
    Ok(())
}

fn find_unit(rootfs: &Path, unit: &str) -> Option<&'static str> {
    ["usr/lib/systemd/system", "etc/systemd/system"]
        .into_iter()
        .find(|d| rootfs.join(d).join(unit).exists())
}

fn link(rootfs: &Path, at: &str, to: &str) -> Result<()> {
    let l = rootfs.join(at);
    if let Some(parent) = l.parent() {
        fs::create_dir_all(parent)?;
    }
    remove_path(&l)?;
    std::os::unix::fs::symlink(to, &l).with_context(|| format!("linking {at}"))
}

/// `units`, `default-target`, `machineid-compat`, `etc-group-members`.
pub fn apply_system_config(rootfs: &Path, tf: &Treefile) -> Result<()> {
    for u in &tf.units {
        let dir = find_unit(rootfs, u).with_context(|| format!("units: {u} is not in the tree"))?;
        link(
            rootfs,
            &format!("etc/systemd/system/multi-user.target.wants/{u}"),
            &format!("/{dir}/{u}"),
        )?;
    }
    if let Some(t) = &tf.default_target {
        let dir = find_unit(rootfs, t)
            .with_context(|| format!("default-target: {t} is not in the tree"))?;
        link(
            rootfs,
            "etc/systemd/system/default.target",
            &format!("/{dir}/{t}"),
        )?;
    }
    let mid = rootfs.join("etc/machine-id");
    if tf.machineid_compat == Some(false) {
        remove_path(&mid)?;
    } else if rootfs.join("etc").is_dir() && !mid.exists() {
        fs::write(&mid, "")?;
    }
    if !tf.etc_group_members.is_empty() {
        // cosa keeps all groups in /etc/group, so each named group only has to exist.
        let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
        for g in &tf.etc_group_members {
            if !group
                .lines()
                .any(|l| l.split(':').next() == Some(g.as_str()))
            {
                bail!("etc-group-members: group {g} is not in the tree's /etc/group");
            }
        }
    }
    Ok(())
}

/// `systemctl preset-all`, as rpm-ostree runs it at compose time: the presets the
/// packages and the config ship decide which units the image enables. A tree
/// without systemctl (the demo stream's busybox init) has none to apply.
///
/// systemctl only makes and removes links under /etc, whose files are the tree's own
/// copies (`assemble::unshare_etc`): the tree is bound read-only with /etc writable,
/// which spares the FUSE layer's cost on the thousands of lookups it makes.
pub fn apply_presets(rootfs: &Path) -> Result<()> {
    if !rootfs.join("usr/bin/systemctl").exists() {
        return Ok(());
    }
    let etc = rootfs.join("etc");
    fs::create_dir_all(&etc)?;
    let argv = ["systemctl", "preset-all"].map(String::from);
    // No systemd runs in the sandbox: SYSTEMD_OFFLINE makes systemctl edit the tree.
    run_read_only(
        rootfs,
        &argv,
        &[Bind::Rw(&etc, "/etc")],
        &[("SYSTEMD_OFFLINE", "1")],
    )
    .context("applying systemd presets (systemctl preset-all)")
}

/// `postprocess` (inline scripts) then `postprocess-script`, in the sandbox.
pub fn run_postprocess(tree: &ProtectedTree, tf: &Treefile) -> Result<()> {
    let sh = vec!["/bin/sh".to_string(), "-e".to_string()];
    for (i, s) in tf.postprocess.iter().enumerate() {
        let prog = if s.starts_with("#!") {
            interpreter(s)
        } else {
            sh.clone()
        };
        run_script(
            tree,
            &format!("postprocess script {}", i + 1),
            &prog,
            s,
            None,
            &[],
        )?;
    }
    if let Some(p) = &tf.postprocess_script {
        let body = fs::read_to_string(p)
            .with_context(|| format!("reading postprocess-script {}", p.display()))?;
        let prog = if body.starts_with("#!") {
            interpreter(&body)
        } else {
            sh
        };
        run_script(
            tree,
            &format!("postprocess-script {}", p.display()),
            &prog,
            &body,
            None,
            &[],
        )?;
    }
    Ok(())
}

fn interpreter(script: &str) -> Vec<String> {
    script.lines().next().unwrap_or("#!/bin/sh")[2..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The kernels in the tree, after moving any `/boot/vmlinuz-K` to `/usr/lib/modules/K/vmlinuz`.
pub fn kernels(rootfs: &Path) -> Result<Vec<String>> {
    let boot = rootfs.join("boot");
    if boot.is_dir() {
        for e in fs::read_dir(&boot)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(kver) = name.strip_prefix("vmlinuz-") {
                let dest = rootfs.join("usr/lib/modules").join(kver);
                fs::create_dir_all(&dest)?;
                fs::rename(e.path(), dest.join("vmlinuz"))?;
            }
        }
    }
    let mut k = Vec::new();
    if let Ok(rd) = fs::read_dir(rootfs.join("usr/lib/modules")) {
        for e in rd {
            let e = e?;
            if e.path().join("vmlinuz").exists() {
                k.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    k.sort();
    Ok(k)
}

/// Move whatever scripts left in /var into tmpfiles.d, and /etc to /usr/etc.
pub fn finalize_layout(rootfs: &Path) -> Result<()> {
    super::pkgcache::var_to_tmpfiles(rootfs, "cosa-var.conf")?;
    let etc = rootfs.join("etc");
    if etc.exists() {
        let usr_etc = rootfs.join("usr/etc");
        if usr_etc.exists() {
            bail!("the tree has both /etc and /usr/etc");
        }
        fs::create_dir_all(rootfs.join("usr"))?;
        fs::rename(&etc, &usr_etc).context("moving /etc to /usr/etc")?;
    }
    Ok(())
}
