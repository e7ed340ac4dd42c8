//! Starting QEMU for a [`Machine`](super::Machine): its command line from the
//! machine's spec, then the QMP connection and the link to the guest: the
//! agent channel (every guest message logged to the VM's `agent.log`), or the
//! SSH port QEMU forwarded.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::{ExitStatus as ProcStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fs_err::{self as fs, OpenOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sshlink::SshLink;
use super::{ConsoleMode, LiveBoot, LiveSource, MachineSpec, Transport};
use crate::kola::machine::Firmware;
use crate::kola::protocol::{GuestMessage, Stream};
use crate::kola::qemu::{self, Console, DirectBoot, Drive, QemuSpec, Qmp, UserNet};
use crate::kola::ssh;

/// How the harness reaches the guest of one QEMU process.
pub(super) enum Link {
    Agent(AgentSession),
    Ssh(Box<SshLink>),
}

pub(super) struct AgentSession {
    pub(super) writer: OwnedWriteHalf,
    pub(super) rx: mpsc::UnboundedReceiver<GuestMessage>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The drives (and PXE kernel) of a VM that boots live media.
fn live_drives(dir: &Path, live: &LiveBoot, first_boot: bool) -> (Vec<Drive>, Option<DirectBoot>) {
    let mut drives = Vec::new();
    if let Some(t) = &live.target {
        let d = Drive::disk(dir.join(LiveBoot::TARGET_FILE), "raw")
            .bootindex(1)
            .scratch();
        drives.push(if t.sector_4k { d.sector_4k() } else { d });
    }
    let index = drives.len() as u32 + 1;
    let pxe = match &live.source {
        LiveSource::Cdrom(iso) => {
            drives.push(Drive::cdrom(iso).bootindex(index));
            None
        }
        LiveSource::IsoAsDisk(iso) => {
            drives.push(Drive::disk(iso, "raw").bootindex(index).readonly());
            None
        }
        // After the live system's reboot, the target disk boots.
        LiveSource::Pxe(k) => first_boot.then(|| k.clone()),
    };
    (drives, pxe)
}

fn qemu_spec(spec: &MachineSpec, first_boot: bool) -> QemuSpec {
    let dir = &spec.dir;
    let (drives, direct_boot, ignition) = match &spec.live {
        Some(live) => {
            let (drives, pxe) = live_drives(dir, live, first_boot);
            (drives, pxe, None)
        }
        None => (
            image_drives(spec),
            image_kernel_boot(spec, first_boot),
            spec.ignition.as_ref().map(|_| dir.join("config.ign")),
        ),
    };
    let console = match spec.console {
        ConsoleMode::Logged => Console::File(dir.join("console.txt")),
        ConsoleMode::Terminal => Console::Stdio,
    };
    QemuSpec {
        firmware: spec.firmware,
        uefi_vars: (spec.firmware == Firmware::Uefi).then(|| dir.join("OVMF_VARS.fd")),
        memory_mib: spec.memory_mib,
        drives,
        ignition,
        // The command line is fixed for the process: a guest reboot ends
        // it, and the harness starts the next boot with its own cmdline.
        exit_on_reboot: direct_boot.is_some(),
        direct_boot,
        network: Some(UserNet {
            ssh: matches!(spec.transport, Transport::Ssh(_)),
            forwards: spec.forwards.clone(),
        }),
        qmp_socket: Some(dir.join("qmp.sock")),
        agent_socket: dir.join("agent.sock"),
        shares: spec.shares.clone(),
        ..QemuSpec::new(spec.arch, spec.name.clone(), spec.accel, console)
    }
}

/// The image's overlay as the boot disk, then the test's extra disks.
fn image_drives(spec: &MachineSpec) -> Vec<Drive> {
    let dir = &spec.dir;
    let boot_disk = Drive::disk(dir.join("disk.qcow2"), "qcow2")
        .bootindex(1)
        .scratch();
    let extra_disks = (1..=spec.additional_disks.len()).map(|i| {
        Drive::disk(dir.join(format!("disk{i}.qcow2")), "qcow2")
            .serial(format!("disk{i}"))
            .scratch()
    });
    std::iter::once(boot_disk).chain(extra_disks).collect()
}

/// The image's kernel with the test's arguments, when the test needs them.
fn image_kernel_boot(spec: &MachineSpec, first_boot: bool) -> Option<DirectBoot> {
    spec.kernel_boot.as_ref().map(|k| {
        let mut cmdline = k.options.clone();
        let mut add = |a: &str| {
            cmdline.push(' ');
            cmdline.push_str(a);
        };
        if first_boot {
            // What the image's GRUB adds while /boot/ignition.firstboot exists.
            add("ignition.firstboot");
            spec.append_firstboot_kernel_args
                .iter()
                .for_each(|a| add(a));
        }
        spec.append_kernel_args.iter().for_each(|a| add(a));
        DirectBoot {
            kernel: k.kernel.clone(),
            initrd: Some(k.initrd.clone()),
            cmdline,
        }
    })
}

pub(super) fn describe_exit(s: std::io::Result<ProcStatus>) -> String {
    match s {
        Ok(s) => format!("exited ({s})"),
        Err(e) => format!("could not be waited for ({e})"),
    }
}

pub(super) fn log_line(log: &Mutex<File>, started: Instant, s: &str) {
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(f, "[{:9.3}] {s}", started.elapsed().as_secs_f64());
    }
}

/// Starts QEMU and connects QMP and the link to the guest.
pub(super) async fn launch(
    spec: &MachineSpec,
    first_boot: bool,
    log: &Arc<Mutex<File>>,
    started: Instant,
) -> Result<(Child, Qmp, Link)> {
    let qspec = qemu_spec(spec, first_boot);
    let qmp_socket = spec.dir.join("qmp.sock");
    for s in [&qmp_socket, &qspec.agent_socket] {
        let _ = fs::remove_file(s);
    }
    let mut cmd = qspec.async_command()?;
    match spec.console {
        ConsoleMode::Logged => {
            let err = OpenOptions::new()
                .create(true)
                .append(true)
                .open(spec.dir.join("qemu.log"))?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err.into_file());
            // Out of the terminal's process group: Ctrl-C reaches the harness,
            // which kills every VM itself and records which tests finished.
            cmd.process_group(0);
        }
        ConsoleMode::Terminal => {
            cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
        }
    }
    let args: Vec<String> = qspec
        .args()?
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    fs::write(
        spec.dir.join("qemu.cmdline"),
        format!("{} {}\n", qemu::binary(spec.arch), args.join(" ")),
    )?;
    log_line(
        log,
        started,
        &format!("starting QEMU (first boot: {first_boot})"),
    );
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} for {}", qemu::binary(spec.arch), spec.name))?;
    let qmp = tokio::select! {
        q = Qmp::connect(&qmp_socket, Duration::from_secs(30)) => q?,
        s = child.wait() => {
            let err = fs::read_to_string(spec.dir.join("qemu.log")).unwrap_or_default();
            return Err(anyhow!("{}: QEMU {} at start: {}", spec.name, describe_exit(s), err.trim()));
        }
    };
    if let Transport::Ssh(key) = &spec.transport {
        let usernet = qmp
            .human("info usernet")
            .await
            .with_context(|| format!("{}: reading the forwarded SSH port", spec.name))?;
        let port = ssh::forwarded_port(&usernet, 22).ok_or_else(|| {
            anyhow!(
                "{}: QEMU forwarded no host port to the guest's port 22: {}",
                spec.name,
                usernet.trim()
            )
        })?;
        log_line(log, started, &format!("SSH forwarded at 127.0.0.1:{port}"));
        let link = SshLink::new(port, key, &spec.dir.join("ssh.log"))?;
        return Ok((child, qmp, Link::Ssh(Box::new(link))));
    }
    let stream = UnixStream::connect(&qspec.agent_socket)
        .await
        .with_context(|| format!("connecting to {}", qspec.agent_socket.display()))?;
    let (read, writer) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let rlog = log.clone();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::with_capacity(64 * 1024, read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<GuestMessage>(&line) {
                Ok(m) => {
                    log_line(&rlog, started, &describe_guest(&m));
                    if tx.send(m).is_err() {
                        break;
                    }
                }
                Err(e) => log_line(&rlog, started, &format!("<- undecodable ({e}): {line}")),
            }
        }
    });
    Ok((child, qmp, Link::Agent(AgentSession { writer, rx, reader })))
}

fn describe_guest(m: &GuestMessage) -> String {
    match m {
        GuestMessage::Output { id, stream, data } => {
            let s = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            format!(
                "<- {id} {s}: {}",
                String::from_utf8_lossy(&data.0).trim_end()
            )
        }
        m => format!("<- {}", serde_json::to_string(m).unwrap_or_default()),
    }
}
