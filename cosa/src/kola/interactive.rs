//! `cosa run`: one VM of the build's qemu image, outside any test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::kola::bindro::{self, BindRo};
use crate::kola::build::BuildUnderTest;
use crate::kola::harness;
use crate::kola::machine::{
    empty_ignition, BootInfo, ConsoleMode, Firmware, Machine, MachineSpec, Transport, TransportKind,
};
use crate::kola::run::{runtime, KVM_PROBE_TIMEOUT};
use crate::kola::{kernelboot, qemu, ssh};

/// How long the guest gets to be ready (its agent, or SSH and a started system).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long it gets to power off once asked.
const POWEROFF_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RunVmOptions {
    /// Build ID; `None`: the latest.
    pub build: Option<String>,
    pub firmware: Firmware,
    /// First-boot Ignition config; default: an empty one.
    pub ignition: Option<PathBuf>,
    pub memory_mib: u64,
    /// Hand the serial console to this terminal until QEMU exits.
    pub console: bool,
    /// `None`: the agent if the build carries it, else SSH.
    pub transport: Option<TransportKind>,
    /// A root shell on the consoles instead of a login prompt.
    pub autologin: bool,
    /// Hand this terminal to an SSH session once the guest is up.
    pub ssh: bool,
    /// Extra kernel arguments: the image's kernel is booted directly with them.
    pub kargs: Vec<String>,
    /// Blank extra disks, by size.
    pub add_disks: Vec<String>,
    /// Host directories the guest mounts read-only.
    pub bind_ro: Vec<BindRo>,
}

/// What the first-boot config adds for autologin: a root shell on the serial
/// console and the first VT, for either stream (busybox init reads the demo
/// flag file; systemd runs the gettys with --autologin, as upstream's
/// `cosa run` does).
fn autologin_files() -> Vec<serde_json::Value> {
    let dropin = |getty: &str| {
        format!(
            "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --noclear {getty} $TERM\n"
        )
    };
    let file = |path: &str, text: &str| {
        serde_json::json!({
            "path": path,
            "mode": 0o644,
            "overwrite": true,
            "contents": {"source": format!("data:,{}", crate::live::customize::percent_encode(text.as_bytes()))},
        })
    };
    vec![
        file("/etc/demo-init/autologin", ""),
        file(
            "/etc/systemd/system/serial-getty@.service.d/10-cosa-autologin.conf",
            &dropin("--keep-baud 115200,57600,38400,9600 %I"),
        ),
        file(
            "/etc/systemd/system/getty@.service.d/10-cosa-autologin.conf",
            &dropin("-"),
        ),
    ]
}

/// Add `entries` to the config's `storage.<kind>` (`files`, `links`), refusing a
/// path it writes already; `option` is the command-line option that adds them.
fn add_storage(
    config: &mut serde_json::Value,
    kind: &str,
    entries: &[serde_json::Value],
    option: &str,
) -> Result<()> {
    let list = &mut config["storage"][kind];
    if list.is_null() {
        *list = serde_json::json!([]);
    }
    let list = list
        .as_array_mut()
        .with_context(|| format!("the Ignition config's storage.{kind} is not a list"))?;
    for f in entries {
        if list.iter().any(|e| e["path"] == f["path"]) {
            bail!(
                "the Ignition config writes {} too, as {option} does; drop one of them",
                f["path"]
            );
        }
        list.push(f.clone());
    }
    Ok(())
}

/// `--add-disk` sizes qemu-img takes: a number with an optional K, M, G or T.
fn check_disk_size(size: &str) -> Result<()> {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'T']);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || size.len() - digits.len() > 1
    {
        bail!("--add-disk {size:?}: expected a size such as 5G or 512M");
    }
    Ok(())
}

/// How the VM ended.
#[derive(Debug)]
pub enum RunVmOutcome {
    /// What the guest reported when ready; it was then powered off.
    Ready(BootInfo),
    /// The console session ended with QEMU's exit, described.
    ConsoleClosed(String),
    /// The SSH session ended (its exit status, described); the guest was then powered off.
    SshClosed(String),
}

/// Boots the build's qemu image once.
pub fn run_vm(workdir: &Path, o: &RunVmOptions) -> Result<RunVmOutcome> {
    let b = BuildUnderTest::open(workdir, o.build.as_deref())?;
    let image = b.qemu_image()?;
    qemu::check_host(b.arch, o.firmware)?;
    let mut ignition = match &o.ignition {
        Some(p) => serde_json::from_slice(&fs::read(p)?)
            .with_context(|| format!("{}: not a JSON Ignition config", p.display()))?,
        None => empty_ignition(),
    };
    if o.autologin {
        add_storage(
            &mut ignition,
            "files",
            &autologin_files(),
            "autologin (--no-autologin keeps the config's)",
        )?;
    }
    let (files, links) = bindro::ignition_entries(&o.bind_ro);
    add_storage(&mut ignition, "files", &files, "--bind-ro")?;
    add_storage(&mut ignition, "links", &links, "--bind-ro")?;
    for d in &o.add_disks {
        check_disk_size(d)?;
    }
    let kind = b.transport(o.transport.or(o.ssh.then_some(TransportKind::Ssh)))?;
    if o.ssh && kind != TransportKind::Ssh {
        bail!("--ssh needs the SSH transport, not --transport agent");
    }
    let dir = b.wd.tmp_dir().join(format!("run-{}", std::process::id()));
    let transport = Transport::make(kind, &dir.join("ssh"))?;
    let kernel_boot = if o.kargs.is_empty() {
        None
    } else {
        Some(
            kernelboot::extract(&image, &dir.join("kernel-boot"))
                .context("extracting the image's kernel for --kargs (direct kernel boot)")?,
        )
    };
    let rt = runtime()?;
    let accel = rt.block_on(harness::probe_kvm(
        b.arch,
        &image,
        o.firmware,
        &transport,
        &dir.join("kvm-probe"),
        KVM_PROBE_TIMEOUT,
    ));
    let spec = MachineSpec {
        console: if o.console {
            ConsoleMode::Terminal
        } else {
            ConsoleMode::Logged
        },
        kernel_boot,
        append_kernel_args: o.kargs.clone(),
        additional_disks: o.add_disks.clone(),
        shares: bindro::shares(&o.bind_ro),
        ..MachineSpec::new(b.arch, format!("run-{}", b.id), dir.clone(), image, accel)
            .firmware(o.firmware)
            .memory(o.memory_mib)
            .ignition(ignition)
            .transport(transport)
    };
    let result = rt.block_on(async {
        let mut m = Machine::start(spec).await?;
        if o.console {
            // Said before QEMU takes the terminal over.
            eprintln!(
                "cosa run: build {} ({}), serial console below{}. To leave: `poweroff` in the guest, or Ctrl-A x (QEMU quits at once). Agent channel {}",
                b.id,
                accel.as_str(),
                if o.autologin { ", logged in as root" } else { "" },
                dir.join("agent.sock").display()
            );
            let how = m.wait_exit().await?;
            return Ok(RunVmOutcome::ConsoleClosed(how));
        }
        let ready = m.wait_ready(READY_TIMEOUT, None).await?;
        if o.ssh {
            let target = m.ssh_target().context("--ssh: the VM has no SSH link")?;
            eprintln!(
                "cosa run: build {} ({}), SSH session as {} below; leaving it (exit, Ctrl-D) powers the guest off",
                b.id,
                accel.as_str(),
                ssh::USER
            );
            let status = target
                .interactive()
                .status()
                .context("running the SSH client")?;
            m.poweroff().await?;
            m.shutdown(POWEROFF_GRACE).await?;
            return Ok(RunVmOutcome::SshClosed(status.to_string()));
        }
        m.poweroff().await?;
        m.shutdown(POWEROFF_GRACE).await?;
        Ok(RunVmOutcome::Ready(ready))
    });
    drop(rt);
    let _ = fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autologin_joins_the_users_config_once() {
        let mut c = serde_json::json!({"ignition": {"version": "3.0.0"},
            "storage": {"files": [{"path": "/etc/motd"}]}});
        let files = autologin_files();
        add_storage(&mut c, "files", &files, "autologin").unwrap();
        let paths: Vec<&str> = c["storage"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths.len(), 4);
        assert!(paths.contains(&"/etc/demo-init/autologin"));
        let e = add_storage(&mut c, "files", &files, "autologin").unwrap_err();
        assert!(e.to_string().contains("as autologin does"), "{e}");
    }

    #[test]
    fn disk_sizes_are_checked() {
        for ok in ["5G", "512M", "1073741824"] {
            check_disk_size(ok).unwrap();
        }
        for bad in ["", "G", "5GG", "-1G", "5 G", "5g;rm"] {
            assert!(check_disk_size(bad).is_err(), "{bad}");
        }
    }
}
