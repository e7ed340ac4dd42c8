//! Live media (`cosa buildextend-live`): the PXE kernel, initramfs and rootfs (a cpio
//! holding a squashfs or erofs image of the deployed sysroot, appendable as a second
//! initrd), and a hybrid ISO booting that image with `coreos.liveiso=<label>`.
//!
//! The build's metal image rides inside the live image at `/cosa/metal.*` (the live
//! system sees it as `/sysroot/cosa/metal.*`), so ISO and PXE both install offline.
//! Day-0 customization of the results is in [`customize`].

pub mod customize;
pub mod iso;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::builds::artifact::{self, Artifact, BuiltImage};
use crate::builds::{History, Meta, Workdir};
use crate::config::image::{ImageConfig, LiveRootFs, Platforms};
use crate::cpio;
use crate::image::{disk, platform, sysroot, ImageOptions};
use crate::platform::Platform;
use cmdext::CommandRunExt;

/// meta.json names of the live artifacts, in the order they are made.
pub const ARTIFACTS: &[&str] = &["live-kernel", "live-initramfs", "live-rootfs", "live-iso"];

/// Where the metal image sits inside the live image (and, in the live system,
/// under `/sysroot`).
pub const METAL_DIR: &str = "cosa";

/// The ISO volume label for a build: it names the build (at most 32 bytes).
pub fn volume_label(name: &str, id: &str) -> String {
    let mut l = format!("{name}-{id}");
    l.truncate(32);
    l
}

fn artifact_file(name: &str, id: &str, what: &str, arch: &str) -> String {
    match what {
        "live-kernel" => format!("{name}-{id}-live-kernel-{arch}"),
        "live-initramfs" => format!("{name}-{id}-live-initramfs.{arch}.img"),
        "live-rootfs" => format!("{name}-{id}-live-rootfs.{arch}.img"),
        _ => format!("{name}-{id}-live.{arch}.iso"),
    }
}

fn existing(meta: &Meta) -> Option<Vec<BuiltImage>> {
    ARTIFACTS
        .iter()
        .map(|n| {
            Some(BuiltImage {
                name: n.to_string(),
                built: false,
                image: meta.images.get(*n)?.clone(),
            })
        })
        .collect()
}

/// Hardlink `src` to `dest`, or copy (sparse) when they are on different filesystems.
fn link_or_copy(src: &Path, dest: &Path) -> Result<()> {
    if fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    Command::new("cp")
        .arg("--sparse=always")
        .arg(src)
        .arg(dest)
        .run()
        .with_context(|| format!("copying {} to {}", src.display(), dest.display()))
}

/// The live root image of `tree` at `out`.
fn root_image(fstype: LiveRootFs, tree: &Path, out: &Path) -> Result<()> {
    let _ = fs::remove_file(out);
    match fstype {
        LiveRootFs::Squashfs => Command::new("mksquashfs")
            .arg(tree)
            .arg(out)
            .args(["-noappend", "-no-progress", "-quiet", "-comp", "zstd"])
            .run()
            .context("making the live root squashfs"),
        LiveRootFs::Erofs => Command::new("mkfs.erofs")
            .args(["-zlz4hc", "--quiet"])
            .arg(out)
            .arg(tree)
            .run()
            .context("making the live root erofs"),
    }
}

/// The PXE rootfs: a cpio with the root image as its one member.
pub fn write_rootfs_cpio(image: &Path, member: &str, out: &Path) -> Result<()> {
    let f = fs::File::open(image)?;
    let size = f.metadata()?.len();
    let w = std::io::BufWriter::new(
        fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let mut c = cpio::Writer::new(w);
    c.file_from(member, 0o644, size, f)?;
    c.finish()?;
    Ok(())
}

pub fn build_live(wd: &Workdir, build: Option<&str>, force: bool) -> Result<Vec<BuiltImage>> {
    let history = History::new(wd.builds_dir());
    let host = crate::arch::Arch::host()?;
    let arch = host.name();
    let id = history.resolve_id(build)?;
    let build_dir = history.build_dir(&id, arch);
    let meta_path = build_dir.join("meta.json");
    let meta = Meta::load(&meta_path)?;
    if !force {
        if let Some(r) = existing(&meta) {
            tracing::info!("live media already built for {id} (--force to rebuild)");
            return Ok(r);
        }
    }
    if !meta.images.contains_key("metal") {
        tracing::info!("{id} has no metal image: making it first (it is what installs)");
        crate::image::build_images(
            wd,
            &ImageOptions {
                build: Some(&id),
                platforms: &[Platform::Metal],
                force: false,
                arch: host,
            },
        )?;
    }
    let _lock = wd.lock("live media build", true)?;
    crate::image::ensure_ostree_image(wd, &id, host)?;
    let mut meta = Meta::load(&meta_path)?;
    let commit = meta.ostree_commit.clone();
    let metal: Artifact = meta
        .images
        .get("metal")
        .context("meta.json has no images.metal")?
        .clone();
    let config_dir = wd.config_dir();
    let img = ImageConfig::load(&config_dir)?;
    let platforms = Platforms::load(&config_dir)?;
    let metal_cfg = platforms.get(host, Platform::Metal);
    let name = meta.name.clone();
    let label = volume_label(&name, &id);

    let scratch = wd.tmp_dir().join(format!("live-{id}"));
    sysroot::remove_tree(&scratch)?;
    fs::create_dir_all(&scratch)?;
    let result = (|| -> Result<Vec<(String, PathBuf)>> {
        tracing::info!("deploying {commit} into a sysroot");
        let refspec = format!(
            "{}:{}",
            img.ostree_remote.as_deref().unwrap_or(&name),
            meta.ostree_ref.as_deref().unwrap_or("cosa")
        );
        let sr = sysroot::deploy(
            &wd.repo_path(),
            &commit,
            &refspec,
            &name,
            &img.extra_kargs,
            &scratch.join("sysroot"),
        )?;
        let bls = sr.bls.first().context("no boot entry")?.clone();
        let (bootdir, tree) = disk::split_sysroot(&sr.dir, &scratch)?;
        let deployment = sysroot::deployment_dir(&tree, &name)?;
        let out = |what: &str| scratch.join(artifact_file(&name, &id, what, arch));
        let kernel = out("live-kernel");
        let initramfs = out("live-initramfs");
        fs::copy(bootdir.join(bls.linux.trim_start_matches('/')), &kernel)
            .context("copying the kernel")?;
        fs::copy(bootdir.join(bls.initrd.trim_start_matches('/')), &initramfs)
            .context("copying the initramfs")?;

        let metal_src = build_dir.join(&metal.path);
        let ext = metal.path.rsplit_once(".raw").map_or("", |(_, e)| e);
        if !matches!(ext, "" | ".gz" | ".xz") {
            bail!(
                "the metal image {} is compressed in a way the live installer cannot read (raw, .gz or .xz); run `cosa decompress` first",
                metal.path
            );
        }
        fs::create_dir_all(tree.join(METAL_DIR))?;
        link_or_copy(
            &metal_src,
            &tree.join(METAL_DIR).join(format!("metal.raw{ext}")),
        )?;

        let (fstype, member) = match img.live_rootfs_fstype {
            LiveRootFs::Squashfs => (LiveRootFs::Squashfs, "root.squashfs"),
            LiveRootFs::Erofs => (LiveRootFs::Erofs, "root.erofs"),
        };
        tracing::info!("making the live root image ({member})");
        let isodir = scratch.join("iso");
        fs::create_dir_all(isodir.join("images/pxeboot"))?;
        let rootimg = isodir.join(member);
        root_image(fstype, &tree, &rootimg)?;
        let rootfs = out("live-rootfs");
        write_rootfs_cpio(&rootimg, member, &rootfs)?;
        link_or_copy(&kernel, &isodir.join("images/pxeboot/vmlinuz"))?;
        link_or_copy(&initramfs, &isodir.join("images/pxeboot/initrd.img"))?;

        let mut kargs = vec![
            format!("coreos.liveiso={label}"),
            "ignition.firstboot".to_string(),
        ];
        // The deployment, as on disk: the live image holds a whole sysroot.
        kargs.extend(
            bls.options
                .split_whitespace()
                .filter(|k| k.starts_with("ostree="))
                .map(String::from),
        );
        kargs.extend(img.extra_kargs.iter().cloned());
        kargs.extend(platform::platform_kargs(Platform::Metal, &metal_cfg));
        let title = format!("{} {id}", os_name(&deployment));
        tracing::info!("writing the ISO (volume {label})");
        let iso_out = out("live-iso");
        iso::build(
            &iso::IsoSpec {
                label: &label,
                title: &title,
                kargs: &kargs,
                grub_commands: &metal_cfg.grub_commands,
                deployment: &deployment,
                arch: host,
            },
            &isodir,
            &iso_out,
            &scratch,
        )?;
        Ok(vec![
            ("live-kernel".into(), kernel),
            ("live-initramfs".into(), initramfs),
            ("live-rootfs".into(), rootfs),
            ("live-iso".into(), iso_out),
        ])
    })();
    let made = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = sysroot::remove_tree(&scratch);
            return Err(e);
        }
    };

    // Move the finished artifacts in, then record them: meta.json is written last.
    let results = artifact::install(&build_dir, &mut meta, artifact::describe(made)?)?;
    meta.save(&meta_path)?;
    sysroot::remove_tree(&scratch)?;
    Ok(results)
}

/// NAME from the deployment's os-release, for the boot menu.
fn os_name(deployment: &Path) -> String {
    let text = fs::read_to_string(deployment.join("usr/lib/os-release")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_the_build_and_fits_iso9660() {
        assert_eq!(volume_label("demo", "1.20261120.0"), "demo-1.20261120.0");
        assert_eq!(volume_label("x", &"9".repeat(40)).len(), 32);
    }

    #[test]
    fn artifact_names_follow_coreos_assembler() {
        assert_eq!(
            artifact_file("demo", "1", "live-iso", "x86_64"),
            "demo-1-live.x86_64.iso"
        );
        assert_eq!(
            artifact_file("demo", "1", "live-kernel", "x86_64"),
            "demo-1-live-kernel-x86_64"
        );
    }
}
