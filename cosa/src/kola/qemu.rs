//! One QEMU process: its command line (architecture, firmware, accelerator,
//! drives, first-boot config in fw_cfg, the agent's channel). Every VM cosa and
//! its tests boot is made here, so the firmware paths and machine types exist
//! once, per [`Arch`].
//!
//! Upstream's equivalent is mantle/platform/qemu.go; we keep the same shape
//! (a builder that becomes argv) but with typed fields, and QMP through the
//! `qapi` crate ([`Qmp`]) instead of a hand-rolled JSON client.

mod qmp;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use fs_err as fs;

use crate::arch::Arch;
use crate::kola::machine::Firmware;
use crate::kola::protocol;
use cmdext::CommandRunExt;
pub use qmp::Qmp;

/// Name fw_cfg gives the Ignition config on QEMU (DESIGN.md §3).
pub const IGNITION_FW_CFG: &str = "opt/com.coreos/config";
/// QOM id of the first drive (the boot disk), for boot-order switches.
pub const BOOT_DISK_ID: &str = "disk0";

/// The QEMU system emulator for `arch`.
pub fn binary(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86_64",
        Arch::Aarch64 => "qemu-system-aarch64",
    }
}

/// The machine model VMs of `arch` use.
pub fn machine_type(arch: Arch) -> Result<&'static str> {
    match arch {
        // q35: PCIe, AHCI for CD-ROMs, and what OVMF is built for.
        Arch::X86_64 => Ok("q35"),
        Arch::Aarch64 => bail!("booting aarch64 VMs is not supported yet"),
    }
}

/// A UEFI firmware image and the template of its variable store.
#[derive(Debug, Clone, Copy)]
pub struct UefiFirmware {
    pub code: &'static str,
    pub vars_template: &'static str,
}

/// Where the host's distribution installs UEFI firmware for `arch`.
pub fn uefi_firmware(arch: Arch) -> Result<UefiFirmware> {
    match arch {
        // Debian's ovmf package; the 4M builds hold enough variables for shim.
        Arch::X86_64 => Ok(UefiFirmware {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd",
            vars_template: "/usr/share/OVMF/OVMF_VARS_4M.fd",
        }),
        Arch::Aarch64 => bail!("UEFI firmware (AAVMF) for aarch64 is not supported yet"),
    }
}

/// Writes a fresh variable store for one VM: a reused one can leave OVMF in its shell.
pub fn fresh_uefi_vars(arch: Arch, dest: &Path) -> Result<()> {
    fs::copy(uefi_firmware(arch)?.vars_template, dest)?;
    Ok(())
}

/// Which accelerator VMs use: KVM when it really boots a guest, else TCG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Boot a kernel directly (`-kernel/-initrd/-append`): for tests that add
/// kernel arguments the image's GRUB config cannot take from the host, and for
/// PXE-style boots.
#[derive(Debug, Clone)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// Where the serial console goes.
#[derive(Debug, Clone)]
pub enum Console {
    /// Appended to a file the harness scans.
    File(PathBuf),
    /// This terminal or pipe (`cosa run -c`), QEMU's monitor multiplexed on Ctrl-A c.
    Stdio,
}

/// How a drive appears to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// A virtio disk.
    Disk,
    /// An ATAPI CD-ROM (on the machine's SATA/IDE controller).
    Cdrom,
}

/// One drive: a file on the host and how the guest sees it.
#[derive(Debug, Clone)]
pub struct Drive {
    pub file: PathBuf,
    /// `qcow2`, `raw`; ignored for CD-ROMs (always raw).
    pub format: &'static str,
    pub media: Media,
    /// Firmware boot order (1 first); `None`: not a boot candidate of its own.
    pub bootindex: Option<u32>,
    pub readonly: bool,
    /// 4096-byte logical and physical sectors (4Kn disks).
    pub sector_4k: bool,
    /// The guest-visible serial (`/dev/disk/by-id/virtio-SERIAL`).
    pub serial: Option<String>,
    /// A throwaway disk: no flushes to the host (`cache=unsafe`), discards unmap.
    pub scratch: bool,
}

impl Drive {
    pub fn disk(file: impl Into<PathBuf>, format: &'static str) -> Drive {
        Drive {
            file: file.into(),
            format,
            media: Media::Disk,
            bootindex: None,
            readonly: false,
            sector_4k: false,
            serial: None,
            scratch: false,
        }
    }

    pub fn cdrom(file: impl Into<PathBuf>) -> Drive {
        Drive {
            media: Media::Cdrom,
            readonly: true,
            ..Drive::disk(file, "raw")
        }
    }

    pub fn bootindex(self, index: u32) -> Drive {
        Drive {
            bootindex: Some(index),
            ..self
        }
    }

    pub fn readonly(self) -> Drive {
        Drive {
            readonly: true,
            ..self
        }
    }

    pub fn sector_4k(self) -> Drive {
        Drive {
            sector_4k: true,
            ..self
        }
    }

    pub fn serial(self, serial: impl Into<String>) -> Drive {
        Drive {
            serial: Some(serial.into()),
            ..self
        }
    }

    pub fn scratch(self) -> Drive {
        Drive {
            scratch: true,
            ..self
        }
    }

    /// `-drive` and `-device` for drive number `n` (QOM id `disk{n}`).
    fn args(&self, n: usize) -> [OsString; 4] {
        let mut drive = format!("if=none,id=drive{n}");
        match self.media {
            Media::Disk => drive.push_str(&format!(",format={}", self.format)),
            Media::Cdrom => drive.push_str(",media=cdrom"),
        }
        if self.readonly {
            drive.push_str(",readonly=on");
        }
        if self.scratch {
            drive.push_str(",cache=unsafe,discard=unmap");
        }
        drive.push_str(",file=");
        let mut device = match self.media {
            Media::Disk => format!("virtio-blk-pci,drive=drive{n},id=disk{n}"),
            Media::Cdrom => format!("ide-cd,drive=drive{n},id=disk{n}"),
        };
        if let Some(i) = self.bootindex {
            device.push_str(&format!(",bootindex={i}"));
        }
        if let Some(s) = &self.serial {
            device.push_str(&format!(",serial={s}"));
        }
        if self.sector_4k {
            device.push_str(",logical_block_size=4096,physical_block_size=4096");
        }
        [
            "-drive".into(),
            pathopt(&drive, &self.file),
            "-device".into(),
            device.into(),
        ]
    }
}

/// Where a guest reaches the host ports [`UserNet::forwards`] names: an address of
/// the user network that is not the host's own (10.0.2.2), which `restrict=on` closes.
pub const HOST_FORWARD_ADDR: &str = "10.0.2.100";

/// QEMU's user network as every VM cosa starts has it: `restrict=on`, so the guest
/// reaches nothing beyond the VM (not the host's loopback at 10.0.2.2, not a
/// metadata service, not the outside), except the host loopback ports forwarded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserNet {
    /// Ports on the host's 127.0.0.1 the guest reaches at `HOST_FORWARD_ADDR:PORT`.
    pub forwards: Vec<u16>,
    /// Forward a host loopback port that QEMU picks to the guest's port 22
    /// (read it back with [`Qmp::human`]`("info usernet")`).
    pub ssh: bool,
}

impl UserNet {
    /// The `-nic` option's value. Each forward runs `socat` per guest connection
    /// (`cmd:`): a chardev target (`tcp:HOST:PORT`) would be one connection made
    /// when QEMU starts, and a guest's second request would hang.
    fn nic_option(&self) -> String {
        let mut o = String::from("user,restrict=on,model=virtio-net-pci");
        if self.ssh {
            o.push_str(",hostfwd=tcp:127.0.0.1:0-:22");
        }
        for p in &self.forwards {
            o.push_str(&format!(
                ",guestfwd=tcp:{HOST_FORWARD_ADDR}:{p}-cmd:socat STDIO TCP:127.0.0.1:{p}"
            ));
        }
        o
    }
}

/// Everything one QEMU invocation needs.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    pub arch: Arch,
    pub name: String,
    pub accel: Accel,
    pub firmware: Firmware,
    /// A variable store private to this VM (UEFI only), see [`fresh_uefi_vars`].
    pub uefi_vars: Option<PathBuf>,
    pub memory_mib: u64,
    pub cpus: u32,
    /// In order: drive 0 is QOM id [`BOOT_DISK_ID`].
    pub drives: Vec<Drive>,
    pub ignition: Option<PathBuf>,
    pub direct_boot: Option<DirectBoot>,
    /// A guest reboot ends QEMU (`-no-reboot`).
    pub exit_on_reboot: bool,
    /// A virtio NIC on QEMU's restricted user network; `None`: no NIC at all.
    pub network: Option<UserNet>,
    pub console: Console,
    pub qmp_socket: Option<PathBuf>,
    pub agent_socket: PathBuf,
    /// Host directories the guest mounts read-only over 9p (virtio).
    pub shares: Vec<HostShare>,
}

/// A host directory shared read-only with the guest (`-virtfs`), mounted there
/// by `mount -t 9p -o trans=virtio TAG DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostShare {
    pub path: PathBuf,
    /// The 9p mount tag (at most 31 bytes).
    pub tag: String,
}

impl QemuSpec {
    /// A VM with nothing attached yet: BIOS, 1 GiB, one CPU, a NIC, no QMP.
    pub fn new(arch: Arch, name: impl Into<String>, accel: Accel, console: Console) -> Self {
        QemuSpec {
            arch,
            name: name.into(),
            accel,
            firmware: Firmware::Bios,
            uefi_vars: None,
            memory_mib: 1024,
            cpus: 1,
            drives: Vec::new(),
            ignition: None,
            direct_boot: None,
            exit_on_reboot: false,
            network: Some(UserNet::default()),
            console,
            qmp_socket: None,
            agent_socket: PathBuf::new(),
            shares: Vec::new(),
        }
    }

    /// The command line, program excluded.
    pub fn args(&self) -> Result<Vec<OsString>> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-name");
        push(&self.name);
        push("-machine");
        push(machine_type(self.arch)?);
        match self.accel {
            Accel::Kvm => {
                push("-accel");
                push("kvm");
                push("-cpu");
                push("host");
            }
            Accel::Tcg => {
                push("-accel");
                push("tcg");
            }
        }
        push("-m");
        push(&format!("{}M", self.memory_mib));
        push("-smp");
        push(&self.cpus.to_string());
        // A VGA card so that screendump has something to capture.
        push("-display");
        push("none");
        push("-vga");
        push("std");
        push("-device");
        push("virtio-rng-pci");
        push("-nic");
        // Without any -nic, QEMU would add its default NIC.
        push(
            &self
                .network
                .as_ref()
                .map_or("none".into(), UserNet::nic_option),
        );
        if self.exit_on_reboot {
            push("-no-reboot");
        }
        if self.firmware == Firmware::Uefi {
            let fw = uefi_firmware(self.arch)?;
            let vars = self
                .uefi_vars
                .as_ref()
                .ok_or_else(|| anyhow!("{}: UEFI needs the VM's own variable store", self.name))?;
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", fw.code).into());
            a.push("-drive".into());
            a.push(pathopt("if=pflash,format=raw,unit=1,file=", vars));
        }
        for (n, d) in self.drives.iter().enumerate() {
            a.extend(d.args(n));
        }
        if let Some(ign) = &self.ignition {
            a.push("-fw_cfg".into());
            a.push(pathopt(&format!("name={IGNITION_FW_CFG},file="), ign));
        }
        if let Some(db) = &self.direct_boot {
            a.push("-kernel".into());
            a.push(db.kernel.clone().into());
            if let Some(initrd) = &db.initrd {
                a.push("-initrd".into());
                a.push(initrd.clone().into());
            }
            a.push("-append".into());
            a.push(db.cmdline.clone().into());
        }
        match &self.console {
            Console::File(p) => {
                a.push("-chardev".into());
                a.push(pathopt("file,id=console,append=on,path=", p));
                a.push("-serial".into());
                a.push("chardev:console".into());
            }
            Console::Stdio => {
                a.push("-serial".into());
                a.push("mon:stdio".into());
            }
        }
        for s in &self.shares {
            // security_model=none: files read with the host's permissions of QEMU
            // (root), presented as they are; nothing can be written back.
            a.push("-virtfs".into());
            let mut o = pathopt("local,path=", &s.path);
            o.push(format!(
                ",mount_tag={},security_model=none,readonly=on",
                s.tag
            ));
            a.push(o);
        }
        if let Some(qmp) = &self.qmp_socket {
            a.push("-qmp".into());
            let mut q = OsString::from("unix:");
            q.push(qmp);
            q.push(",server=on,wait=off");
            a.push(q);
        }
        a.extend(protocol::qemu_args(&self.agent_socket));
        Ok(a)
    }

    /// The host programs this VM needs beside QEMU are there.
    fn preflight(&self) -> Result<()> {
        let forwards = self
            .network
            .as_ref()
            .is_some_and(|n| !n.forwards.is_empty());
        if forwards && !on_path("socat") {
            bail!(
                "VM {} forwards host ports, which needs socat, not installed here (ci/install-deps.sh installs it)",
                self.name
            );
        }
        Ok(())
    }

    /// The QEMU command for this VM (blocking callers: tests, `cosa qemu`).
    pub fn command(&self) -> Result<std::process::Command> {
        self.preflight()?;
        let mut c = cmdext::command(binary(self.arch));
        c.args(self.args()?);
        Ok(c)
    }

    /// Replaces this process with QEMU; returns only on failure.
    pub fn exec(&self) -> anyhow::Error {
        use std::os::unix::process::CommandExt;
        match self.command() {
            Ok(mut c) => anyhow!(c.exec()).context(format!("executing {}", binary(self.arch))),
            Err(e) => e,
        }
    }

    /// A tokio command for this VM; QEMU dies with the harness.
    pub fn async_command(&self) -> Result<tokio::process::Command> {
        self.preflight()?;
        let mut c = cmdext::async_command(binary(self.arch));
        c.args(self.args()?).kill_on_drop(true);
        Ok(c)
    }
}

fn pathopt(prefix: &str, p: &Path) -> OsString {
    // QEMU's option syntax doubles commas inside values.
    let mut s = OsString::from(prefix);
    s.push(p.as_os_str().to_string_lossy().replace(',', ",,"));
    s
}

/// Whether `program` is a file in one of `$PATH`'s directories.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// Fails unless QEMU for `arch` (and, for UEFI, its firmware) is installed.
pub fn check_host(arch: Arch, firmware: Firmware) -> Result<()> {
    let qemu = binary(arch);
    if !on_path(qemu) {
        bail!(
            "{qemu} is not installed on this host (Debian: apt-get install qemu-system qemu-utils)"
        );
    }
    machine_type(arch)?;
    if firmware == Firmware::Uefi {
        let fw = uefi_firmware(arch)?;
        for f in [fw.code, fw.vars_template] {
            if !Path::new(f).is_file() {
                bail!("UEFI firmware {f} is missing (Debian: apt-get install ovmf)");
            }
        }
    }
    Ok(())
}

/// A qcow2 overlay over `base`, so VMs never write to the build's image.
pub fn create_overlay(
    base: &Path,
    base_format: &str,
    overlay: &Path,
    min_size_gib: Option<u64>,
) -> Result<()> {
    let mut c = cmdext::command("qemu-img");
    c.args(["create", "-q", "-f", "qcow2", "-F", base_format, "-b"])
        .arg(base)
        .arg(overlay);
    if let Some(g) = min_size_gib {
        let base_size = virtual_size(base)?;
        let want = g * 1024 * 1024 * 1024;
        if want > base_size {
            c.arg(want.to_string());
        }
    }
    c.run()
        .with_context(|| format!("creating overlay {}", overlay.display()))
}

/// A blank qcow2 disk of `size` (qemu-img syntax: `5G`, `512M`).
pub fn create_blank_disk(path: &Path, size: &str) -> Result<()> {
    cmdext::command("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size)
        .run()
        .with_context(|| format!("creating disk {} of {size}", path.display()))
}

fn virtual_size(image: &Path) -> Result<u64> {
    let v: serde_json::Value = cmdext::command("qemu-img")
        .args(["info", "--output=json"])
        .arg(image)
        .run_get_json()?;
    v.get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| anyhow!("qemu-img info {}: no virtual-size", image.display()))
}

#[cfg(test)]
mod tests;
