//! Per-platform images: the base disk with the platform's kernel arguments and GRUB
//! commands in its boot filesystem, converted to the platform's format.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::disk::{self, DiskSpec};
use super::grub;
use super::sysroot::BlsEntry;
use crate::config::image::PlatformConfig;
use cmdext::CommandRunExt;

/// Kernel arguments a platform's image boots with, after the image-wide ones.
pub fn platform_kargs(platform: &str, cfg: &PlatformConfig) -> Vec<String> {
    // metal4k is metal on a 4K disk: Ignition knows it as metal.
    let id = if platform == "metal4k" {
        "metal"
    } else {
        platform
    };
    let mut k = vec![format!("ignition.platform.id={id}")];
    k.extend(cfg.kernel_arguments.iter().cloned());
    k
}

/// The boot filesystem's tree for one platform: a hardlinked copy of the base one with
/// the BLS entries' options extended, grub.cfg generated, and the first-boot stamp.
fn platform_bootdir(
    base: &Path,
    dest: &Path,
    platform: &str,
    cfg: &PlatformConfig,
) -> Result<Vec<BlsEntry>> {
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    Command::new("cp")
        .arg("-al")
        .arg(base)
        .arg(dest)
        .run()
        .context("copying the boot tree")?;
    let kargs = platform_kargs(platform, cfg).join(" ");
    let entries_dir = dest.join("loader/entries");
    let mut entries = Vec::new();
    for e in fs::read_dir(&entries_dir)? {
        let p = e?.path();
        let mut bls = BlsEntry::parse(&fs::read_to_string(&p)?);
        bls.options = format!("{} {kargs}", bls.options);
        // A new file, not a write through the hardlink into the base tree.
        fs::remove_file(&p)?;
        fs::write(&p, bls.render())?;
        entries.push(bls);
    }
    entries.sort_by(|a, b| a.title.cmp(&b.title));
    fs::create_dir_all(dest.join("grub2"))?;
    let _ = fs::remove_file(dest.join("grub2/grub.cfg"));
    fs::write(
        dest.join("grub2/grub.cfg"),
        grub::grub_cfg(&entries, &cfg.grub_commands),
    )?;
    fs::write(dest.join("ignition.firstboot"), "")?;
    Ok(entries)
}

/// Make `platform`'s raw disk from the base disk: a sparse copy with its own boot filesystem.
pub fn platform_raw(
    spec: &DiskSpec,
    base_disk: &Path,
    base_bootdir: &Path,
    platform: &str,
    cfg: &PlatformConfig,
    scratch: &Path,
) -> Result<PathBuf> {
    let raw = scratch.join(format!("{platform}.raw"));
    Command::new("cp")
        .arg("--sparse=always")
        .arg(base_disk)
        .arg(&raw)
        .run()
        .with_context(|| format!("copying the base disk for {platform}"))?;
    let bootdir = scratch.join(format!("boot-{platform}"));
    platform_bootdir(base_bootdir, &bootdir, platform, cfg)?;
    disk::write_boot(spec, &raw, &bootdir)?;
    fs::remove_dir_all(&bootdir)?;
    Ok(raw)
}

/// Convert a platform's raw disk into its published format at `out`.
pub fn convert(platform: &str, raw: &Path, out: &Path) -> Result<()> {
    let qemu_img = |fmt: &str, opts: &str| -> Result<()> {
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", fmt, "-o", opts])
            .arg(raw)
            .arg(out)
            .run()
            .with_context(|| format!("converting the {platform} image to {fmt}"))
    };
    match platform {
        "qemu" => qemu_img("qcow2", "compat=1.1")?,
        "metal" | "metal4k" => fs::rename(raw, out)?,
        "aws" => qemu_img(
            "vmdk",
            "adapter_type=lsilogic,subformat=streamOptimized,compat6",
        )?,
        // Fixed VHD; force_size keeps the virtual size exactly the (whole-MiB) raw size.
        "azure" => qemu_img("vpc", "subformat=fixed,force_size=on")?,
        "gcp" => {
            let dir = raw.parent().context("raw has no parent")?;
            let disk_raw = dir
                .join(format!("gcp-{}", std::process::id()))
                .join("disk.raw");
            fs::create_dir_all(disk_raw.parent().unwrap())?;
            fs::rename(raw, &disk_raw)?;
            Command::new("tar")
                .args([
                    "--format=oldgnu",
                    "--sparse",
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                    "-czf",
                ])
                .arg(out)
                .arg("-C")
                .arg(disk_raw.parent().unwrap())
                .arg("disk.raw")
                .run()
                .context("making the GCP tarball")?;
            fs::remove_dir_all(disk_raw.parent().unwrap())?;
        }
        other => anyhow::bail!("no conversion for platform {other}"),
    }
    Ok(())
}
