//! Running planned VMs: boot, run each test through the agent, check the
//! console and the agent's reports, shut down; many VMs at once under the
//! scheduler's ledger; Ctrl-C kills every VM and keeps what finished.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::kola::builtin::{self, BodyResult, BuildFacts};
use crate::kola::checks;
use crate::kola::machine::Firmware;
use crate::kola::machine::{ConsoleMode, JobFate, KernelBoot, Machine, MachineSpec};
use crate::kola::protocol::bundle;
use crate::kola::qemu::Accel;
use crate::kola::scheduler::{self, Ledger, VmPlan};
use crate::kola::test::{Feature, KolaTest, TestBody};
use crate::logging::Progress;

/// How long a VM gets to power off cleanly before QMP `quit`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Everything a run needs, passed down explicitly (no globals).
pub struct Harness {
    pub out_dir: PathBuf,
    pub image: PathBuf,
    pub firmware: Firmware,
    pub accel: Accel,
    pub default_memory_mib: u64,
    pub boot_timeout: Duration,
    pub facts: BuildFacts,
    /// The image's kernel, for tests with extra kernel arguments.
    pub kernel_boot: Option<KernelBoot>,
    pub console_checks: bool,
    pub progress: Progress,
}

/// How one attempt of one test went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone)]
pub struct TestRun {
    pub name: String,
    pub verdict: Verdict,
    pub duration: Duration,
    pub output: String,
    pub attempt: u32,
    pub vm: String,
    pub console_log: PathBuf,
}

/// What the harness cannot give a test: those are skipped with the reason.
pub fn unsupported(t: &KolaTest) -> Option<String> {
    let mut why = Vec::new();
    for f in t.meta.features() {
        match &f {
            Feature::AdditionalDisks(d) if d.iter().all(|s| plain_size(s)) => {}
            f => why.push(f.to_string()),
        }
    }
    if t.meta.butane_config.is_some() {
        why.push("a Butane config (config.bu)".into());
    }
    (!why.is_empty()).then(|| format!("cosa kola on qemu cannot provide: {}", why.join(", ")))
}

/// `5G`, `512M`: a size without kola's `:options`.
fn plain_size(s: &str) -> bool {
    let s = s.trim();
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && digits.len() + 1 >= s.len()
}

/// Runs every plan; results arrive on `tx` as each test ends.
pub async fn run_plans(
    h: Arc<Harness>,
    ledger: Ledger,
    plans: Vec<VmPlan>,
    tx: mpsc::UnboundedSender<TestRun>,
) {
    let mut set = JoinSet::new();
    for plan in plans {
        let h = h.clone();
        let ledger = ledger.clone();
        let tx = tx.clone();
        set.spawn(async move {
            let names: Vec<String> = plan.tests.iter().map(|t| t.name.clone()).collect();
            let vm = plan.vm.clone();
            let attempt = plan.attempt;
            if let Err(e) = run_vm(&h, &ledger, plan, &tx).await {
                // Only tests that have not reported yet get this error.
                for n in names {
                    let _ = tx.send(TestRun {
                        name: n,
                        verdict: Verdict::Fail,
                        duration: Duration::ZERO,
                        output: format!("{e:#}"),
                        attempt,
                        vm: vm.clone(),
                        console_log: h.out_dir.join(&vm).join("console.txt"),
                    });
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Boots one VM and runs its tests. Every test it was given gets exactly one
/// result on `tx`, unless the whole VM fails before any test (then `Err`).
async fn run_vm(
    h: &Harness,
    ledger: &Ledger,
    plan: VmPlan,
    tx: &mpsc::UnboundedSender<TestRun>,
) -> Result<()> {
    let _lease = ledger.acquire(plan.memory_mib).await?;
    let dir = h.out_dir.join(&plan.vm);
    let first = &plan.tests[0];
    let needs_kargs = plan.tests.iter().any(|t| {
        !t.meta.append_kernel_args.is_empty() || !t.meta.append_firstboot_kernel_args.is_empty()
    });
    let spec = MachineSpec {
        name: plan.vm.clone(),
        dir: dir.clone(),
        image: h.image.clone(),
        accel: h.accel,
        firmware: h.firmware,
        memory_mib: plan.memory_mib,
        min_disk_gib: first.meta.min_disk_gib,
        additional_disks: first.meta.additional_disks.clone(),
        ignition: Some(config_for(first)?),
        kernel_boot: if needs_kargs {
            Some(h.kernel_boot.clone().context(
                "internal: kernel arguments requested but the image's kernel was not extracted",
            )?)
        } else {
            None
        },
        append_kernel_args: first.meta.append_kernel_args.clone(),
        append_firstboot_kernel_args: first.meta.append_firstboot_kernel_args.clone(),
        console: ConsoleMode::Logged,
    };
    let vm_started = Instant::now();
    let names: Vec<&str> = plan.tests.iter().map(|t| t.name.as_str()).collect();
    h.progress
        .line(&format!("=== VM {} start: {}", plan.vm, names.join(", ")));
    let mut m = Machine::start(spec).await?;
    let console_log = m.console_path();
    let result = |name: &str, verdict, duration, output: String| TestRun {
        name: name.to_string(),
        verdict,
        duration,
        output,
        attempt: plan.attempt,
        vm: plan.vm.clone(),
        console_log: console_log.clone(),
    };
    let ready = match m.wait_ready(h.boot_timeout, None).await {
        Ok(r) => r,
        Err(e) => {
            let _ = m.screendump(&dir.join("screendump.ppm")).await;
            m.kill().await;
            return Err(e);
        }
    };
    let mut pending_findings = checks::failed_units(&ready.failed_units);
    let mut offset = 0;
    let mut klog = KernelLog::default();
    let mut on_fresh_boot = true;
    let mut any_failed = false;
    let mut tests = plan.tests.iter();
    while let Some(t) = tests.next() {
        let tdir = dir.join(sanitize(&t.name));
        std::fs::create_dir_all(&tdir)?;
        h.progress
            .line(&format!("--- {} start (VM {})", t.name, plan.vm));
        let started = Instant::now();
        // The first test on a VM also answers for its boot.
        let boot_time = if on_fresh_boot {
            vm_started.elapsed()
        } else {
            Duration::ZERO
        };
        on_fresh_boot = false;
        let (mut verdict, mut output, vm_gone) = run_one(h, &mut m, t, &tdir).await?;
        // The kernel log first: its round trip also gives the console time to settle.
        let kernel_log = if h.console_checks && !vm_gone {
            klog.since_last(&mut m, &dir).await
        } else {
            String::new()
        };
        m.settle_console().await;
        let console = m.console_text();
        let new = console.get(offset..).unwrap_or("");
        offset = console.len();
        let mut findings = std::mem::take(&mut pending_findings);
        if h.console_checks {
            findings.extend(checks::scan_console(new));
            findings.extend(checks::scan_console(&kernel_log));
            checks::dedup(&mut findings);
        }
        if verdict != Verdict::Skip && !findings.is_empty() {
            verdict = Verdict::Fail;
            output.push_str("\nchecks failed:\n");
            for f in &findings {
                output.push_str(&format!("  {f}\n"));
            }
        }
        if verdict == Verdict::Fail {
            any_failed = true;
        }
        std::fs::write(tdir.join("output.txt"), &output)?;
        let duration = started.elapsed() + boot_time;
        h.progress.line(&format!(
            "--- {} {} ({:.1} s)",
            t.name,
            match verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            },
            duration.as_secs_f64()
        ));
        h.progress.inc();
        let _ = tx.send(result(&t.name, verdict, duration, output));
        if vm_gone {
            let _ = m.screendump(&dir.join("screendump.ppm")).await;
            m.kill().await;
            for rest in tests.by_ref() {
                h.progress.inc();
                let _ = tx.send(result(
                    &rest.name,
                    Verdict::Fail,
                    Duration::ZERO,
                    format!("not run: VM {} was killed after {} failed", plan.vm, t.name),
                ));
            }
            return Ok(());
        }
    }
    if any_failed {
        if let Err(e) = m.screendump(&dir.join("screendump.ppm")).await {
            tracing::debug!("{}: {e:#}", plan.vm);
        }
    }
    let r = m.shutdown(SHUTDOWN_GRACE).await;
    if !any_failed {
        m.remove_scratch();
    }
    r
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
        let _ = std::fs::write(dir.join("dmesg.txt"), &text);
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

/// The first-boot config of the VM a test runs on (every VM gets one).
fn config_for(t: &KolaTest) -> Result<serde_json::Value> {
    Ok(t.ignition_config()?
        .unwrap_or_else(|| serde_json::json!({"ignition": {"version": "3.4.0"}})))
}

/// Runs one test's body. Returns (verdict, output, whether the VM is unusable now).
async fn run_one(
    h: &Harness,
    m: &mut Machine,
    t: &KolaTest,
    tdir: &Path,
) -> Result<(Verdict, String, bool)> {
    let timeout = t.meta.timeout;
    match &t.body {
        TestBody::Builtin(b) => {
            let r =
                tokio::time::timeout(timeout, builtin::run(*b, m, &h.facts, tdir, timeout)).await;
            Ok(match r {
                Ok(Ok(BodyResult::Pass(o))) => (Verdict::Pass, o, false),
                Ok(Ok(BodyResult::Fail(o))) => (Verdict::Fail, o, false),
                Ok(Ok(BodyResult::Skip(o))) => (Verdict::Skip, o, false),
                Ok(Err(e)) => (Verdict::Fail, format!("{e:#}"), true),
                Err(_) => (
                    Verdict::Fail,
                    format!(
                        "timed out after {} s; console tail:\n{}",
                        timeout.as_secs(),
                        m.console_tail()
                    ),
                    true,
                ),
            })
        }
        TestBody::External { exe, data_dir, .. } => {
            let (exec, tar) = bundle::pack(exe, data_dir.as_deref())
                .with_context(|| format!("packing {}", exe.display()))?;
            let out = m.run_test(&t.name, exec, tar, timeout).await?;
            let mut text = out.text();
            let mut gone = false;
            let verdict = match &out.fate {
                _ if out.success() => Verdict::Pass,
                JobFate::TimedOut => {
                    gone = true;
                    text.push_str(&format!(
                        "\ntimed out after {} s; console tail:\n{}",
                        timeout.as_secs(),
                        m.console_tail()
                    ));
                    Verdict::Fail
                }
                JobFate::VmLost(why) => {
                    gone = true;
                    text.push_str(&format!("\n{why}; console tail:\n{}", m.console_tail()));
                    Verdict::Fail
                }
                f => {
                    text.push_str(&format!("\n{}", builtin::fate_text(f)));
                    Verdict::Fail
                }
            };
            if !out.findings.is_empty() {
                text.push_str("\nafter reboot:\n");
                for f in &out.findings {
                    text.push_str(&format!("  {f}\n"));
                }
                return Ok((Verdict::Fail, text, gone));
            }
            Ok((verdict, text, gone))
        }
    }
}

/// Tries KVM: it "works" only if a guest actually reaches its agent.
pub async fn probe_kvm(image: &Path, firmware: Firmware, dir: &Path, within: Duration) -> Accel {
    if !Path::new("/dev/kvm").exists() {
        return Accel::Tcg;
    }
    let spec = MachineSpec {
        name: "kvm-probe".into(),
        dir: dir.to_path_buf(),
        image: image.to_path_buf(),
        accel: Accel::Kvm,
        firmware,
        memory_mib: 1024,
        min_disk_gib: None,
        additional_disks: Vec::new(),
        ignition: Some(serde_json::json!({"ignition": {"version": "3.4.0"}})),
        kernel_boot: None,
        append_kernel_args: Vec::new(),
        append_firstboot_kernel_args: Vec::new(),
        console: ConsoleMode::Logged,
    };
    let mut m = match Machine::start(spec).await {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("KVM probe: {e:#}");
            return Accel::Tcg;
        }
    };
    let ok = m.wait_ready(within, None).await.is_ok();
    m.kill().await;
    m.remove_scratch();
    if ok {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// The distinct names among results (for reruns).
pub fn failed_names(runs: &[TestRun], warn_only: &BTreeSet<String>) -> BTreeSet<String> {
    runs.iter()
        .filter(|r| r.verdict == Verdict::Fail && !warn_only.contains(&r.name))
        .map(|r| r.name.clone())
        .collect()
}

/// Plans every test in fresh VMs of its own, for `--rerun`.
pub fn rerun_plans(tests: Vec<KolaTest>, default_memory_mib: u64) -> Result<Vec<VmPlan>> {
    let tests = tests
        .into_iter()
        .map(|mut t| {
            t.meta.exclusive = true;
            t
        })
        .collect();
    scheduler::plan(tests, default_memory_mib, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kola::test::TestMeta;

    #[test]
    fn sizes() {
        assert!(plain_size("5G"));
        assert!(plain_size("512M"));
        assert!(!plain_size("5G:channel=nvme"));
        assert!(!plain_size("G"));
    }

    #[test]
    fn refuses_what_it_cannot_give() {
        let t = KolaTest {
            name: "x".into(),
            body: TestBody::Builtin(crate::kola::test::Builtin::Basic),
            meta: TestMeta {
                additional_disks: vec!["1G".into()],
                ..TestMeta::default()
            },
        };
        assert_eq!(unsupported(&t), None);
        let mut t2 = t.clone();
        t2.meta.additional_nics = 1;
        t2.meta.additional_disks = vec!["1G:mpath".into()];
        let why = unsupported(&t2).unwrap();
        assert!(why.contains("additionalDisks 1G:mpath"), "{why}");
        assert!(why.contains("additionalNics 1"), "{why}");
    }
}
