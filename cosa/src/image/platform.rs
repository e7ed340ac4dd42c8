//! Per-platform images: the base disk with the platform's kernel arguments and GRUB
//! commands in its boot filesystem, converted to the platform's format.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cmdext::{command, CommandRunExt};
use fs_err as fs;

use super::disk::{self, DiskSpec};
use super::grub;
use super::ova;
use super::sysroot::BlsEntry;
use crate::arch::Arch;
use crate::config::image::{ImageConfig, PlatformConfig};
use crate::platform::{Conversion, Platform};

/// Kernel arguments a platform's image boots with, after the image-wide ones.
pub fn platform_kargs(platform: Platform, cfg: &PlatformConfig) -> Vec<String> {
    let mut k = vec![format!("ignition.platform.id={}", platform.ignition_id())];
    k.extend(cfg.kernel_arguments.iter().cloned());
    k
}

/// The boot filesystem's tree for one platform: a hardlinked copy of the base one with
/// the BLS entries' options extended, the menu ostree keeps (`loader/syslinux.cfg`)
/// and grub.cfg generated, and the first-boot stamp.
fn platform_bootdir(
    base: &Path,
    dest: &Path,
    platform: Platform,
    cfg: &PlatformConfig,
) -> Result<Vec<BlsEntry>> {
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    command("cp")
        .arg("-al")
        .arg(base)
        .arg(dest)
        .run()
        .context("copying the boot tree")?;
    // `$ignition_firstboot` is GRUB's (grub.cfg sets it from the first-boot stamp):
    // in the BLS options, ostree carries it into every later deployment's entry.
    let kargs = platform_kargs(platform, cfg).join(" ") + " $ignition_firstboot";
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
    // The menu ostree maintains from here on (sysroot.bootloader=syslinux), at
    // loader/syslinux.cfg (`loader` links to the current loader.N), and the link
    // ostree's syslinux backend looks for.
    let menu = dest.join("loader/syslinux.cfg");
    let _ = fs::remove_file(&menu);
    fs::write(&menu, grub::syslinux_cfg(&entries))?;
    fs::create_dir_all(dest.join("syslinux"))?;
    let _ = fs::remove_file(dest.join("syslinux/syslinux.cfg"));
    std::os::unix::fs::symlink("../loader/syslinux.cfg", dest.join("syslinux/syslinux.cfg"))?;
    fs::create_dir_all(dest.join("grub2"))?;
    let _ = fs::remove_file(dest.join("grub2/grub.cfg"));
    fs::write(
        dest.join("grub2/grub.cfg"),
        grub::grub_cfg(&cfg.grub_commands)?,
    )?;
    fs::write(dest.join("ignition.firstboot"), "")?;
    Ok(entries)
}

/// Make `platform`'s raw disk from the base disk: a sparse copy with its own boot filesystem.
pub fn platform_raw(
    spec: &DiskSpec,
    base_disk: &Path,
    base_bootdir: &Path,
    platform: Platform,
    cfg: &PlatformConfig,
    scratch: &Path,
) -> Result<PathBuf> {
    let raw = scratch.join(format!("{platform}.raw"));
    command("cp")
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

/// The build an artifact belongs to, for the formats that describe it (OVA,
/// containerDisk).
pub struct Packaging<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub commit: &'a str,
    pub arch: Arch,
    pub image: &'a ImageConfig,
    /// The commit's time, RFC 3339 and in seconds.
    pub timestamp: &'a str,
    pub timestamp_secs: u64,
}

/// Convert a platform's raw disk into its published format at `out`.
pub fn convert(platform: Platform, raw: &Path, out: &Path, b: &Packaging) -> Result<()> {
    match platform.conversion() {
        Conversion::Raw => fs::rename(raw, out)?,
        Conversion::QemuImg { format, options } => command("qemu-img")
            .args(["convert", "-f", "raw", "-O", format, "-o", options])
            .arg(raw)
            .arg(out)
            .run()
            .with_context(|| format!("converting the {platform} image to {format}"))?,
        Conversion::GzipTarDiskRaw => gzip_tar_disk_raw(raw, out)?,
        Conversion::Ova(flavor) => {
            let ova = ova::OvaBuild {
                name: b.name,
                version: b.version,
                image: b.image,
                mtime: b.timestamp_secs,
            };
            ova::write(flavor, &ova, raw, out)
                .with_context(|| format!("making the {platform} OVA"))?
        }
        Conversion::ContainerDisk => containerdisk(raw, out, b)
            .with_context(|| format!("making the {platform} containerDisk"))?,
    }
    Ok(())
}

/// The disk as a qcow2 in a KubeVirt containerDisk image (the layer's gzip, made on
/// all cores, compresses it: qemu-img's own compression runs on one).
fn containerdisk(raw: &Path, out: &Path, b: &Packaging) -> Result<()> {
    let qcow2 = out.with_extension("qcow2.tmp");
    let made = command("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1"])
        .arg(raw)
        .arg(&qcow2)
        .run()
        .context("converting the disk to qcow2")
        .and_then(|()| {
            let c = crate::oci::containerdisk::ContainerDisk {
                disk: &qcow2,
                file_name: &format!("{}-{}.qcow2", b.name, b.version),
                arch: b.arch,
                created: b.timestamp,
                annotations: [
                    ("org.opencontainers.image.title", b.name),
                    ("org.opencontainers.image.version", b.version),
                    (crate::oci::labels::COMMIT, b.commit),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            };
            crate::oci::containerdisk::write(&c, out)
        });
    let _ = fs::remove_file(&qcow2);
    made
}

/// `raw` as `disk.raw` in a gzipped tar at `out`: oldgnu format, where sparse files
/// are stored as such, with no owner names.
fn gzip_tar_disk_raw(raw: &Path, out: &Path) -> Result<()> {
    let parent = raw.parent().context("raw has no parent")?;
    let dir = parent.join(format!("gcp-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    fs::rename(raw, dir.join("disk.raw"))?;
    command("tar")
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
        .arg(&dir)
        .arg("disk.raw")
        .run()
        .context("making the GCP tarball")?;
    fs::remove_dir_all(&dir)?;
    Ok(())
}
