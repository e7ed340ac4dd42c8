//! GRUB for BIOS and UEFI without grub-install: images made with grub-mkimage from
//! the OS content's GRUB modules (bootupd-style payload) or the host's, and a static
//! grub.cfg on the boot partition (templates shared with the live ISO).
//!
//! The menu follows ostree's deployments without a GRUB of ours in the OS: the
//! sysroot's `sysroot.bootloader` is `syslinux`, so each `ostree admin deploy`
//! (an upgrade, a rollback) rewrites `/loader/syslinux.cfg` from its BLS entries,
//! and grub.cfg reads that with GRUB's own `syslinux_source`. Debian's GRUB has no
//! `blscfg`, which is how Fedora's reads the BLS entries directly.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use fs_err::os::unix::fs::FileExt;
use serde::Serialize;

use super::sysroot::BlsEntry;
use crate::arch::Arch;
use cmdext::CommandRunExt;

/// Where a stream ships its GRUB modules, relative to the deployment root.
const PAYLOAD_DIR: &str = "usr/lib/bootupd/grub2";
const HOST_DIR: &str = "/usr/lib/grub";

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
const DISK_MODULES: &[&str] = &[
    "ext2",
    "xfs",
    "search_fs_uuid",
    "cat",
    "ls",
    "loadenv",
    "syslinuxcfg",
];

/// Find the boot partition by its label, then read its grub.cfg.
const EARLY_CFG: &str = "search --no-floppy --label boot --set root\nset prefix=($root)/grub2\nconfigfile ($root)/grub2/grub.cfg\n";

/// What an architecture's firmware boots, in GRUB's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firmware {
    /// grub-mkimage's format (and module directory) for UEFI.
    pub efi_format: &'static str,
    /// The removable-media name UEFI firmware looks for in `EFI/BOOT`.
    pub efi_binary: &'static str,
    /// grub-mkimage's format (and module directory) for BIOS, where there is a BIOS.
    pub bios_format: Option<&'static str>,
}

impl Firmware {
    pub fn of(arch: Arch) -> Result<Firmware> {
        match arch {
            Arch::X86_64 => Ok(Firmware {
                efi_format: "x86_64-efi",
                efi_binary: "BOOTX64.EFI",
                bios_format: Some("i386-pc"),
            }),
            Arch::Aarch64 => bail!("boot images for {arch} are not supported yet"),
        }
    }
}

/// The directory of GRUB modules for `target`: the deployment's payload if the OS ships
/// one, else the host's (said in the log).
pub fn modules_dir(deployment: &Path, format: &str) -> Result<PathBuf> {
    let ours = deployment.join(PAYLOAD_DIR).join(format);
    if ours.join("moddep.lst").exists() {
        return Ok(ours);
    }
    let host = Path::new(HOST_DIR).join(format);
    if host.join("moddep.lst").exists() {
        tracing::info!(
            "the OS ships no GRUB {format} payload; using the host's {}",
            host.display()
        );
        return Ok(host);
    }
    bail!(
        "no GRUB {format} modules in the OS ({}) nor on the host ({})",
        ours.display(),
        host.display()
    )
}

/// Build a disk image's GRUB image of `format` (core.img for BIOS, the EFI binary for UEFI).
pub fn mkimage(modules: &Path, format: &str, bios: bool, out: &Path) -> Result<()> {
    let early = out.with_extension("early.cfg");
    fs::write(&early, EARLY_CFG)?;
    let mut mods: Vec<&str> = [MENU_MODULES, DISK_MODULES].concat();
    if bios {
        // syslinux_source boots with linux16/initrd16 under BIOS.
        mods.extend(["biosdisk", "linux16"]);
    }
    grub_mkimage(modules, format, &early, "/grub2", &mods, out)?;
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
    cmdext::command("grub-mkimage")
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
    let mut core = fs::read(core)?;
    let boot = fs::read(modules.join("boot.img"))?;
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

/// The grub.cfg templates, shared by disk images and the live ISO: a base with the
/// menu entries, and one child per medium for what comes before them.
fn templates() -> Result<tera::Tera> {
    let mut t = tera::Tera::new();
    // GRUB script, not HTML.
    t.autoescape_on(Vec::<&str>::new());
    t.add_raw_templates([
        ("grub-base.cfg", include_str!("templates/grub-base.cfg")),
        ("grub-disk.cfg", include_str!("templates/grub-disk.cfg")),
        ("grub-live.cfg", include_str!("templates/grub-live.cfg")),
    ])
    .context("parsing the grub.cfg templates")?;
    Ok(t)
}

/// One `menuentry` of a grub.cfg.
#[derive(Debug, Serialize)]
pub struct MenuEntry<'a> {
    pub title: String,
    pub linux: &'a str,
    pub options: String,
    pub initrd: &'a str,
}

/// `title` without the quotes that would end GRUB's quoted string.
pub fn menu_title(title: &str) -> String {
    title.replace('\'', "")
}

/// What a grub.cfg template is rendered from.
#[derive(Debug, Serialize)]
pub struct Menu<'a> {
    /// Who wrote it, for the header comment.
    pub generated_by: &'a str,
    /// The platform's GRUB commands.
    pub commands: &'a [String],
    pub entries: Vec<MenuEntry<'a>>,
    /// The GRUB variable appended to every entry's kernel arguments.
    pub kargs_var: &'a str,
    /// An initrd every entry loads after its own (the live ISO's Ignition area).
    pub extra_initrd: Option<&'a str>,
}

/// Render `template` (`grub-disk.cfg` or `grub-live.cfg`) for `menu`.
pub fn render(template: &str, menu: &Menu) -> Result<String> {
    let ctx = tera::Context::from_serialize(menu).context("grub.cfg context")?;
    templates()?
        .render(template, &ctx)
        .with_context(|| format!("rendering {template}"))
}

/// A disk's grub.cfg: the defaults, the first-boot stamp `/ignition.firstboot` on
/// the boot partition as `$ignition_firstboot`, the menu ostree keeps in
/// `/syslinux/syslinux.cfg`, then the platform's GRUB commands.
pub fn grub_cfg(grub_commands: &[String]) -> Result<String> {
    let menu = Menu {
        generated_by: "for the menu ostree keeps in /loader/syslinux.cfg",
        commands: grub_commands,
        entries: Vec::new(),
        kargs_var: "ignition_firstboot",
        extra_initrd: None,
    };
    render("grub-disk.cfg", &menu)
}

/// `/loader/syslinux.cfg` as ostree's syslinux backend writes it, for the
/// deployments a new image has: the first entry is the default. The lines before
/// the first `LABEL` are ours and ostree keeps them; `TIMEOUT` makes GRUB show the
/// entries as a menu (without it, syslinux_source boots the default directly).
pub fn syslinux_cfg(entries: &[BlsEntry]) -> String {
    let mut s = String::from(
        "# Written by cosa; ostree rewrites the entries on every deployment change.\n\
         # GRUB reads this file (syslinux_source) from grub2/grub.cfg.\n\
         TIMEOUT 10\n",
    );
    if let Some(first) = entries.first() {
        s += &format!("DEFAULT {}\n", first.title);
    }
    for e in entries {
        s += &format!(
            "LABEL {}\n\tKERNEL {}\n\tINITRD {}\n\tAPPEND {}\n",
            e.title, e.linux, e.initrd, e.options
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> BlsEntry {
        BlsEntry {
            title: format!("Demo's {n} (ostree:{n})"),
            options: format!("root=LABEL=root rw ostree=/ostree/boot.1/demo/{n}"),
            linux: format!("/ostree/{n}/vmlinuz"),
            initrd: format!("/ostree/{n}/initramfs.img"),
            ..Default::default()
        }
    }

    #[test]
    fn disk_cfg_reads_the_menu_ostree_keeps() {
        let c = grub_cfg(&["serial --speed=115200".into(), "set timeout=0".into()]).unwrap();
        assert_eq!(
            c,
            "# Generated by cosa for the menu ostree keeps in /loader/syslinux.cfg.
set timeout=1
set default=0
set ignition_firstboot=\"\"
if [ -f ($root)/ignition.firstboot ]; then
  set ignition_firstboot=\"ignition.firstboot\"
fi
syslinux_source /syslinux/syslinux.cfg
serial --speed=115200
set timeout=0
"
        );
        assert!(!c.contains("menuentry"), "{c}");
    }

    #[test]
    fn syslinux_cfg_is_what_ostree_writes() {
        let c = syslinux_cfg(&[entry(0), entry(1)]);
        let body = c.split_once("TIMEOUT 10\n").unwrap().1;
        assert_eq!(
            body,
            "DEFAULT Demo's 0 (ostree:0)
LABEL Demo's 0 (ostree:0)
\tKERNEL /ostree/0/vmlinuz
\tINITRD /ostree/0/initramfs.img
\tAPPEND root=LABEL=root rw ostree=/ostree/boot.1/demo/0
LABEL Demo's 1 (ostree:1)
\tKERNEL /ostree/1/vmlinuz
\tINITRD /ostree/1/initramfs.img
\tAPPEND root=LABEL=root rw ostree=/ostree/boot.1/demo/1
"
        );
        // ostree regenerates a DEFAULT that names one of its entries.
        assert!(c
            .lines()
            .any(|l| l.starts_with("DEFAULT ") && l.contains("(ostree")));
    }

    #[test]
    fn firmware_is_known_for_x86_64_only() {
        let f = Firmware::of(Arch::X86_64).unwrap();
        assert_eq!(f.bios_format, Some("i386-pc"));
        assert_eq!(f.efi_binary, "BOOTX64.EFI");
        let e = Firmware::of(Arch::Aarch64).unwrap_err().to_string();
        assert!(
            e.contains("aarch64") && e.contains("not supported yet"),
            "{e}"
        );
    }
}
