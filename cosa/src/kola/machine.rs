//! A running VM as the harness sees it: the QEMU process, its QMP socket, the
//! link to the guest (the agent session on the virtio-serial channel, or SSH
//! through a forwarded loopback port), and the console log.
//!
//! Everything waits with a deadline and notices when QEMU itself goes away, so
//! a guest that never boots or dies under a test ends in an error that quotes
//! the console's tail instead of a hang.

mod launch;
mod sshlink;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fs_err::{self as fs, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::time::Instant;

use crate::arch::Arch;
use crate::kola::checks;
use crate::kola::protocol::{
    ExecRequest, FailedUnit, GuestMessage, HostMessage, JobEnd, ReadyInfo, RunRequest,
    ShutdownAction, Stream, PROTOCOL_VERSION,
};
use crate::kola::qemu::{self, Accel, Qmp};
use crate::kola::ssh;
use launch::{describe_exit, launch, log_line, Link};

/// The firmware a VM boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
}

impl Firmware {
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// Which transport a run uses (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    Agent,
    Ssh,
}

/// How the harness reaches the guest.
#[derive(Debug, Clone)]
pub enum Transport {
    /// The cosa agent on a virtio-serial port (the demo stream).
    Agent,
    /// SSH as `core`, with this key authorized through the VM's Ignition config.
    Ssh(ssh::KeyPair),
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Agent => "agent",
            Transport::Ssh(_) => "ssh",
        }
    }

    /// The transport of `kind`; SSH makes a key pair in `dir`.
    pub fn make(kind: TransportKind, dir: &Path) -> Result<Transport> {
        Ok(match kind {
            TransportKind::Agent => Transport::Agent,
            TransportKind::Ssh => Transport::Ssh(ssh::KeyPair::generate(dir)?),
        })
    }
}

/// What the harness knows of the guest's current boot once it is ready.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootInfo {
    /// `/proc/sys/kernel/random/boot_id`: changes on every boot.
    pub boot_id: String,
    pub kernel_release: String,
    pub cmdline: String,
    /// The agent's version (agent transport).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// `systemctl is-system-running` once the boot finished (SSH transport).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_state: Option<String>,
    pub failed_units: Vec<FailedUnit>,
}

impl From<&ReadyInfo> for BootInfo {
    fn from(r: &ReadyInfo) -> Self {
        BootInfo {
            boot_id: r.boot_id.clone(),
            kernel_release: r.kernel_release.clone(),
            cmdline: r.cmdline.clone(),
            agent_version: Some(r.agent_version.clone()),
            system_state: None,
            failed_units: r.failed_units.clone(),
        }
    }
}

/// Lines of console quoted when a VM hangs or dies.
pub const CONSOLE_TAIL_LINES: usize = 25;

/// The image's kernel, initramfs and boot-entry options, for direct kernel boot.
#[derive(Debug, Clone)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The BLS entry's `options`.
    pub options: String,
}

/// What VM to make.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    pub arch: Arch,
    pub name: String,
    /// The VM's own directory: overlay, sockets, console, logs, config.
    pub dir: PathBuf,
    pub image: PathBuf,
    pub accel: Accel,
    pub firmware: Firmware,
    pub memory_mib: u64,
    pub min_disk_gib: Option<u64>,
    /// Sizes in qemu-img syntax (`5G`); kola's `:options` are refused earlier.
    pub additional_disks: Vec<String>,
    pub ignition: Option<serde_json::Value>,
    /// Set when the VM needs extra kernel arguments: boot the kernel directly.
    pub kernel_boot: Option<KernelBoot>,
    pub append_kernel_args: Vec<String>,
    pub append_firstboot_kernel_args: Vec<String>,
    pub console: ConsoleMode,
    pub transport: Transport,
    /// Host loopback ports the guest reaches at `qemu::HOST_FORWARD_ADDR`.
    pub forwards: Vec<u16>,
    /// Boot install media instead of `image` (which is then unused).
    pub live: Option<LiveBoot>,
    /// Host directories shared read-only over 9p (`cosa run --bind-ro`).
    pub shares: Vec<qemu::HostShare>,
}

/// A VM that boots live media and may install to a blank disk, as kola's
/// `testiso` scenarios do. The media carry their own Ignition configs, so such a
/// VM has no fw_cfg config.
#[derive(Debug, Clone)]
pub struct LiveBoot {
    pub source: LiveSource,
    /// A blank disk the live system installs to (`target.raw`, first in the
    /// boot order: empty, the firmware passes it by; installed, it boots).
    pub target: Option<TargetDisk>,
}

#[derive(Debug, Clone)]
pub enum LiveSource {
    /// The ISO as a CD-ROM.
    Cdrom(PathBuf),
    /// The ISO as a read-only disk, like a USB stick.
    IsoAsDisk(PathBuf),
    /// PXE: the live kernel and initramfs (rootfs appended) by `-kernel`/`-initrd`.
    /// QEMU boots them on every reset, so the guest's reboot ends the process and
    /// the harness starts the next boot from the target disk.
    Pxe(qemu::DirectBoot),
}

#[derive(Debug, Clone, Copy)]
pub struct TargetDisk {
    pub size_gib: u64,
    /// 4096-byte logical and physical sectors (a 4Kn disk).
    pub sector_4k: bool,
}

impl LiveBoot {
    pub const TARGET_FILE: &'static str = "target.raw";
}

impl MachineSpec {
    /// A VM of `image` with an empty first-boot config, BIOS, 1 GiB, one
    /// disk, its console logged; the builder methods change what differs.
    pub fn new(arch: Arch, name: String, dir: PathBuf, image: PathBuf, accel: Accel) -> Self {
        MachineSpec {
            arch,
            name,
            dir,
            image,
            accel,
            firmware: Firmware::Bios,
            memory_mib: 1024,
            min_disk_gib: None,
            additional_disks: Vec::new(),
            ignition: Some(empty_ignition()),
            kernel_boot: None,
            append_kernel_args: Vec::new(),
            append_firstboot_kernel_args: Vec::new(),
            console: ConsoleMode::Logged,
            transport: Transport::Agent,
            forwards: Vec::new(),
            live: None,
            shares: Vec::new(),
        }
    }

    /// Boot `live` instead of the image.
    pub fn live(self, live: LiveBoot) -> Self {
        MachineSpec {
            live: Some(live),
            ignition: None,
            ..self
        }
    }

    /// Let the guest reach these host loopback ports (guestfwd), and nothing else.
    pub fn forwards(self, forwards: Vec<u16>) -> Self {
        MachineSpec { forwards, ..self }
    }

    pub fn transport(self, transport: Transport) -> Self {
        MachineSpec { transport, ..self }
    }

    pub fn firmware(self, firmware: Firmware) -> Self {
        MachineSpec { firmware, ..self }
    }

    pub fn memory(self, memory_mib: u64) -> Self {
        MachineSpec { memory_mib, ..self }
    }

    pub fn ignition(self, config: serde_json::Value) -> Self {
        MachineSpec {
            ignition: Some(config),
            ..self
        }
    }
}

/// The first-boot config of a VM whose test brings none. Spec 3.0.0: every
/// Ignition that reads spec 3 reads it (Debian 12's Ignition 2.14 stops at 3.3.0).
pub fn empty_ignition() -> serde_json::Value {
    serde_json::json!({"ignition": {"version": "3.0.0"}})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// console.txt in the VM's directory (every test VM).
    Logged,
    /// Attached to this terminal (`cosa run -c`).
    Terminal,
}

/// How a job (test or command) ended, as far as the harness knows.
#[derive(Debug, Clone)]
pub enum JobFate {
    Ended(JobEnd),
    /// The harness's own deadline passed; the VM must be killed.
    TimedOut,
    /// QEMU or the channel went away under the job.
    VmLost(String),
}

/// A job's output over all its boots.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub fate: JobFate,
    /// Marks the test rebooted with, in order.
    pub reboots: Vec<String>,
    /// Checks that failed in the boots after a reboot (failed units).
    pub findings: Vec<checks::Finding>,
}

impl JobOutput {
    /// Nothing yet: the fate until the job says otherwise.
    fn timed_out() -> Self {
        JobOutput {
            stdout: Vec::new(),
            stderr: Vec::new(),
            fate: JobFate::TimedOut,
            reboots: Vec::new(),
            findings: Vec::new(),
        }
    }

    pub fn success(&self) -> bool {
        matches!(&self.fate, JobFate::Ended(JobEnd::Exit(s)) if s.success())
    }

    /// stdout then stderr, as text.
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.stdout).into_owned();
        if !self.stderr.is_empty() {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&String::from_utf8_lossy(&self.stderr));
        }
        s
    }
}

enum Event {
    Msg(GuestMessage),
    Tick,
    Exited(String),
    Deadline,
}

/// One VM, started and connected.
pub struct Machine {
    pub spec: MachineSpec,
    child: Child,
    qmp: Qmp,
    link: Link,
    log: Arc<Mutex<File>>,
    started: Instant,
    /// What the current boot reported when it was ready.
    pub ready: Option<BootInfo>,
    /// Boots so far (1 after the first).
    pub boots: u32,
    next_job: u64,
}

impl Machine {
    pub fn console_path(&self) -> PathBuf {
        self.spec.dir.join("console.txt")
    }

    /// The harness's log of this VM: every message or command and its answer.
    pub fn log_path(&self) -> PathBuf {
        self.spec.dir.join(log_name(&self.spec.transport))
    }

    /// Makes the VM's files (overlay, OVMF vars, config, extra disks) and starts QEMU.
    pub async fn start(spec: MachineSpec) -> Result<Machine> {
        let dir = &spec.dir;
        fs::create_dir_all(dir)?;
        match &spec.live {
            None => {
                let disk = dir.join("disk.qcow2");
                qemu::create_overlay(&spec.image, "qcow2", &disk, spec.min_disk_gib)?;
            }
            Some(LiveBoot {
                target: Some(t), ..
            }) => {
                let target = dir.join(LiveBoot::TARGET_FILE);
                let f = fs::File::create(&target)?;
                f.set_len(t.size_gib << 30)
                    .with_context(|| format!("sizing the install target {}", target.display()))?;
            }
            Some(_) => {}
        }
        for (i, size) in spec.additional_disks.iter().enumerate() {
            qemu::create_blank_disk(&dir.join(format!("disk{}.qcow2", i + 1)), size)?;
        }
        if spec.firmware == Firmware::Uefi {
            qemu::fresh_uefi_vars(spec.arch, &dir.join("OVMF_VARS.fd"))?;
        }
        if let Some(cfg) = &spec.ignition {
            let mut cfg = cfg.clone();
            if let Transport::Ssh(key) = &spec.transport {
                ssh::authorize(&mut cfg, ssh::USER, &key.public)
                    .with_context(|| format!("{}: authorizing the run's SSH key", spec.name))?;
            }
            let p = dir.join("config.ign");
            fs::write(&p, serde_json::to_vec_pretty(&cfg)?)?;
        } else if matches!(spec.transport, Transport::Ssh(_)) && spec.live.is_none() {
            return Err(anyhow!(
                "{}: the SSH transport needs an Ignition config to authorize its key",
                spec.name
            ));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(log_name(&spec.transport)))?;
        let log = Arc::new(Mutex::new(log.into_file()));
        let started = Instant::now();
        let (child, qmp, link) = launch(&spec, true, &log, started).await?;
        Ok(Machine {
            spec,
            child,
            qmp,
            link,
            log,
            started,
            ready: None,
            boots: 0,
            next_job: 0,
        })
    }

    fn note(&self, s: &str) {
        log_line(&self.log, self.started, s);
    }

    async fn send(&mut self, msg: &HostMessage) -> Result<()> {
        let shown = match msg {
            HostMessage::Run(r) => format!(
                "-> run id={} name={} exec={} bundle={} bytes",
                r.id,
                r.name,
                r.exec,
                r.bundle.0.len()
            ),
            m => format!("-> {}", serde_json::to_string(m).unwrap_or_default()),
        };
        self.note(&shown);
        let mut line = serde_json::to_vec(msg)?;
        line.push(b'\n');
        let name = &self.spec.name;
        let Link::Agent(agent) = &mut self.link else {
            return Err(anyhow!(
                "internal: {name} has no agent channel (SSH transport)"
            ));
        };
        agent
            .writer
            .write_all(&line)
            .await
            .with_context(|| format!("writing to the agent channel of {name}"))
    }

    async fn next_event(&mut self, deadline: Instant, tick: &mut tokio::time::Interval) -> Event {
        let Link::Agent(agent) = &mut self.link else {
            return Event::Exited("internal: no agent channel (SSH transport)".into());
        };
        tokio::select! {
            m = agent.rx.recv() => match m {
                Some(m) => Event::Msg(m),
                // The channel closed: QEMU is going away; report its exit.
                None => match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
                    Ok(s) => Event::Exited(describe_exit(s)),
                    Err(_) => Event::Exited("the agent channel closed".into()),
                },
            },
            s = self.child.wait() => Event::Exited(describe_exit(s)),
            _ = tick.tick() => Event::Tick,
            _ = tokio::time::sleep_until(deadline) => Event::Deadline,
        }
    }

    /// Waits until the guest is ready in a boot other than `previous_boot`
    /// (its agent said `ready`, or SSH answers and systemd finished booting).
    /// The error quotes the console's tail.
    pub async fn wait_ready(
        &mut self,
        within: Duration,
        previous_boot: Option<&str>,
    ) -> Result<BootInfo> {
        match self.link {
            Link::Agent(_) => self.agent_wait_ready(within, previous_boot).await,
            Link::Ssh(_) => self.ssh_wait_ready(within, previous_boot).await,
        }
    }

    /// The agent's `ready` of a boot other than `previous_boot`, saying
    /// `hello` every 5 s.
    async fn agent_wait_ready(
        &mut self,
        within: Duration,
        previous_boot: Option<&str>,
    ) -> Result<BootInfo> {
        let deadline = Instant::now() + within;
        // The agent also says `ready` by itself when it starts, and hellos written
        // before it opened the port are delivered then: repeat them rarely.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            match self.next_event(deadline, &mut tick).await {
                Event::Tick => {
                    self.send(&HostMessage::Hello {
                        protocol: PROTOCOL_VERSION,
                    })
                    .await?
                }
                Event::Msg(GuestMessage::Ready(info)) => {
                    if Some(info.boot_id.as_str()) == previous_boot {
                        continue;
                    }
                    if info.protocol != PROTOCOL_VERSION {
                        return Err(anyhow!(
                            "{}: guest agent speaks protocol {}, this host {PROTOCOL_VERSION}",
                            self.spec.name,
                            info.protocol
                        ));
                    }
                    self.boots += 1;
                    let info = BootInfo::from(&info);
                    self.ready = Some(info.clone());
                    return Ok(info);
                }
                Event::Msg(_) => {}
                Event::Exited(how) => {
                    return Err(anyhow!(
                        "{}: QEMU {how} before the guest agent was ready; console tail:\n{}",
                        self.spec.name,
                        self.console_tail()
                    ))
                }
                Event::Deadline => {
                    return Err(anyhow!(
                        "{}: the guest did not boot to its agent within {} s; console tail:\n{}",
                        self.spec.name,
                        within.as_secs(),
                        self.console_tail()
                    ))
                }
            }
        }
    }

    fn job_id(&mut self, prefix: &str) -> String {
        self.next_job += 1;
        format!("{prefix}{}", self.next_job)
    }

    /// Reboots the guest and waits until it is ready in its next boot (SSH
    /// transport: the demo agent has no reboot command).
    pub async fn reboot(&mut self, within: Duration) -> Result<BootInfo> {
        match self.link {
            Link::Ssh(_) => self.ssh_reboot(within).await,
            Link::Agent(_) => Err(anyhow!(
                "{}: a reboot from the host needs the SSH transport",
                self.spec.name
            )),
        }
    }

    /// Runs a command in the guest as root.
    pub async fn exec(&mut self, argv: &[&str], within: Duration) -> Result<JobOutput> {
        if let Link::Ssh(_) = self.link {
            return self.ssh_exec(argv, within).await;
        }
        let id = self.job_id("c");
        self.send(&HostMessage::Exec(ExecRequest {
            id: id.clone(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: Default::default(),
            timeout_secs: Some(within.as_secs().max(1)),
        }))
        .await?;
        // A little grace beyond the agent's own timeout.
        self.collect(&id, Instant::now() + within + Duration::from_secs(5))
            .await
    }

    /// Runs a test bundle (`run`), through any number of autopkgtest reboots.
    pub async fn run_test(
        &mut self,
        name: &str,
        exec: String,
        bundle: Vec<u8>,
        timeout: Duration,
    ) -> Result<JobOutput> {
        if let Link::Ssh(_) = self.link {
            return self.ssh_run_test(name, &exec, bundle, timeout).await;
        }
        let id = self.job_id("t");
        self.send(&HostMessage::Run(RunRequest {
            id: id.clone(),
            name: name.to_string(),
            exec,
            bundle: bundle.into(),
            env: Default::default(),
            timeout_secs: Some(timeout.as_secs().max(1)),
        }))
        .await?;
        self.collect(&id, Instant::now() + timeout).await
    }

    async fn collect(&mut self, id: &str, deadline: Instant) -> Result<JobOutput> {
        let mut out = JobOutput::timed_out();
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            let m = match self.next_event(deadline, &mut tick).await {
                Event::Msg(m) => m,
                Event::Tick => continue,
                Event::Deadline => {
                    out.fate = JobFate::TimedOut;
                    return Ok(out);
                }
                Event::Exited(how) => {
                    out.fate = JobFate::VmLost(format!("QEMU {how}"));
                    return Ok(out);
                }
            };
            match m {
                GuestMessage::Output {
                    id: j,
                    stream,
                    data,
                } if j == id => match stream {
                    Stream::Stdout => out.stdout.extend_from_slice(&data.0),
                    Stream::Stderr => out.stderr.extend_from_slice(&data.0),
                },
                GuestMessage::Exit { id: j, status } if j == id => {
                    out.fate = JobFate::Ended(JobEnd::Exit(status));
                    return Ok(out);
                }
                GuestMessage::Error {
                    id: Some(j),
                    message,
                } if j == id => {
                    out.fate = JobFate::Ended(JobEnd::Error(message));
                    return Ok(out);
                }
                GuestMessage::Reboot { id: j, mark, .. } if j == id => {
                    out.reboots.push(mark);
                    if let Err(e) = self.follow_reboot(deadline).await {
                        out.fate = JobFate::VmLost(format!("{e:#}"));
                        return Ok(out);
                    }
                    if let Some(r) = &self.ready {
                        out.findings.extend(checks::failed_units(&r.failed_units));
                    }
                }
                _ => {}
            }
        }
    }

    /// The guest reboots for a test: wait for the new boot's agent and say
    /// `hello`, which makes it resume the test. A directly booted kernel
    /// cannot reboot into another command line, so QEMU is started again
    /// without the first-boot arguments.
    async fn follow_reboot(&mut self, deadline: Instant) -> Result<()> {
        let old = self.ready.as_ref().map(|r| r.boot_id.clone());
        let within = deadline.saturating_duration_since(Instant::now());
        if self.spec.kernel_boot.is_some() {
            match tokio::time::timeout(within, self.child.wait()).await {
                Ok(_) => {}
                Err(_) => return Err(anyhow!("the guest did not go down for its reboot")),
            }
            self.note("QEMU exited for the test's reboot; starting the next boot");
            self.relaunch().await?;
        }
        let within = deadline.saturating_duration_since(Instant::now());
        self.wait_ready(within, old.as_deref()).await?;
        self.send(&HostMessage::Hello {
            protocol: PROTOCOL_VERSION,
        })
        .await
    }

    /// A PXE-booted live system ends QEMU when it reboots after installing:
    /// wait for that (within `within`), then boot the target disk.
    pub async fn boot_target_after_exit(&mut self, within: Duration) -> Result<()> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(s) => self.note(&format!(
                "QEMU {} (the live system rebooted)",
                describe_exit(s)
            )),
            Err(_) => {
                return Err(anyhow!(
                    "{}: the live system did not reboot within {} s; console tail:\n{}",
                    self.spec.name,
                    within.as_secs(),
                    self.console_tail()
                ))
            }
        }
        self.note("starting the next boot from the target disk");
        self.relaunch().await
    }

    /// Starts QEMU again after the guest ended it with a reboot (direct
    /// kernel boot), without the first-boot arguments.
    async fn relaunch(&mut self) -> Result<()> {
        let (child, qmp, link) = launch(&self.spec, false, &self.log, self.started).await?;
        self.child = child;
        self.qmp = qmp;
        self.link = link;
        Ok(())
    }

    /// Clean shutdown: the ACPI power button, then QMP `quit` if the guest
    /// has not powered off within `grace`, then SIGKILL.
    pub async fn shutdown(&mut self, grace: Duration) -> Result<()> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        self.note("QMP system_powerdown");
        if self.qmp.system_powerdown().await.is_ok()
            && tokio::time::timeout(grace, self.child.wait()).await.is_ok()
        {
            self.note("QEMU exited: the guest powered off");
            return Ok(());
        }
        self.note("no clean poweroff: QMP quit");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.qmp.quit()).await;
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
        Ok(())
    }

    /// Removes what only a running VM needs (overlay, firmware variables,
    /// sockets), keeping the logs and the config.
    pub fn remove_scratch(&self) {
        for f in [
            "disk.qcow2",
            LiveBoot::TARGET_FILE,
            "OVMF_VARS.fd",
            "qmp.sock",
            "agent.sock",
        ] {
            let _ = fs::remove_file(self.spec.dir.join(f));
        }
        for i in 1..=self.spec.additional_disks.len() {
            let _ = fs::remove_file(self.spec.dir.join(format!("disk{i}.qcow2")));
        }
    }

    /// Asks the guest to power off (for `cosa run` without a console).
    pub async fn poweroff(&mut self) -> Result<()> {
        if let Link::Ssh(_) = self.link {
            return self.ssh_poweroff().await;
        }
        self.send(&HostMessage::Shutdown {
            action: ShutdownAction::Poweroff,
        })
        .await
    }

    /// Where this VM's sshd is (SSH transport).
    pub fn ssh_target(&self) -> Option<&ssh::Target> {
        match &self.link {
            Link::Ssh(l) => Some(l.target()),
            Link::Agent(_) => None,
        }
    }

    /// Kills QEMU now.
    pub async fn kill(&mut self) {
        if let Link::Ssh(l) = &mut self.link {
            l.disconnect().await;
        }
        self.qmp.close();
        let _ = self.child.kill().await;
    }

    /// Waits for QEMU to exit (`cosa run -c`: the user powers off).
    pub async fn wait_exit(&mut self) -> Result<String> {
        Ok(describe_exit(self.child.wait().await))
    }

    /// Saves the screen through QMP (on failures).
    pub async fn screendump(&self, path: &Path) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(5), self.qmp.screendump(path))
            .await
            .map_err(|_| anyhow!("QMP screendump timed out"))?
    }

    pub fn console_text(&self) -> String {
        fs::read(self.console_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn console_len(&self) -> usize {
        fs::metadata(self.console_path())
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Waits until the console log stops growing (25 ms quiet, 300 ms at
    /// most): serial output the guest wrote during a test may reach the file
    /// after the test's `exit` did.
    pub async fn settle_console(&self) {
        let mut len = self.console_len();
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = self.console_len();
            if now == len {
                return;
            }
            len = now;
        }
    }

    pub fn console_tail(&self) -> String {
        checks::tail(&self.console_text(), CONSOLE_TAIL_LINES)
    }
}

fn log_name(t: &Transport) -> &'static str {
    match t {
        Transport::Agent => "agent.log",
        Transport::Ssh(_) => "harness.log",
    }
}
