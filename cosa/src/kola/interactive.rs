//! `cosa run`: one VM of the build's qemu image, outside any test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use fs_err as fs;

use crate::kola::build::BuildUnderTest;
use crate::kola::harness;
use crate::kola::machine::{
    empty_ignition, BootInfo, ConsoleMode, Firmware, Machine, MachineSpec, Transport, TransportKind,
};
use crate::kola::qemu;
use crate::kola::run::{runtime, KVM_PROBE_TIMEOUT};

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
}

/// How the VM ended.
#[derive(Debug)]
pub enum RunVmOutcome {
    /// What the guest reported when ready; it was then powered off.
    Ready(BootInfo),
    /// The console session ended with QEMU's exit, described.
    ConsoleClosed(String),
}

/// Boots the build's qemu image once.
pub fn run_vm(workdir: &Path, o: &RunVmOptions) -> Result<RunVmOutcome> {
    let b = BuildUnderTest::open(workdir, o.build.as_deref())?;
    let image = b.qemu_image()?;
    qemu::check_host(b.arch, o.firmware)?;
    let ignition = match &o.ignition {
        Some(p) => serde_json::from_slice(&fs::read(p)?)
            .with_context(|| format!("{}: not a JSON Ignition config", p.display()))?,
        None => empty_ignition(),
    };
    let dir = b.wd.tmp_dir().join(format!("run-{}", std::process::id()));
    let transport = Transport::make(b.transport(o.transport)?, &dir.join("ssh"))?;
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
                "cosa run: build {} ({}), serial console below; Ctrl-A x quits QEMU; agent channel {}",
                b.id,
                accel.as_str(),
                dir.join("agent.sock").display()
            );
            let how = m.wait_exit().await?;
            return Ok(RunVmOutcome::ConsoleClosed(how));
        }
        let ready = m.wait_ready(READY_TIMEOUT, None).await?;
        m.poweroff().await?;
        m.shutdown(POWEROFF_GRACE).await?;
        Ok(RunVmOutcome::Ready(ready))
    });
    drop(rt);
    let _ = fs::remove_dir_all(&dir);
    result
}
