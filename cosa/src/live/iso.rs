//! The hybrid live ISO, made from files: GRUB's El Torito image (`i386-pc-eltorito`)
//! and a vfat EFI boot image (mkfs.vfat + mtools) holding BOOTX64.EFI, both built with
//! grub-mkimage from the OS's GRUB payload; xorriso writes the ISO with GRUB's
//! `boot_hybrid.img` as MBR and a GPT partition for the EFI image, so the same file
//! boots from BIOS and UEFI, as a CD and written to a disk.
//!
//! The layout is Fedora CoreOS's, so that coreos-installer's `iso` commands work on
//! our media: `images/pxeboot/{vmlinuz,initrd.img,rootfs.img}`, the Ignition embed
//! area `images/ignition.img` (zeros, or an xz cpio holding `config.ign`) that GRUB
//! loads as a second initrd, and the kernel arguments of the menu entry written
//! into grub.cfg as a fixed-size area (`KARGS\n###…`). `coreos/igninfo.json`,
//! `coreos/kargs.json` and `coreos/features.json` tell tools where the areas are
//! and what the OS's live system understands. Both `cosa iso customize` and
//! `coreos-installer iso customize` overwrite the areas in place.

use fs_err as fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::image::grub;
use cmdext::CommandRunExt;

/// The Ignition embed area: an initrd GRUB loads after the live initramfs.
pub const IGNITION_AREA: &str = "images/ignition.img";
pub const IGNITION_AREA_SIZE: usize = 1 << 20;
/// The menu whose `linux` line holds the kernel arguments area.
pub const GRUB_CFG: &str = "boot/grub2/grub.cfg";
/// coreos-installer's limit for a kargs area.
pub const KARGS_AREA_SIZE: usize = 2048;
/// Where coreos-installer looks for the areas (these names, in ISO9660's 8.3
/// form `COREOS/IGNINFO.JSO`, are what it reads).
pub const IGNINFO_JSON: &str = "coreos/igninfo.json";
pub const KARGS_JSON: &str = "coreos/kargs.json";
pub const FEATURES_JSON: &str = "coreos/features.json";
/// What marks an initramfs as a live one for `pxe customize` (coreos-installer's stamp).
pub const INITRD_LIVE_STAMP: &str = "etc/coreos-live-initramfs";
/// The OS features, inside the live initramfs (for PXE media).
pub const INITRD_FEATURES: &str = "etc/coreos/features.json";

/// `coreos/igninfo.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct IgnInfo {
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// `coreos/kargs.json`: the default kernel arguments and each area's place.
#[derive(Debug, Serialize, Deserialize)]
pub struct KargsInfo {
    pub default: String,
    pub files: Vec<KargsLocation>,
    pub size: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KargsLocation {
    /// A file of the ISO, relative to its root.
    pub path: String,
    /// The area's offset in that file.
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<char>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<char>,
}

/// `coreos/features.json` (and the initramfs's `etc/coreos/features.json`): what
/// the live system does with a customization. Both streams' installers read
/// `/etc/coreos/installer.d/*.yaml` with its `console` directive; neither live
/// initramfs uses NetworkManager, so NM keyfiles (`live-initrd-network`) are not
/// offered and `--network-keyfile` is refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Features {
    #[serde(default)]
    pub installer_config: bool,
    #[serde(default)]
    pub installer_config_directives: InstallerDirectives,
    #[serde(default)]
    pub live_initrd_network: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstallerDirectives {
    #[serde(default)]
    pub console: bool,
}

impl Features {
    /// What cosa's live media support.
    pub fn ours() -> Self {
        Features {
            installer_config: true,
            installer_config_directives: InstallerDirectives { console: true },
            live_initrd_network: false,
        }
    }
}

/// What the ISO's boot menu boots.
pub struct IsoSpec<'a> {
    pub label: &'a str,
    pub title: &'a str,
    /// Kernel arguments of the live system (`coreos.liveiso=` included).
    pub kargs: &'a [String],
    pub grub_commands: &'a [String],
    /// The deployment's GRUB payload (`usr/lib/bootupd/grub2`), or the host's.
    pub deployment: &'a Path,
    pub arch: Arch,
}

/// Refuse kernel arguments GRUB would read differently from what was written:
/// quotes, escapes, variables, line ends.
pub fn check_karg(k: &str) -> Result<()> {
    if k.is_empty() || k.contains(['"', '\'', '\\', '$', '\n', ' ', '\t']) {
        bail!("kernel argument {k:?}: empty, or holds whitespace or a character GRUB would interpret (\" ' \\ $)");
    }
    Ok(())
}

/// A kargs area: the arguments, a line end, then `#` (a GRUB comment) to `size`.
pub fn kargs_area(kargs: &str, size: usize) -> Result<Vec<u8>> {
    let kargs = kargs.trim();
    if kargs.len() >= size {
        bail!(
            "the live kernel arguments take {} bytes; the ISO's kargs area holds {}",
            kargs.len() + 1,
            size
        );
    }
    let mut a = vec![b'#'; size];
    a[..kargs.len()].copy_from_slice(kargs.as_bytes());
    a[kargs.len()] = b'\n';
    Ok(a)
}

/// The kernel arguments in an area (coreos-installer's reading of it).
pub fn parse_kargs_area(area: &[u8], loc: &KargsLocation) -> Result<String> {
    let s = std::str::from_utf8(area).context("the kargs area is not UTF-8")?;
    Ok(s.trim_end_matches(loc.pad.unwrap_or('#'))
        .trim_end_matches(loc.end.unwrap_or('\n'))
        .trim()
        .to_string())
}

/// The ISO's grub.cfg with the kargs area on the live entry's `linux` line, and the
/// area's byte offset in it.
fn grub_cfg(spec: &IsoSpec) -> Result<(String, usize)> {
    const MARK: &str = "@COSA_KARGS_AREA@";
    let menu = grub::Menu {
        generated_by: "buildextend-live",
        commands: spec.grub_commands,
        entries: vec![grub::MenuEntry {
            title: grub::menu_title(&format!("{} (live)", spec.title)),
            linux: "/images/pxeboot/vmlinuz",
            options: MARK.into(),
            initrd: "/images/pxeboot/initrd.img",
        }],
        kargs_var: "",
        extra_initrd: Some(IGNITION_AREA),
    };
    let text = grub::render("grub-live.cfg", &menu)?;
    let offset = text
        .find(MARK)
        .context("the live grub.cfg template lost its kargs area")?;
    let area = kargs_area(&spec.kargs.join(" "), KARGS_AREA_SIZE)?;
    let area = String::from_utf8(area).context("kargs area")?;
    Ok((text.replacen(MARK, &area, 1), offset))
}

fn mkimage(
    modules_dir: &Path,
    format: &str,
    early: &Path,
    out: &Path,
    extra: &[&str],
) -> Result<()> {
    let mods = [grub::MENU_MODULES, &["iso9660"], extra].concat();
    grub::grub_mkimage(modules_dir, format, early, "/boot/grub2", &mods, out)
}

/// Lay out the GRUB side of `isodir` and return the EFI boot image (outside it).
fn boot_files(spec: &IsoSpec, isodir: &Path, scratch: &Path) -> Result<std::path::PathBuf> {
    let early = scratch.join("early.cfg");
    fs::write(
        &early,
        format!(
            "search --no-floppy --set=root --label '{}'\nset prefix=($root)/boot/grub2\nconfigfile ($root)/boot/grub2/grub.cfg\n",
            spec.label
        ),
    )?;
    let grubdir = isodir.join("boot/grub2");
    fs::create_dir_all(&grubdir)?;
    let (cfg, kargs_offset) = grub_cfg(spec)?;
    fs::write(isodir.join(GRUB_CFG), cfg)?;
    write_json(
        &isodir.join(KARGS_JSON),
        &KargsInfo {
            default: spec.kargs.join(" "),
            files: vec![KargsLocation {
                path: GRUB_CFG.into(),
                offset: kargs_offset as u64,
                pad: None,
                end: None,
            }],
            size: KARGS_AREA_SIZE,
        },
    )?;

    let firmware = grub::Firmware::of(spec.arch)?;
    let bios_format = firmware
        .bios_format
        .with_context(|| format!("a hybrid ISO for {} (no BIOS)", spec.arch))?;
    let bios = grub::modules_dir(spec.deployment, bios_format)?;
    mkimage(
        &bios,
        &format!("{bios_format}-eltorito"),
        &early,
        &isodir.join("images/eltorito.img"),
        &["biosdisk"],
    )?;
    let efi_dir = grub::modules_dir(spec.deployment, firmware.efi_format)?;
    let efi = scratch.join(firmware.efi_binary);
    mkimage(&efi_dir, firmware.efi_format, &early, &efi, &[])?;

    // The vfat EFI boot image: BOOTX64.EFI plus room for the FAT's own overhead.
    let efiboot = scratch.join("efiboot.img");
    let _ = fs::remove_file(&efiboot);
    let kib = fs::metadata(&efi)?.len().div_ceil(1024) + 512;
    cmdext::command("mkfs.vfat")
        .args(["-C", "-n", "EFIBOOT"])
        .arg(&efiboot)
        .arg(kib.to_string())
        .run()
        .context("making the EFI boot image")?;
    let img = efiboot.to_str().context("non-UTF-8 path")?;
    cmdext::command("mmd")
        .args(["-i", img, "::EFI", "::EFI/BOOT"])
        .run()?;
    cmdext::command("mcopy")
        .args(["-i", img])
        .arg(&efi)
        .arg(format!("::EFI/BOOT/{}", firmware.efi_binary))
        .run()
        .with_context(|| format!("copying {} into the EFI boot image", firmware.efi_binary))?;
    fs::copy(&efiboot, isodir.join("images/efiboot.img"))?;
    Ok(bios.join("boot_hybrid.img"))
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let mut b = serde_json::to_vec_pretty(v)?;
    b.push(b'\n');
    fs::write(path, b)?;
    Ok(())
}

/// Write the ISO at `out` from `isodir` (which holds `images/pxeboot/` and gets the
/// boot files, the Ignition embed area and `coreos/` added).
pub fn build(spec: &IsoSpec, isodir: &Path, out: &Path, scratch: &Path) -> Result<()> {
    if spec.label.len() > 32 {
        bail!("ISO volume label {:?} is longer than 32 bytes", spec.label);
    }
    fs::create_dir_all(isodir.join("coreos"))?;
    // A zero-filled file is stored as such: the area is real space in the ISO.
    fs::write(isodir.join(IGNITION_AREA), vec![0u8; IGNITION_AREA_SIZE])?;
    write_json(
        &isodir.join(IGNINFO_JSON),
        &IgnInfo {
            file: IGNITION_AREA.into(),
            offset: None,
            length: None,
        },
    )?;
    write_json(&isodir.join(FEATURES_JSON), &Features::ours())?;
    let hybrid_mbr = boot_files(spec, isodir, scratch)?;
    let _ = fs::remove_file(out);
    // grub-mkrescue's recipe: El Torito BIOS image with GRUB's boot info, GRUB's
    // hybrid MBR, the EFI image as El Torito alternative and as a GPT partition.
    cmdext::command("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-V", spec.label, "-o"])
        .arg(out)
        .args([
            "-b",
            "images/eltorito.img",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "--grub2-boot-info",
            "--grub2-mbr",
        ])
        .arg(&hybrid_mbr)
        .args([
            "--efi-boot",
            "images/efiboot.img",
            "-efi-boot-part",
            "--efi-boot-image",
            "--protective-msdos-label",
        ])
        .arg(isodir)
        .run()
        .context("writing the ISO with xorriso")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kargs_area_keeps_its_size_and_reads_back() {
        let a = kargs_area("foo=bar quiet", 64).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.starts_with(b"foo=bar quiet\n###"));
        let loc = KargsLocation {
            path: GRUB_CFG.into(),
            offset: 0,
            pad: None,
            end: None,
        };
        assert_eq!(parse_kargs_area(&a, &loc).unwrap(), "foo=bar quiet");
        assert!(kargs_area(&"x".repeat(64), 64).is_err());
        assert!(check_karg("a\"b").is_err());
        assert!(check_karg("a b").is_err());
        assert!(check_karg("console=ttyS0,115200n8").is_ok());
    }

    #[test]
    fn menu_holds_the_kargs_area_and_loads_the_ignition_area() {
        let kargs = vec![
            "coreos.liveiso=demo-1".to_string(),
            "ignition.firstboot".to_string(),
        ];
        let (c, offset) = grub_cfg(&IsoSpec {
            label: "demo-1",
            title: "Demo's 1",
            kargs: &kargs,
            grub_commands: &[
                "serial --speed=115200".into(),
                "terminal_input serial".into(),
            ],
            deployment: Path::new("/nonexistent"),
            arch: Arch::X86_64,
        })
        .unwrap();
        let area = &c[offset..offset + KARGS_AREA_SIZE];
        assert!(area.starts_with("coreos.liveiso=demo-1 ignition.firstboot\n#"));
        assert!(area.ends_with('#'));
        let expected = format!(
            "# Generated by cosa buildextend-live.
serial --speed=115200
terminal_input serial
set timeout=1
set default=0
menuentry 'Demos 1 (live)' {{
  linux /images/pxeboot/vmlinuz {area}
  initrd /images/pxeboot/initrd.img /images/ignition.img
}}
"
        );
        assert_eq!(c, expected);
    }
}
