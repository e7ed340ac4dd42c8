//! One planned VM, step by step: boot it, run its tests in order (each
//! judged by its body, then by the console and kernel log it caused), and
//! shut it down, or kill it when a test leaves it unusable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fs_err as fs;
use tokio::sync::mpsc;

use super::{config_for, run_one, Harness, TestRun, Verdict, SHUTDOWN_GRACE};
use crate::kola::checks::{self, Finding};
use crate::kola::machine::{Machine, MachineSpec};
use crate::kola::scheduler::{Ledger, VmPlan};
use crate::kola::test::KolaTest;

/// Boots one VM and runs its tests. Every test it was given gets exactly one
/// result on `tx`, unless the whole VM fails before any test (then `Err`).
pub(super) async fn run_vm(
    h: &Harness,
    ledger: &Ledger,
    plan: VmPlan,
    tx: &mpsc::UnboundedSender<TestRun>,
) -> Result<()> {
    let _lease = ledger.acquire(plan.memory_mib).await?;
    let mut vm = VmRun::boot(h, &plan).await?;
    for (i, t) in plan.tests.iter().enumerate() {
        let (run, vm_gone) = vm.run_test(t).await?;
        let _ = tx.send(run);
        if vm_gone {
            vm.abandon(&t.name, &plan.tests[i + 1..], tx).await;
            return Ok(());
        }
    }
    vm.finish().await
}

/// What the VM of a plan's spec is: the first test's config, disks and kernel arguments.
fn machine_spec(h: &Harness, plan: &VmPlan) -> Result<MachineSpec> {
    let first = &plan.tests[0];
    let kernel_boot = if plan.tests.iter().any(KolaTest::needs_kernel_args) {
        Some(h.kernel_boot.clone().context(
            "internal: kernel arguments requested but the image's kernel was not extracted",
        )?)
    } else {
        None
    };
    Ok(MachineSpec {
        min_disk_gib: first.meta.min_disk_gib,
        additional_disks: first.meta.additional_disks.clone(),
        kernel_boot,
        append_kernel_args: first.meta.append_kernel_args.clone(),
        append_firstboot_kernel_args: first.meta.append_firstboot_kernel_args.clone(),
        ..MachineSpec::new(
            h.arch,
            plan.vm.clone(),
            h.out_dir.join(&plan.vm),
            h.image.clone(),
            h.accel,
        )
        .firmware(h.firmware)
        .transport(h.transport.clone())
        .memory(plan.memory_mib)
        .ignition(config_for(first)?)
    })
}

/// A booted VM of a plan and what its tests have left behind so far.
struct VmRun<'a> {
    h: &'a Harness,
    plan: &'a VmPlan,
    dir: PathBuf,
    m: Machine,
    started: Instant,
    /// Findings of the boot itself, charged to the first test.
    pending_findings: Vec<Finding>,
    /// How much of the console earlier tests were judged on.
    console_offset: usize,
    klog: KernelLog,
    fresh_boot: bool,
    any_failed: bool,
}

impl<'a> VmRun<'a> {
    /// Starts the VM and waits for its agent; a VM that never boots is killed
    /// after a screendump.
    async fn boot(h: &'a Harness, plan: &'a VmPlan) -> Result<VmRun<'a>> {
        let spec = machine_spec(h, plan)?;
        let dir = spec.dir.clone();
        let started = Instant::now();
        let names: Vec<&str> = plan.tests.iter().map(|t| t.name.as_str()).collect();
        h.progress
            .line(&format!("=== VM {} start: {}", plan.vm, names.join(", ")));
        let mut m = Machine::start(spec).await?;
        let ready = match m.wait_ready(h.boot_timeout, None).await {
            Ok(r) => r,
            Err(e) => {
                let _ = m.screendump(&dir.join("screendump.ppm")).await;
                m.kill().await;
                return Err(e);
            }
        };
        Ok(VmRun {
            h,
            plan,
            dir,
            m,
            started,
            pending_findings: checks::failed_units(&ready.failed_units),
            console_offset: 0,
            klog: KernelLog::default(),
            fresh_boot: true,
            any_failed: false,
        })
    }

    fn result(&self, name: &str, verdict: Verdict, duration: Duration, output: String) -> TestRun {
        TestRun {
            name: name.to_string(),
            verdict,
            duration,
            output,
            attempt: self.plan.attempt,
            vm: self.plan.vm.clone(),
            console_log: self.m.console_path(),
        }
    }

    /// Runs one test and judges it; also says whether the VM is unusable now.
    async fn run_test(&mut self, t: &KolaTest) -> Result<(TestRun, bool)> {
        let tdir = self.dir.join(sanitize(&t.name));
        fs::create_dir_all(&tdir)?;
        self.h
            .progress
            .line(&format!("--- {} start (VM {})", t.name, self.plan.vm));
        let started = Instant::now();
        // The first test on a VM also answers for its boot.
        let boot_time = if self.fresh_boot {
            self.started.elapsed()
        } else {
            Duration::ZERO
        };
        self.fresh_boot = false;
        let (mut verdict, mut output, vm_gone) = run_one(self.h, &mut self.m, t, &tdir).await?;
        let findings = self.findings(vm_gone).await;
        if verdict != Verdict::Skip && !findings.is_empty() {
            verdict = Verdict::Fail;
            output.push_str("\nchecks failed:\n");
            for f in &findings {
                output.push_str(&format!("  {f}\n"));
            }
        }
        if verdict == Verdict::Fail {
            self.any_failed = true;
        }
        fs::write(tdir.join("output.txt"), &output)?;
        let duration = started.elapsed() + boot_time;
        self.h.progress.line(&format!(
            "--- {} {} ({:.1} s)",
            t.name,
            match verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            },
            duration.as_secs_f64()
        ));
        self.h.progress.inc();
        Ok((self.result(&t.name, verdict, duration, output), vm_gone))
    }

    /// What the console and the kernel log show since the previous test.
    async fn findings(&mut self, vm_gone: bool) -> Vec<Finding> {
        // The kernel log first: its round trip also gives the console time to settle.
        let kernel_log = if self.h.console_checks && !vm_gone {
            self.klog.since_last(&mut self.m, &self.dir).await
        } else {
            String::new()
        };
        self.m.settle_console().await;
        let console = self.m.console_text();
        let new = console.get(self.console_offset..).unwrap_or("");
        self.console_offset = console.len();
        let mut findings = std::mem::take(&mut self.pending_findings);
        if self.h.console_checks && !vm_gone {
            // Over SSH, the journal's failed units after every test (the
            // agent reports them with each boot's `ready`).
            let units = self.m.failed_units().await;
            findings.extend(checks::failed_units(&units));
        }
        if self.h.console_checks {
            findings.extend(checks::scan_console(new));
            findings.extend(checks::scan_console(&kernel_log));
            checks::dedup(&mut findings);
        }
        findings
    }

    /// `culprit` left the VM unusable: kill it, and fail the tests it did not run.
    async fn abandon(
        mut self,
        culprit: &str,
        rest: &[KolaTest],
        tx: &mpsc::UnboundedSender<TestRun>,
    ) {
        let _ = self.m.screendump(&self.dir.join("screendump.ppm")).await;
        self.m.kill().await;
        for t in rest {
            self.h.progress.inc();
            let why = format!(
                "not run: VM {} was killed after {culprit} failed",
                self.plan.vm
            );
            let _ = tx.send(self.result(&t.name, Verdict::Fail, Duration::ZERO, why));
        }
    }

    /// Every test ran: shut down; a VM whose tests all passed leaves only its logs.
    async fn finish(mut self) -> Result<()> {
        if self.any_failed {
            if let Err(e) = self.m.screendump(&self.dir.join("screendump.ppm")).await {
                tracing::debug!("{}: {e:#}", self.plan.vm);
            }
        }
        let r = self.m.shutdown(SHUTDOWN_GRACE).await;
        if !self.any_failed {
            self.m.remove_scratch();
        }
        r
    }
}

/// The guest's kernel log, read through the agent (`dmesg`) after each test:
/// it holds what the console's printk level keeps off the serial console
/// (warnings, segfaults, the OOM killer).
#[derive(Default)]
struct KernelLog {
    boot: u32,
    offset: usize,
}

impl KernelLog {
    /// What the kernel logged since the last call (all of it after a reboot).
    async fn since_last(&mut self, m: &mut Machine, dir: &Path) -> String {
        let out = match m.exec(&["dmesg"], Duration::from_secs(30)).await {
            Ok(o) if o.success() => o,
            // No dmesg in the image, or the VM is going: the console checks remain.
            _ => return String::new(),
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let _ = fs::write(dir.join("dmesg.txt"), &text);
        if m.boots != self.boot {
            self.boot = m.boots;
            self.offset = 0;
        }
        let new = text.get(self.offset..).unwrap_or(&text).to_string();
        self.offset = text.len();
        new
    }
}

fn sanitize(name: &str) -> String {
    name.replace('/', "_")
}
