//! Assembling the root filesystem: a hardlink union of the packages' cache commits,
//! then the config's ostree layers, file ownership from the headers, and scriptlets.

use fs_err as fs;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::dnf::Package;
use super::rpmhdr::{self, RpmHeader};
use super::sandbox::{run_script, Bind, ProtectedTree};
use cmdext::CommandRunExt;

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
///
/// The union is made in memory first, from the cache commits' directory trees (a
/// package's directory no other package shares is taken whole, unread), and written
/// as one commit; one checkout of it then costs a hardlink per file, where checking
/// out 300 package commits one over another walked the shared directories 300 times.
pub fn checkout_packages(
    repo: &ostree::Repo,
    rootfs: &Path,
    pkgs: &[Package],
    commits: &[String],
    hdrs: &[RpmHeader],
    devino: &ostree::RepoDevInoCache,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    let union = union_commit(repo, pkgs, commits, hdrs)?;
    tracing::debug!(
        "union of {} packages: {union} ({:.2} s)",
        pkgs.len(),
        t0.elapsed().as_secs_f64()
    );
    let opts = checkout_opts(devino, ostree::RepoCheckoutOverwriteMode::None);
    repo.checkout_at(
        Some(&opts),
        libc::AT_FDCWD,
        rootfs,
        &union,
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("checking out the union of {} packages", pkgs.len()))
}

/// A conflict found while merging: the path and the earlier package owning it.
struct Conflict {
    path: String,
}

/// Write a commit (no ref) whose tree is the union of the packages' cache commits.
fn union_commit(
    repo: &ostree::Repo,
    pkgs: &[Package],
    commits: &[String],
    hdrs: &[RpmHeader],
) -> Result<String> {
    let Some(first) = commits.first() else {
        bail!("no packages to assemble");
    };
    let mtree = ostree::MutableTree::from_commit(repo, first)
        .with_context(|| format!("reading the cache commit of {}", pkgs[0].nevra()))?;
    for (i, (p, c)) in pkgs.iter().zip(commits).enumerate().skip(1) {
        // A commit is (metadata, parent, related, subject, body, timestamp, root
        // dirtree checksum, root dirmeta checksum).
        let (commit, _) = repo.load_commit(c)?;
        let contents = hex::encode(commit.child_value(6).data());
        let merged = merge_dirtree(repo, &mtree, &contents, "")
            .with_context(|| format!("merging package {} into the tree", p.nevra()))?;
        if let Err(Conflict { path }) = merged {
            let other = (0..i).find(|&j| hdrs[j].files.iter().any(|f| f.path == path));
            match other {
                Some(j) => bail!(
                    "file conflict: {path} is owned by both {} and {} with different content",
                    pkgs[j].nevra(),
                    p.nevra()
                ),
                None => bail!(
                    "file conflict: {path} of package {} clashes with another package's",
                    p.nevra()
                ),
            }
        }
    }
    let tx = repo.auto_transaction(gio::Cancellable::NONE)?;
    let root = super::commit::write_mtree(repo, &mtree)?;
    let commit = repo.write_commit_with_time(
        None,
        Some("cosa: union of the build's packages"),
        None,
        None,
        &root,
        0,
        gio::Cancellable::NONE,
    )?;
    tx.commit(gio::Cancellable::NONE)
        .context("writing the union of the packages")?;
    Ok(commit.to_string())
}

/// Merge the dirtree object `contents` into `mtree` (at `path`, for messages).
/// Identical files are shared; a path with two different contents is a conflict.
fn merge_dirtree(
    repo: &ostree::Repo,
    mtree: &ostree::MutableTree,
    contents: &str,
    path: &str,
) -> Result<std::result::Result<(), Conflict>> {
    let v = repo.load_variant(ostree::ObjectType::DirTree, contents)?;
    let files = v.child_value(0);
    for f in files.iter() {
        let name: String = f.child_value(0).get().context("dirtree file name")?;
        let csum = hex::encode(f.child_value(1).data());
        let child = format!("{path}/{name}");
        match mtree.lookup(&name) {
            Err(e) if e.matches(gio::IOErrorEnum::NotFound) => {
                mtree.replace_file(&name, &csum)?;
            }
            Err(e) => return Err(e.into()),
            Ok((Some(existing), _)) if existing == csum => {}
            Ok(_) => return Ok(Err(Conflict { path: child })),
        }
    }
    let dirs = v.child_value(1);
    for d in dirs.iter() {
        let name: String = d.child_value(0).get().context("dirtree dir name")?;
        let sub_contents = hex::encode(d.child_value(1).data());
        let sub_meta = hex::encode(d.child_value(2).data());
        let child = format!("{path}/{name}");
        match mtree.lookup(&name) {
            Err(e) if e.matches(gio::IOErrorEnum::NotFound) => {
                // Taken whole, without reading it, until another package shares it.
                let sub = mtree.ensure_dir(&name)?;
                sub.fill_empty_from_dirtree(repo, &sub_contents, &sub_meta);
            }
            Err(e) => return Err(e.into()),
            Ok((_, Some(sub))) => {
                if let Err(c) = merge_dirtree(repo, &sub, &sub_contents, &child)? {
                    return Ok(Err(c));
                }
            }
            Ok(_) => return Ok(Err(Conflict { path: child })),
        }
    }
    Ok(Ok(()))
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

/// Give files the capabilities their headers name (`%caps`), with setcap on a private
/// copy (the cache's object stays as the package has it). Runs after ownership:
/// chown clears capabilities. Returns the paths given capabilities.
pub fn apply_caps(rootfs: &Path, hdrs: &[RpmHeader]) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for h in hdrs {
        for f in h.files.iter().filter(|f| !f.caps.is_empty()) {
            let p = rootfs.join(f.path.trim_start_matches('/'));
            if !p.symlink_metadata().is_ok_and(|m| m.is_file()) {
                continue; // removed by a later layer or docs filtering
            }
            break_hardlink(&p)?;
            cmdext::command("setcap")
                .arg(&f.caps)
                .arg(&p)
                .run()
                .with_context(|| {
                    format!(
                        "package {}: giving {} the capabilities {}",
                        h.name, f.path, f.caps
                    )
                })?;
            done.push(f.path.clone());
        }
    }
    Ok(done)
}

/// Which scriptlets to run.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Pre,
    Post,
    PostTrans,
}

/// Run one phase's scriptlets of every package, in dependency order. They run in one
/// sandbox, one after the other from a small driver script, as rpm runs a
/// transaction's scriptlets: starting a sandbox per scriptlet cost more than most
/// scriptlets do. A tree without /bin/sh gets a sandbox per scriptlet.
pub fn run_scriptlets(tree: &ProtectedTree, hdrs: &[RpmHeader], phase: Phase) -> Result<usize> {
    let what = match phase {
        Phase::Pre => "%pre",
        Phase::Post => "%post",
        Phase::PostTrans => "%posttrans",
    };
    let scripts: Vec<(&str, &rpmhdr::Script)> = rpmhdr::install_order(hdrs)
        .into_iter()
        .filter_map(|i| {
            let h = &hdrs[i];
            let s = match phase {
                Phase::Pre => &h.pre,
                Phase::Post => &h.post,
                Phase::PostTrans => &h.posttrans,
            };
            s.as_ref().map(|s| (h.name.as_str(), s))
        })
        .collect();
    if scripts.is_empty() {
        return Ok(0);
    }
    // Argument 1: the number of instances after this install, as rpm passes.
    let has_sh = ["bin/sh", "usr/bin/sh"]
        .iter()
        .any(|p| tree.path().join(p).symlink_metadata().is_ok());
    if !has_sh {
        for (name, s) in &scripts {
            tracing::debug!("running {what} of {name}");
            let desc = format!("{what} scriptlet of package {name}");
            run_script(tree, &desc, &s.prog, &s.body, Some("1"), &[])?;
        }
        return Ok(scripts.len());
    }
    let dir = tempfile::tempdir().context("creating a directory for the scriptlets")?;
    let mut driver = String::from("# cosa: this phase's scriptlets, in order\n");
    for (i, (name, s)) in scripts.iter().enumerate() {
        fs::write(dir.path().join(i.to_string()), &s.body)?;
        let prog: Vec<String> = s.prog.iter().map(|a| shell_quote(a)).collect();
        driver.push_str(&format!(
            "# {name}\n{} /run/cosa-scripts/{i} 1 || {{ echo \"{i} $?\" >/run/cosa-scripts/failed; exit 1; }}\n",
            prog.join(" ")
        ));
    }
    fs::write(dir.path().join("run"), driver)?;
    tracing::debug!("running {} {what} scriptlets", scripts.len());
    let argv = ["/bin/sh".to_string(), "/run/cosa-scripts/run".to_string()];
    let r = tree.run(&argv, &[Bind::Rw(dir.path(), "/run/cosa-scripts")], &[]);
    if let Err(e) = r {
        let failed = fs::read_to_string(dir.path().join("failed")).unwrap_or_default();
        let mut f = failed.split_whitespace();
        let idx = f.next().and_then(|i| i.parse::<usize>().ok());
        return Err(match idx.and_then(|i| scripts.get(i)) {
            Some((name, _)) => e.context(format!(
                "{what} scriptlet of package {name} failed (exit status {})",
                f.next().unwrap_or("?")
            )),
            None => e.context(format!("running the {what} scriptlets")),
        });
    }
    Ok(scripts.len())
}

/// Quote a word for sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
