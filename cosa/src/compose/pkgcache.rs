//! The package import cache: each RPM is unpacked once into the workdir's ostree repo
//! under its own ref (`cosa/pkg/<nevra>`), and later builds check it out from there.
//!
//! RPM payloads carry no usable ownership (that lives in the header) and no /var
//! conventions, so unpacking also turns /var content into tmpfiles.d entries, as
//! rpm-ostree's importer does; ownership is applied after assembly (see `assemble`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::dnf::Package;
use crate::cmdext::CommandRunExt;

/// Commit metadata key holding the digest of the RPM a cache commit was made from.
const META_DIGEST: &str = "cosa.rpm.digest";

/// The ref of a package's cache commit (ostree refs allow `[\w.-]`; others are escaped).
pub fn cache_ref(nevra: &str) -> String {
    let mut r = String::from("cosa/pkg/");
    for c in nevra.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => r.push(c),
            other => r.push_str(&format!("_{:02X}", other as u32)),
        }
    }
    r
}

/// Open the workdir's repo, creating it (mode bare: hardlink checkouts keep ownership).
pub fn open_repo(path: &Path) -> Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    if !path.join("config").exists() {
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        repo.create(ostree::RepoMode::Bare, gio::Cancellable::NONE)
            .with_context(|| format!("creating ostree repo {}", path.display()))?;
    } else {
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("opening ostree repo {}", path.display()))?;
    }
    Ok(repo)
}

/// The cache commit of `pkg` if it exists and was made from the same RPM.
pub fn cached_commit(repo: &ostree::Repo, pkg: &Package) -> Result<Option<String>> {
    let r = cache_ref(&pkg.nevra());
    let Some(rev) = repo.resolve_rev(&r, true)? else {
        return Ok(None);
    };
    let (commit, _) = repo.load_commit(&rev)?;
    let meta = glib::VariantDict::new(Some(&commit.child_value(0)));
    let digest: Option<String> = meta.lookup(META_DIGEST).ok().flatten();
    Ok((digest.as_deref() == Some(pkg.checksum.as_str())).then(|| rev.to_string()))
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ImportStats {
    pub imported: usize,
    pub reused: usize,
}

/// Make sure every package has a cache commit; returns the commit of each, in order.
pub fn import_all(
    repo: &ostree::Repo,
    pkgs: &[Package],
    scratch: &Path,
) -> Result<(Vec<String>, ImportStats)> {
    let mut commits: Vec<Option<String>> = Vec::with_capacity(pkgs.len());
    for p in pkgs {
        commits.push(cached_commit(repo, p)?);
    }
    let todo: Vec<usize> = (0..pkgs.len()).filter(|&i| commits[i].is_none()).collect();
    let stats = ImportStats {
        imported: todo.len(),
        reused: pkgs.len() - todo.len(),
    };
    if todo.is_empty() {
        return Ok((commits.into_iter().flatten().collect(), stats));
    }
    tracing::info!(
        "importing {} packages ({} cached)",
        stats.imported,
        stats.reused
    );
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    // Unpacking is process-bound: do it in parallel; the repo writes happen below in one transaction.
    let dirs: Vec<PathBuf> = todo
        .par_iter()
        .map(|&i| {
            let p = &pkgs[i];
            let dir = scratch.join(format!("{i}"));
            unpack(&p.location, &dir, &p.name)
                .with_context(|| format!("unpacking package {}", p.nevra()))?;
            Ok(dir)
        })
        .collect::<Result<_>>()?;
    let tx = repo.auto_transaction(gio::Cancellable::NONE)?;
    for (&i, dir) in todo.iter().zip(&dirs) {
        let p = &pkgs[i];
        let c = commit_dir(repo, dir, p)
            .with_context(|| format!("importing package {} into the cache", p.nevra()))?;
        repo.transaction_set_ref(None, &cache_ref(&p.nevra()), Some(&c));
        commits[i] = Some(c);
    }
    tx.commit(gio::Cancellable::NONE)
        .context("committing the package cache")?;
    let _ = fs::remove_dir_all(scratch);
    Ok((commits.into_iter().flatten().collect(), stats))
}

fn unpack(rpm: &Path, dir: &Path, name: &str) -> Result<()> {
    fs::create_dir_all(dir)?;
    let mut rpm2cpio = Command::new("rpm2cpio")
        .arg(rpm)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting rpm2cpio")?;
    let stdout = rpm2cpio.stdout.take().context("rpm2cpio stdout")?;
    Command::new("cpio")
        .args([
            "-idm",
            "--quiet",
            "--no-absolute-filenames",
            "--no-preserve-owner",
        ])
        .current_dir(dir)
        .stdin(stdout)
        .run()?;
    let out = rpm2cpio.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "rpm2cpio {} failed: {}",
            rpm.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    var_to_tmpfiles(dir, &format!("pkg-{name}.conf"))
}

/// Move a package's /var content out of the tree: directories and symlinks become
/// tmpfiles.d lines in `conf_name` (per package, so packages never clash); files go to
/// /usr/share/factory/var and are copied at boot.
pub(crate) fn var_to_tmpfiles(root: &Path, conf_name: &str) -> Result<()> {
    let var = root.join("var");
    if !var.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let mut lines = Vec::new();
    for e in walkdir::WalkDir::new(&var).min_depth(1).sort_by_file_name() {
        let e = e?;
        let rel = e.path().strip_prefix(root)?;
        let md = e.path().symlink_metadata()?;
        use std::os::unix::fs::PermissionsExt;
        let mode = md.permissions().mode() & 0o7777;
        let target = format!("/{}", rel.display());
        if md.is_dir() {
            lines.push(format!("d {target} {mode:04o} root root - -"));
        } else if md.file_type().is_symlink() {
            let to = fs::read_link(e.path())?;
            lines.push(format!("L {target} - - - - {}", to.display()));
        } else {
            let factory = root.join("usr/share/factory").join(rel);
            fs::create_dir_all(factory.parent().unwrap())?;
            fs::copy(e.path(), &factory)?;
            lines.push(format!(
                "C {target} - - - - /usr/share/factory/{}",
                rel.display()
            ));
        }
    }
    fs::remove_dir_all(&var)?;
    fs::create_dir(&var)?;
    if !lines.is_empty() {
        let d = root.join("usr/lib/tmpfiles.d");
        fs::create_dir_all(&d)?;
        fs::write(d.join(conf_name), lines.join("\n") + "\n")?;
    }
    Ok(())
}

fn commit_dir(repo: &ostree::Repo, dir: &Path, pkg: &Package) -> Result<String> {
    let modifier = ostree::RepoCommitModifier::new(
        ostree::RepoCommitModifierFlags::CONSUME | ostree::RepoCommitModifierFlags::SKIP_XATTRS,
        None,
    );
    let root = super::commit::write_tree(repo, dir, &modifier)?;
    let meta = glib::VariantDict::new(None);
    meta.insert(META_DIGEST, pkg.checksum.as_str());
    meta.insert("cosa.rpm.nevra", pkg.nevra().as_str());
    let c = repo.write_commit_with_time(
        None,
        Some(&pkg.nevra()),
        None,
        Some(&meta.end()),
        &root,
        0,
        gio::Cancellable::NONE,
    )?;
    Ok(c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_escaped() {
        assert_eq!(
            cache_ref("foo-1:2.0-1.x86_64"),
            "cosa/pkg/foo-1_3A2.0-1.x86_64"
        );
        assert_eq!(cache_ref("g++-1-1.x86_64"), "cosa/pkg/g_2B_2B-1-1.x86_64");
    }

    #[test]
    fn var_becomes_tmpfiles() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("var/lib/foo")).unwrap();
        fs::write(r.join("var/lib/foo/state"), "x").unwrap();
        std::os::unix::fs::symlink("../run", r.join("var/run")).unwrap();
        var_to_tmpfiles(r, "pkg-foo.conf").unwrap();
        assert_eq!(fs::read_dir(r.join("var")).unwrap().count(), 0);
        let conf = fs::read_to_string(r.join("usr/lib/tmpfiles.d/pkg-foo.conf")).unwrap();
        assert!(conf.contains("d /var/lib/foo 0755 root root - -"), "{conf}");
        assert!(
            conf.contains("C /var/lib/foo/state - - - - /usr/share/factory/var/lib/foo/state"),
            "{conf}"
        );
        assert!(conf.contains("L /var/run - - - - ../run"), "{conf}");
        assert!(r.join("usr/share/factory/var/lib/foo/state").exists());
    }
}
