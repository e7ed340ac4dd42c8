//! One QEMU process: its command line (firmware, accelerator, disks, first-boot
//! config in fw_cfg, the agent's channel) and its QMP control socket.
//!
//! Upstream's equivalent is mantle/platform/qemu.go; we keep the same shape
//! (a builder that becomes argv) but with typed fields and the `qapi` crate
//! for QMP instead of a hand-rolled JSON client.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use qapi::futures::{QapiService, QmpStreamTokio};
use tokio::io::WriteHalf;
use tokio::net::UnixStream;

use crate::kola::machine::Firmware;
use crate::kola::protocol;
use cmdext::CommandRunExt;

/// The QEMU binary for this architecture.
pub const QEMU: &str = "qemu-system-x86_64";
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Name fw_cfg gives the Ignition config on QEMU (DESIGN.md §3).
pub const IGNITION_FW_CFG: &str = "opt/com.coreos/config";
/// QOM id of the boot disk, for boot-order switches.
pub const BOOT_DISK_ID: &str = "disk0";

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

/// Boot the image's kernel directly (`-kernel/-initrd/-append`), for tests
/// that add kernel arguments the image's GRUB config cannot take from the host.
#[derive(Debug, Clone)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// Where the serial console goes.
#[derive(Debug, Clone)]
pub enum Console {
    /// Appended to a file the harness scans.
    File(PathBuf),
    /// This terminal (`cosa run -c`), QEMU's monitor multiplexed on Ctrl-A c.
    Stdio,
}

/// Everything one QEMU invocation needs.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    pub name: String,
    pub accel: Accel,
    pub firmware: Firmware,
    /// A copy of OVMF_VARS private to this VM (UEFI only).
    pub ovmf_vars: Option<PathBuf>,
    pub memory_mib: u64,
    pub cpus: u32,
    /// The VM's own qcow2 overlay over the build's image.
    pub disk: PathBuf,
    pub extra_disks: Vec<PathBuf>,
    pub ignition: Option<PathBuf>,
    pub direct_boot: Option<DirectBoot>,
    pub console: Console,
    pub qmp_socket: PathBuf,
    pub agent_socket: PathBuf,
}

impl QemuSpec {
    /// The command line, program excluded.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-name");
        push(&self.name);
        push("-machine");
        push("pc");
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
        push("user,model=virtio-net-pci");
        if let (Firmware::Uefi, Some(vars)) = (self.firmware, &self.ovmf_vars) {
            a.push("-drive".into());
            a.push(format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}").into());
            a.push("-drive".into());
            a.push(pathopt("if=pflash,format=raw,unit=1,file=", vars));
        }
        a.push("-drive".into());
        a.push(pathopt(
            "if=none,id=drive0,format=qcow2,cache=unsafe,discard=unmap,file=",
            &self.disk,
        ));
        a.push("-device".into());
        a.push(format!("virtio-blk-pci,drive=drive0,id={BOOT_DISK_ID},bootindex=1").into());
        for (i, d) in self.extra_disks.iter().enumerate() {
            let n = i + 1;
            a.push("-drive".into());
            a.push(pathopt(
                &format!("if=none,id=drive{n},format=qcow2,cache=unsafe,file="),
                d,
            ));
            a.push("-device".into());
            a.push(format!("virtio-blk-pci,drive=drive{n},id=disk{n},serial=disk{n}").into());
        }
        if let Some(ign) = &self.ignition {
            a.push("-fw_cfg".into());
            a.push(pathopt(&format!("name={IGNITION_FW_CFG},file="), ign));
        }
        if let Some(db) = &self.direct_boot {
            a.push("-kernel".into());
            a.push(db.kernel.clone().into());
            a.push("-initrd".into());
            a.push(db.initrd.clone().into());
            a.push("-append".into());
            a.push(db.cmdline.clone().into());
            // The command line is fixed for the process: a guest reboot ends
            // it, and the harness starts the next boot with its own cmdline.
            a.push("-no-reboot".into());
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
        a.push("-qmp".into());
        let mut q = OsString::from("unix:");
        q.push(&self.qmp_socket);
        q.push(",server=on,wait=off");
        a.push(q);
        a.extend(protocol::qemu_args(&self.agent_socket));
        a
    }

    /// A tokio command for this VM; QEMU dies with the harness.
    pub fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(QEMU);
        c.args(self.args()).kill_on_drop(true);
        c
    }
}

fn pathopt(prefix: &str, p: &Path) -> OsString {
    // QEMU's option syntax doubles commas inside values.
    let mut s = OsString::from(prefix);
    s.push(p.as_os_str().to_string_lossy().replace(',', ",,"));
    s
}

/// Fails unless QEMU (and, for UEFI, OVMF) is installed.
pub fn check_host(firmware: Firmware) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(QEMU).is_file()))
        .unwrap_or(false);
    if !found {
        bail!("{QEMU} is not installed on this host (Debian: apt-get install qemu-system-x86 qemu-utils)");
    }
    if firmware == Firmware::Uefi {
        for f in [OVMF_CODE, OVMF_VARS] {
            if !Path::new(f).is_file() {
                bail!("UEFI firmware {f} is missing (Debian: apt-get install ovmf)");
            }
        }
    }
    Ok(())
}

/// A qcow2 overlay over `base`, so tests never write to the build's image.
pub fn create_overlay(base: &Path, overlay: &Path, min_size_gib: Option<u64>) -> Result<()> {
    let mut c = std::process::Command::new("qemu-img");
    c.args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
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
    std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size)
        .run()
        .with_context(|| format!("creating disk {} of {size}", path.display()))
}

fn virtual_size(image: &Path) -> Result<u64> {
    let v: serde_json::Value = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(image)
        .run_get_json()?;
    v.get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| anyhow!("qemu-img info {}: no virtual-size", image.display()))
}

type QmpWriter = QmpStreamTokio<WriteHalf<UnixStream>>;

/// A QMP session with one VM.
pub struct Qmp {
    service: QapiService<QmpWriter>,
    events: tokio::task::JoinHandle<()>,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.events.abort();
    }
}

impl Qmp {
    /// Connects once QEMU has made the socket (it does so before the guest starts).
    pub async fn connect(socket: &Path, within: Duration) -> Result<Qmp> {
        let deadline = tokio::time::Instant::now() + within;
        let stream = loop {
            match QmpStreamTokio::open_uds(socket).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP {}", socket.display()))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let stream = stream
            .negotiate()
            .await
            .with_context(|| format!("QMP capabilities negotiation on {}", socket.display()))?;
        let (service, events) = stream.spawn_tokio();
        Ok(Qmp { service, events })
    }

    /// Stops reading QMP events: call before killing QEMU, whose reset socket
    /// would otherwise be logged as an error.
    pub fn close(&self) {
        self.events.abort();
    }

    /// ACPI power button: a clean shutdown if the guest listens.
    pub async fn system_powerdown(&self) -> Result<()> {
        self.service
            .execute(qapi::qmp::system_powerdown {})
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP system_powerdown: {e}"))
    }

    /// Ends QEMU at once.
    pub async fn quit(&self) -> Result<()> {
        self.service
            .execute(qapi::qmp::quit {})
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP quit: {e}"))
    }

    /// Saves the VGA screen as a PPM image.
    pub async fn screendump(&self, path: &Path) -> Result<()> {
        self.service
            .execute(qapi::qmp::screendump {
                filename: path.to_string_lossy().into_owned(),
                device: None,
                head: None,
                format: None,
            })
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP screendump {}: {e}", path.display()))
    }

    /// Changes a device's `bootindex` (for scenarios that boot another device
    /// first, e.g. an installer, then the disk): effective at the next reset.
    pub async fn set_bootindex(&self, device_id: &str, index: i64) -> Result<()> {
        self.service
            .execute(qapi::qmp::qom_set {
                path: format!("/machine/peripheral/{device_id}"),
                property: "bootindex".into(),
                value: serde_json::json!(index),
            })
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP qom-set {device_id}.bootindex={index}: {e}"))
    }

    /// Resets the machine (used after a boot-order switch).
    pub async fn system_reset(&self) -> Result<()> {
        self.service
            .execute(qapi::qmp::system_reset {})
            .await
            .map(drop)
            .map_err(|e| anyhow!("QMP system_reset: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QemuSpec {
        QemuSpec {
            name: "t".into(),
            accel: Accel::Tcg,
            firmware: Firmware::Uefi,
            ovmf_vars: Some("/vm/OVMF_VARS.fd".into()),
            memory_mib: 1024,
            cpus: 1,
            disk: "/vm/disk,0.qcow2".into(),
            extra_disks: vec!["/vm/disk1.qcow2".into()],
            ignition: Some("/vm/config.ign".into()),
            direct_boot: None,
            console: Console::File("/vm/console.txt".into()),
            qmp_socket: "/vm/qmp.sock".into(),
            agent_socket: "/vm/agent.sock".into(),
        }
    }

    #[test]
    fn args_have_firmware_disks_config_channel() {
        let a: Vec<String> = spec()
            .args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let j = a.join(" ");
        assert!(j.contains("-accel tcg"));
        assert!(j.contains(&format!("unit=0,readonly=on,file={OVMF_CODE}")));
        assert!(j.contains("unit=1,file=/vm/OVMF_VARS.fd"));
        assert!(j.contains("file=/vm/disk,,0.qcow2"), "{j}");
        assert!(j.contains("serial=disk1"));
        assert!(j.contains("-fw_cfg name=opt/com.coreos/config,file=/vm/config.ign"));
        assert!(j.contains("name=org.cosa.agent.0"));
        assert!(j.contains("-qmp unix:/vm/qmp.sock,server=on,wait=off"));
        assert!(!j.contains("-no-reboot"));
    }

    #[test]
    fn direct_boot_ends_on_reboot() {
        let mut s = spec();
        s.direct_boot = Some(DirectBoot {
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: "root=LABEL=root quiet".into(),
        });
        let a: Vec<String> = s
            .args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let i = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(a[i + 1], "root=LABEL=root quiet");
        assert!(a.contains(&"-no-reboot".to_string()));
    }
}
