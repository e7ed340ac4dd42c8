//! An ostree sysroot in a directory, deployed from a build's commit as a machine's
//! first boot would have it (init-fs, os-init, pull-local, deploy with kernel args),
//! with the BLS entry ostree writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cmdext::{command, CommandRunExt};
use fs_err as fs;

pub struct Sysroot {
    pub dir: PathBuf,
    /// The BLS entries ostree wrote (paths relative to the boot partition).
    pub bls: Vec<BlsEntry>,
}

/// A Boot Loader Specification entry, as ostree writes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlsEntry {
    pub title: String,
    pub version: String,
    pub options: String,
    pub linux: String,
    pub initrd: String,
}

impl BlsEntry {
    pub fn parse(text: &str) -> Self {
        let mut e = BlsEntry::default();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            let v = v.trim().to_string();
            match k {
                "title" => e.title = v,
                "version" => e.version = v,
                "options" => e.options = v,
                "linux" => e.linux = v,
                "initrd" => e.initrd = v,
                _ => {}
            }
        }
        e
    }

    pub fn render(&self) -> String {
        format!(
            "title {}\nversion {}\noptions {}\nlinux {}\ninitrd {}\n",
            self.title, self.version, self.options, self.linux, self.initrd
        )
    }
}

/// Remove a directory holding sysroots: ostree marks deployment roots immutable, so
/// clear that flag first.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in walkdir::WalkDir::new(dir)
        .max_depth(7)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let p = e.path();
        let is_deployment = e.file_type().is_dir()
            && p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "deploy")
            && p.ancestors()
                .nth(3)
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "deploy");
        if is_deployment {
            command("chattr").arg("-i").arg(p).run()?;
        }
    }
    fs::remove_dir_all(dir)?;
    Ok(())
}

/// The one deployment directory in a sysroot's stateroot.
pub fn deployment_dir(sysroot: &Path, stateroot: &str) -> Result<PathBuf> {
    let d = sysroot.join("ostree/deploy").join(stateroot).join("deploy");
    for e in fs::read_dir(&d)? {
        let p = e?.path();
        if p.is_dir() {
            return Ok(p);
        }
    }
    bail!("no deployment in {}", d.display())
}

fn ostree(args: &[&str]) -> Command {
    let mut c = command("ostree");
    c.args(args);
    c
}

/// Deploy `commit` from `repo` into a fresh sysroot at `dest`, under `stateroot`,
/// recording `refspec` as the deployment's origin.
pub fn deploy(
    repo: &Path,
    commit: &str,
    refspec: &str,
    stateroot: &str,
    kargs: &[String],
    dest: &Path,
) -> Result<Sysroot> {
    remove_tree(dest)?;
    fs::create_dir_all(dest)?;
    let d = dest.to_str().context("non-UTF-8 path")?;
    let srepo = format!("--repo={d}/ostree/repo");
    let sysroot = format!("--sysroot={d}");
    ostree(&["admin", "init-fs", "--modern", d])
        .run()
        .context("ostree admin init-fs")?;
    // The image builder writes the first bootloader config itself (per platform);
    // ostree only writes BLS entries here.
    ostree(&[&srepo, "config", "set", "sysroot.bootloader", "none"]).run()?;
    ostree(&[
        &srepo,
        "pull-local",
        repo.to_str().context("non-UTF-8 path")?,
        commit,
    ])
    .run()
    .with_context(|| format!("pulling commit {commit} into the sysroot"))?;
    ostree(&[&srepo, "refs", &format!("--create={refspec}"), commit]).run()?;
    ostree(&["admin", "os-init", &sysroot, stateroot]).run()?;
    let mut deploy = vec![
        "admin".to_string(),
        "deploy".into(),
        sysroot.clone(),
        format!("--os={stateroot}"),
    ];
    deploy.extend(kargs.iter().map(|k| format!("--karg={k}")));
    deploy.push(refspec.to_string());
    command("ostree")
        .args(&deploy)
        .run()
        .with_context(|| format!("deploying {commit}"))?;
    // The deployment's kernel must be there: a commit without one cannot boot.
    let entries_dir = dest.join("boot/loader/entries");
    let mut bls = Vec::new();
    for e in fs::read_dir(&entries_dir)? {
        let e = e?;
        bls.push(BlsEntry::parse(&fs::read_to_string(e.path())?));
    }
    if bls.is_empty() {
        bail!("ostree wrote no boot entry for commit {commit}");
    }
    // From now on, in the booted system, each deployment change rewrites the menu
    // GRUB reads (see image::grub): the image builder wrote the first one itself.
    ostree(&[&srepo, "config", "set", "sysroot.bootloader", "syslinux"]).run()?;
    Ok(Sysroot {
        dir: dest.to_path_buf(),
        bls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bls_roundtrip() {
        let t = "title Demo 1 (ostree:0)\nversion 1\noptions root=LABEL=root rw ostree=/ostree/boot.1/demo/abc/0\nlinux /ostree/demo-abc/vmlinuz-6.1\ninitrd /ostree/demo-abc/initramfs-6.1.img\n";
        let e = BlsEntry::parse(t);
        assert_eq!(
            e.options,
            "root=LABEL=root rw ostree=/ostree/boot.1/demo/abc/0"
        );
        assert_eq!(e.render(), t);
    }
}
