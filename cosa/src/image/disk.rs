//! The base disk: GPT with BIOS-BOOT, EFI-SYSTEM (vfat), `boot` (ext4) and `root`
//! (ext4, or xfs), made from files: filesystems are written with `mkfs.ext4 -d` at
//! their offsets in the disk file, the ESP with mtools, GRUB by hand. No VM, no
//! mounts, no partition-scanning loop devices (xfs alone needs a plain loop mount).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cmdext::{command, CommandRunExt};
use fs_err::os::unix::fs::FileExt;
use fs_err::{self as fs, File};

use super::gpt::{self, derived_uuid, Guid, Partition, MIB};
use super::grub::{self, Firmware};
use crate::config::image::RootFs;

pub const BIOS_START: u64 = MIB;
pub const ESP_START: u64 = 2 * MIB;
pub const ESP_SIZE: u64 = 127 * MIB;
pub const BOOT_START: u64 = 129 * MIB;
pub const BOOT_SIZE: u64 = 384 * MIB;
pub const ROOT_START: u64 = 513 * MIB;
/// Room after the root partition for the backup GPT.
const TAIL: u64 = MIB;

/// What a disk is made of, and the seed its UUIDs derive from.
pub struct DiskSpec<'a> {
    /// Seed for every UUID (the build ID): rebuilding gives the same UUIDs.
    pub seed: &'a str,
    pub size: u64,
    pub sector: u64,
    pub rootfs: RootFs,
    /// SOURCE_DATE_EPOCH for the filesystems.
    pub timestamp: u64,
    /// What the architecture boots: the ESP's GRUB, and BIOS GRUB where there is a BIOS.
    pub firmware: Firmware,
}

impl DiskSpec<'_> {
    pub fn partitions(&self) -> Vec<Partition> {
        let part = |name: &str, type_guid, start, size| Partition {
            name: name.to_string(),
            type_guid,
            guid: Guid::derived(&format!("{}/part/{name}", self.seed)),
            start,
            size,
        };
        let bios = self
            .firmware
            .bios_format
            .map(|_| part("BIOS-BOOT", gpt::TYPE_BIOS_BOOT, BIOS_START, MIB));
        bios.into_iter()
            .chain([
                part("EFI-SYSTEM", gpt::TYPE_EFI_SYSTEM, ESP_START, ESP_SIZE),
                part("boot", gpt::TYPE_LINUX_FS, BOOT_START, BOOT_SIZE),
                part("root", gpt::TYPE_LINUX_FS, ROOT_START, self.root_size()),
            ])
            .collect()
    }

    /// Write this disk's partition table (at its sector size) into `disk`.
    pub fn write_gpt(&self, disk: &mut File) -> Result<()> {
        gpt::write(
            disk,
            self.sector,
            Guid::derived(&format!("{}/disk", self.seed)),
            &self.partitions(),
        )
    }

    pub fn root_size(&self) -> u64 {
        self.size - ROOT_START - TAIL
    }

    fn fs_uuid(&self, label: &str) -> String {
        derived_uuid(&format!("{}/fs/{label}", self.seed))
    }
}

/// Bytes a tree takes on ext4: file data in 4 KiB blocks (hardlinks counted once),
/// plus a block per directory and an inode per entry.
pub fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    for e in walkdir::WalkDir::new(dir) {
        let e = e.with_context(|| format!("walking {}", dir.display()))?;
        let md = e.metadata()?;
        total += 256;
        if md.is_dir() {
            total += 4096;
        } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
            total += md.len().div_ceil(4096) * 4096;
        }
    }
    Ok(total)
}

/// The disk size for a root tree when image.yaml sets none: content plus headroom,
/// rounded up to a whole GiB.
pub fn default_size(root_bytes: u64) -> u64 {
    let need = ROOT_START + TAIL + root_bytes + root_bytes / 4 + 512 * MIB;
    need.div_ceil(1024 * MIB) * 1024 * MIB
}

fn mkfs_ext4(
    spec: &DiskSpec,
    disk: &Path,
    label: &str,
    content: &Path,
    offset: u64,
    size: u64,
) -> Result<()> {
    let uuid = spec.fs_uuid(label);
    command("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", label, "-U", &uuid])
        .arg("-E")
        .arg(format!("offset={offset},hash_seed={uuid},root_owner=0:0"))
        .arg("-d")
        .arg(content)
        .arg(disk)
        .arg(format!("{}k", size / 1024))
        .env("E2FSPROGS_FAKE_TIME", spec.timestamp.to_string())
        .run()
        .with_context(|| {
            format!(
                "making the {label} filesystem (ext4, {} MiB) from {}",
                size / MIB,
                content.display()
            )
        })
}

/// Write the `boot` filesystem from `bootdir` into the disk.
pub fn write_boot(spec: &DiskSpec, disk: &Path, bootdir: &Path) -> Result<()> {
    mkfs_ext4(spec, disk, "boot", bootdir, BOOT_START, BOOT_SIZE)
}

fn write_root(spec: &DiskSpec, disk: &Path, rootdir: &Path, scratch: &Path) -> Result<()> {
    let size = spec.root_size();
    let need = tree_bytes(rootdir)?;
    if need > size {
        bail!(
            "the root filesystem content ({} MiB) does not fit the root partition ({} MiB) of a {} MiB disk; raise `size` in image.yaml",
            need / MIB,
            size / MIB,
            spec.size / MIB
        );
    }
    match spec.rootfs {
        RootFs::Ext4 => mkfs_ext4(spec, disk, "root", rootdir, ROOT_START, size),
        RootFs::Xfs => write_root_xfs(spec, disk, rootdir, size, scratch),
    }
}

/// mkfs.xfs cannot populate from a directory here: format the partition through a
/// loop device at its offset, mount it, copy the tree (hardlinks kept), unmount.
fn write_root_xfs(
    spec: &DiskSpec,
    disk: &Path,
    rootdir: &Path,
    size: u64,
    scratch: &Path,
) -> Result<()> {
    let dev = command("losetup")
        .args([
            "--find",
            "--show",
            "-o",
            &ROOT_START.to_string(),
            "--sizelimit",
            &size.to_string(),
        ])
        .arg(disk)
        .run_get_string()
        .context("attaching the root partition to a loop device")?
        .trim()
        .to_string();
    let mnt = scratch.join("xfs-root");
    let result = (|| -> Result<()> {
        command("mkfs.xfs")
            .args([
                "-q",
                "-f",
                "-L",
                "root",
                "-m",
                &format!("uuid={}", spec.fs_uuid("root")),
                &dev,
            ])
            .run()
            .context("making the root filesystem (xfs)")?;
        fs::create_dir_all(&mnt)?;
        command("mount")
            .arg(&dev)
            .arg(&mnt)
            .run()
            .context("mounting the xfs root")?;
        let copied = command("cp")
            .arg("-a")
            .arg(format!("{}/.", rootdir.display()))
            .arg(&mnt)
            .run()
            .context("copying the root tree into xfs");
        let unmounted = command("umount").arg(&mnt).run();
        copied.and(unmounted)
    })();
    let detached = command("losetup").args(["-d", &dev]).run();
    result.and(detached)
}

fn write_esp(spec: &DiskSpec, disk: &File, efi_image: &Path, scratch: &Path) -> Result<()> {
    let esp = scratch.join("esp.img");
    let _ = fs::remove_file(&esp);
    let volid = &spec.fs_uuid("EFI-SYSTEM").replace('-', "")[..8];
    let binary = spec.firmware.efi_binary;
    command("mkfs.vfat")
        .args([
            "-C",
            "-F",
            "16",
            "-S",
            &spec.sector.to_string(),
            "-n",
            "EFI-SYSTEM",
            "-i",
            volid,
        ])
        .arg(&esp)
        .arg((ESP_SIZE / 1024).to_string())
        .env("SOURCE_DATE_EPOCH", spec.timestamp.to_string())
        .run()
        .context("making the EFI-SYSTEM filesystem")?;
    let img = format!("{}", esp.display());
    command("mmd")
        .args(["-i", &img, "::EFI", "::EFI/BOOT"])
        .run()?;
    command("mcopy")
        .args(["-i", &img])
        .arg(efi_image)
        .arg(format!("::EFI/BOOT/{binary}"))
        .run()
        .with_context(|| format!("copying {binary} to the ESP"))?;
    copy_sparse(&esp, disk, ESP_START)?;
    fs::remove_file(&esp)?;
    Ok(())
}

/// Copy a file into the disk at `offset`, skipping all-zero blocks (the disk is sparse).
fn copy_sparse(src: &Path, disk: &File, offset: u64) -> Result<()> {
    let f = File::open(src)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0u64;
    loop {
        let n = f.read_at(&mut buf, pos)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            disk.write_all_at(&buf[..n], offset + pos)?;
        }
        pos += n as u64;
    }
    Ok(())
}

/// Split a deployed sysroot into the boot partition's tree and the root's.
pub fn split_sysroot(sysroot: &Path, scratch: &Path) -> Result<(PathBuf, PathBuf)> {
    let bootdir = scratch.join("boot");
    if bootdir.exists() {
        fs::remove_dir_all(&bootdir)?;
    }
    fs::rename(sysroot.join("boot"), &bootdir).context("moving /boot out of the sysroot")?;
    fs::create_dir(sysroot.join("boot"))?;
    Ok((bootdir, sysroot.to_path_buf()))
}

/// Where [`build`] leaves the UEFI GRUB image it put on the ESP.
pub fn efi_image(spec: &DiskSpec, scratch: &Path) -> PathBuf {
    scratch.join(spec.firmware.efi_binary)
}

/// Make a 4K-sector disk at `out` from a finished 512-byte one made by [`build`] for
/// the same build: the boot and root filesystems (4 KiB blocks, same offsets) are
/// kept, and only the partition table, the ESP (vfat at 4096-byte sectors) are laid
/// again, without BIOS GRUB. The result is what [`build`] makes for `spec`, for the
/// cost of a sparse copy and a small vfat instead of the filesystems again.
pub fn relayout_4k(spec: &DiskSpec, base512: &Path, out: &Path, scratch: &Path) -> Result<()> {
    if spec.sector != 4096 {
        bail!("relayout_4k makes 4096-byte-sector disks only");
    }
    command("cp")
        .arg("--sparse=always")
        .arg(base512)
        .arg(out)
        .run()
        .context("copying the base disk for 4K sectors")?;
    let mut disk = File::options().read(true).write(true).open(out)?;
    if disk.metadata()?.len() != spec.size {
        bail!(
            "{} is not a {} MiB disk",
            base512.display(),
            spec.size / MIB
        );
    }
    // MBR, GPT, BIOS-BOOT (core.img) and the ESP go; so does the backup GPT.
    let punch = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
    for (start, len) in [(0, BOOT_START), (spec.size - TAIL, TAIL)] {
        rustix::fs::fallocate(&disk, punch, start, len)
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!("clearing {} MiB at {start} in {}", len / MIB, out.display())
            })?;
    }
    spec.write_gpt(&mut disk)?;
    let esp_scratch = scratch.join("esp-4k");
    fs::create_dir_all(&esp_scratch)?;
    write_esp(spec, &disk, &efi_image(spec, scratch), &esp_scratch)?;
    fs::remove_dir(&esp_scratch)?;
    Ok(())
}

/// Make the base disk at `out`: GPT, ESP with GRUB for UEFI, boot and root
/// filesystems, and GRUB for BIOS (512-byte sectors only: BIOS cannot boot 4K disks).
pub fn build(
    spec: &DiskSpec,
    bootdir: &Path,
    rootdir: &Path,
    deployment: &Path,
    out: &Path,
    scratch: &Path,
) -> Result<()> {
    let mut disk = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)?;
    disk.set_len(spec.size)?;
    spec.write_gpt(&mut disk)?;

    let fw = spec.firmware;
    let efi = efi_image(spec, scratch);
    let efi_mods = grub::modules_dir(deployment, fw.efi_format)?;
    grub::mkimage(&efi_mods, fw.efi_format, false, &efi)?;
    write_esp(spec, &disk, &efi, scratch)?;
    match fw.bios_format {
        Some(bios_format) if spec.sector == 512 => {
            let bios_mods = grub::modules_dir(deployment, bios_format)?;
            let core = scratch.join("core.img");
            grub::mkimage(&bios_mods, bios_format, true, &core)?;
            grub::install_bios(&disk, &bios_mods, &core, BIOS_START / 512)?;
        }
        _ => {}
    }
    disk.sync_all()?;
    drop(disk);
    write_boot(spec, out, bootdir)?;
    write_root(spec, out, rootdir, scratch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_larger_than_the_root_partition_names_both_sizes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        File::create(root.join("big"))
            .unwrap()
            .set_len(20 * MIB)
            .unwrap();
        let spec = DiskSpec {
            seed: "t",
            size: ROOT_START + TAIL + 8 * MIB,
            sector: 512,
            rootfs: RootFs::Ext4,
            timestamp: 0,
            firmware: Firmware::of(crate::arch::Arch::X86_64).unwrap(),
        };
        let disk = t.path().join("disk.raw");
        let e = write_root(&spec, &disk, &root, t.path()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("(20 MiB)") && msg.contains("(8 MiB)"), "{msg}");
        assert!(
            !disk.exists(),
            "nothing may be written when the content does not fit"
        );
    }

    #[test]
    fn default_size_leaves_headroom() {
        let s = default_size(300 * MIB);
        assert_eq!(s % (1024 * MIB), 0);
        assert!(s >= ROOT_START + TAIL + 300 * MIB);
    }
}
