//! The hybrid live ISO, made from files: GRUB's El Torito image (`i386-pc-eltorito`)
//! and a vfat EFI boot image (mkfs.vfat + mtools) holding BOOTX64.EFI, both built with
//! grub-mkimage from the OS's GRUB payload; xorriso writes the ISO with GRUB's
//! `boot_hybrid.img` as MBR and a GPT partition for the EFI image, so the same file
//! boots from BIOS and UEFI, as a CD and written to a disk.
//!
//! Two fixed-size areas are reserved for Day-0 customization (`cosa iso customize`
//! overwrites them in a copy, in place, without rebuilding): [`KARGS_AREA`], a GRUB
//! script the menu entry sources, and [`EMBED_AREA`], a cpio the live system unpacks.

use fs_err as fs;
use fs_err::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::image::grub;
use cmdext::CommandRunExt;

/// The GRUB script holding the extra live kernel arguments (`set live_kargs="…"`).
pub const KARGS_AREA: &str = "boot/grub2/kargs.cfg";
pub const KARGS_AREA_SIZE: usize = 4096;
/// The Day-0 customization cpio (all zeros: none).
pub const EMBED_AREA: &str = "cosa/embed.img";
pub const EMBED_AREA_SIZE: usize = 1 << 20;

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

/// The kargs area's content: the GRUB assignment, padded with comment lines.
pub fn kargs_area(kargs: &[String]) -> Result<Vec<u8>> {
    for k in kargs {
        if k.contains(['"', '\\', '$', '\n']) || k.is_empty() {
            bail!("kernel argument {k:?}: empty or holds a character GRUB would interpret (\" \\ $ newline)");
        }
    }
    let mut s = format!(
        "# Live kernel arguments added by `cosa iso customize`; this file keeps its size.\nset live_kargs=\"{}\"\n",
        kargs.join(" ")
    );
    if s.len() > KARGS_AREA_SIZE {
        bail!(
            "the live kernel arguments take {} bytes; the ISO has room for {KARGS_AREA_SIZE}",
            s.len()
        );
    }
    while s.len() < KARGS_AREA_SIZE {
        let n = (KARGS_AREA_SIZE - s.len()).min(64);
        s.push_str(&"#".repeat(n - 1));
        s.push('\n');
    }
    Ok(s.into_bytes())
}

/// The ISO's grub.cfg: the live entry, after the platform's commands and the kargs
/// area's `source` (the disk images' templates, live flavour).
fn grub_cfg(spec: &IsoSpec) -> Result<String> {
    let kargs = spec.kargs.join(" ");
    let menu = grub::Menu {
        generated_by: "buildextend-live",
        commands: spec.grub_commands,
        entries: vec![grub::MenuEntry {
            title: grub::menu_title(&format!("{} (live)", spec.title)),
            linux: "/images/pxeboot/vmlinuz",
            options: kargs,
            initrd: "/images/pxeboot/initrd.img",
        }],
        kargs_var: "live_kargs",
        kargs_area: Some(KARGS_AREA),
    };
    grub::render("grub-live.cfg", &menu)
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
    fs::write(grubdir.join("grub.cfg"), grub_cfg(spec)?)?;
    fs::write(isodir.join(KARGS_AREA), kargs_area(&[])?)?;

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

/// Write the ISO at `out` from `isodir` (which gets the boot files added).
pub fn build(spec: &IsoSpec, isodir: &Path, out: &Path, scratch: &Path) -> Result<()> {
    if spec.label.len() > 32 {
        bail!("ISO volume label {:?} is longer than 32 bytes", spec.label);
    }
    fs::create_dir_all(isodir.join("images"))?;
    fs::create_dir_all(isodir.join("cosa"))?;
    // A zero-filled file is stored as such: the area is real space in the ISO.
    fs::write(isodir.join(EMBED_AREA), vec![0u8; EMBED_AREA_SIZE])?;
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

/// Where a file's data is in an ISO: its byte offset and size (xorriso's report).
pub fn locate(iso: &Path, path: &str) -> Result<(u64, u64)> {
    let out = cmdext::command("xorriso")
        .args(["-report_about", "SORRY", "-indev"])
        .arg(iso)
        .args(["-find", &format!("/{path}"), "-exec", "report_lba", "--"])
        .run_get_string()
        .with_context(|| format!("reading the file table of {}", iso.display()))?;
    // "File data lba:  0 ,   12345 ,   512 ,  1048576 , '/cosa/embed.img'"
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("File data lba:") else {
            continue;
        };
        let f: Vec<&str> = rest.split(',').map(str::trim).collect();
        if f.len() >= 5 && f[0] == "0" {
            let lba: u64 = f[1].parse().context("report_lba: start")?;
            let size: u64 = f[3].parse().context("report_lba: size")?;
            return Ok((lba * 2048, size));
        }
    }
    bail!(
        "{} has no /{path}: not a live ISO made by cosa buildextend-live",
        iso.display()
    )
}

/// Overwrite the data of `path` in `iso` (same size or smaller; the rest zeroed).
pub fn write_area(iso: &fs::File, at: (u64, u64), data: &[u8]) -> Result<()> {
    let (offset, size) = at;
    if data.len() as u64 > size {
        bail!("{} bytes do not fit an area of {size}", data.len());
    }
    let mut buf = data.to_vec();
    buf.resize(size as usize, 0);
    iso.write_all_at(&buf, offset)
        .context("writing into the ISO copy")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kargs_area_keeps_its_size() {
        let a = kargs_area(&["foo=bar".into(), "quiet".into()]).unwrap();
        assert_eq!(a.len(), KARGS_AREA_SIZE);
        let s = String::from_utf8(a).unwrap();
        assert!(s.contains("set live_kargs=\"foo=bar quiet\"\n"));
        assert!(kargs_area(&["a\"b".into()]).is_err());
        assert!(kargs_area(&["x".repeat(5000)]).is_err());
    }

    #[test]
    fn menu_sources_the_kargs_area() {
        let kargs = vec![
            "coreos.liveiso=demo-1".to_string(),
            "ignition.firstboot".to_string(),
        ];
        let c = grub_cfg(&IsoSpec {
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
        assert_eq!(
            c,
            "# Generated by cosa buildextend-live.
serial --speed=115200
terminal_input serial
set timeout=1
set default=0
set live_kargs=\"\"
source ($root)/boot/grub2/kargs.cfg
menuentry 'Demos 1 (live)' {
  linux /images/pxeboot/vmlinuz coreos.liveiso=demo-1 ignition.firstboot $live_kargs
  initrd /images/pxeboot/initrd.img
}
"
        );
    }
}
