//! GRUB for BIOS and UEFI without grub-install: images made with grub-mkimage from
//! the OS content's GRUB modules (bootupd-style payload) or the host's, one grub.cfg
//! on the boot partition generated from the BLS entries.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::sysroot::BlsEntry;
use cmdext::CommandRunExt;

/// Where a stream ships its GRUB modules, relative to the deployment root.
const PAYLOAD_DIR: &str = "usr/lib/bootupd/grub2";
const HOST_DIR: &str = "/usr/lib/grub";

/// Modules built into both images: enough to find the boot partition by label and
/// boot Linux from ext4 or xfs, with a serial console.
/// What every GRUB image of ours needs to find its config, show the menu and boot
/// Linux (disk images and the live ISO alike).
pub const MENU_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "search",
    "search_label",
    "configfile",
    "normal",
    "linux",
    "echo",
    "test",
    "serial",
    "terminal",
    "sleep",
    "gzio",
    "reboot",
    "halt",
];

/// And what a disk image's GRUB needs besides: its filesystems and the commands its
/// grub.cfg uses.
const DISK_MODULES: &[&str] = &["ext2", "xfs", "search_fs_uuid", "cat", "ls", "loadenv"];

/// Found the boot partition by its label, then read its grub.cfg.
const EARLY_CFG: &str = "search --no-floppy --label boot --set root\nset prefix=($root)/grub2\nconfigfile ($root)/grub2/grub.cfg\n";

#[derive(Debug, Clone, Copy)]
pub enum Target {
    Bios,
    Efi,
}

impl Target {
    fn format(self) -> &'static str {
        match self {
            Target::Bios => "i386-pc",
            Target::Efi => "x86_64-efi",
        }
    }
}

/// The directory of GRUB modules for `target`: the deployment's payload if the OS ships
/// one, else the host's (said in the log).
pub fn modules_dir(deployment: &Path, target: Target) -> Result<PathBuf> {
    let ours = deployment.join(PAYLOAD_DIR).join(target.format());
    if ours.join("moddep.lst").exists() {
        return Ok(ours);
    }
    let host = Path::new(HOST_DIR).join(target.format());
    if host.join("moddep.lst").exists() {
        tracing::info!(
            "the OS ships no GRUB {} payload; using the host's {}",
            target.format(),
            host.display()
        );
        return Ok(host);
    }
    bail!(
        "no GRUB {} modules in the OS ({}) nor on the host ({})",
        target.format(),
        ours.display(),
        host.display()
    )
}

/// Build a disk image's GRUB image (core.img for BIOS, BOOTX64.EFI for UEFI).
pub fn mkimage(modules: &Path, target: Target, out: &Path) -> Result<()> {
    let early = out.with_extension("early.cfg");
    fs::write(&early, EARLY_CFG)?;
    let mut mods: Vec<&str> = [MENU_MODULES, DISK_MODULES].concat();
    if let Target::Bios = target {
        mods.push("biosdisk");
    }
    grub_mkimage(modules, target.format(), &early, "/grub2", &mods, out)?;
    fs::remove_file(&early)?;
    Ok(())
}

/// `grub-mkimage`: a `format` image at `out` from the modules in `modules_dir`, with
/// the early config `early` and the prefix `prefix`.
pub fn grub_mkimage(
    modules_dir: &Path,
    format: &str,
    early: &Path,
    prefix: &str,
    modules: &[&str],
    out: &Path,
) -> Result<()> {
    Command::new("grub-mkimage")
        .args(["-O", format, "-d"])
        .arg(modules_dir)
        .arg("-o")
        .arg(out)
        .arg("-c")
        .arg(early)
        .args(["-p", prefix])
        .args(modules)
        .run()
        .with_context(|| format!("making the GRUB {format} image"))
}

/// Install BIOS GRUB without grub-install: core.img into the BIOS-BOOT partition at
/// sector `start`, boot.img's code into the MBR, both patched to find each other.
pub fn install_bios(disk: &fs::File, modules: &Path, core: &Path, start: u64) -> Result<()> {
    let mut core = fs::read(core).context("reading core.img")?;
    let boot = fs::read(modules.join("boot.img")).context("reading boot.img")?;
    if boot.len() != 512 || core.len() < 512 {
        bail!("unexpected GRUB boot.img/core.img sizes");
    }
    if core.len() as u64 > super::gpt::MIB {
        bail!(
            "core.img ({} bytes) does not fit the 1 MiB BIOS-BOOT partition",
            core.len()
        );
    }
    // diskboot.img's blocklist: the rest of core.img starts one sector after its first.
    core[0x1f4..0x1fc].copy_from_slice(&(start + 1).to_le_bytes());
    disk.write_all_at(&core, start * 512)
        .context("writing core.img")?;
    let mut mbr = vec![0u8; 512];
    disk.read_exact_at(&mut mbr, 0)?;
    mbr[..0x1b8].copy_from_slice(&boot[..0x1b8]);
    // boot.img's kernel_sector: where core.img begins.
    mbr[0x5c..0x64].copy_from_slice(&start.to_le_bytes());
    disk.write_all_at(&mbr, 0)
        .context("writing the MBR boot code")?;
    Ok(())
}

/// grub.cfg from BLS entries, with the platform's GRUB commands first. The first-boot
/// stamp `/ignition.firstboot` on the boot partition adds `ignition.firstboot`.
pub fn grub_cfg(entries: &[BlsEntry], grub_commands: &[String]) -> String {
    let mut s = String::from("# Generated by cosa from the BLS entries in /loader/entries.\n");
    // Defaults first, so a platform's commands can change them (e.g. no menu wait in VMs).
    s.push_str("set timeout=1\nset default=0\n");
    for c in grub_commands {
        s.push_str(c);
        s.push('\n');
    }
    s.push_str("set ignition_firstboot=\"\"\nif [ -f ($root)/ignition.firstboot ]; then\n  set ignition_firstboot=\"ignition.firstboot\"\nfi\n");
    for e in entries {
        s.push_str(&format!(
            "menuentry '{}' {{\n  linux {} {} $ignition_firstboot\n  initrd {}\n}}\n",
            e.title.replace('\'', ""),
            e.linux,
            e.options,
            e.initrd
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_has_entries_and_platform_commands() {
        let e = BlsEntry {
            title: "Demo 1 (ostree:0)".into(),
            options: "root=LABEL=root rw".into(),
            linux: "/ostree/x/vmlinuz".into(),
            initrd: "/ostree/x/initramfs.img".into(),
            ..Default::default()
        };
        let c = grub_cfg(&[e], &["serial --speed=115200".into()]);
        assert!(c.starts_with("# Generated"));
        assert!(c.contains("serial --speed=115200\n"));
        assert!(c.contains("linux /ostree/x/vmlinuz root=LABEL=root rw $ignition_firstboot"));
        assert!(c.contains("initrd /ostree/x/initramfs.img"));
    }
}
