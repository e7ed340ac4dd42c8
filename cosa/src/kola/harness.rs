//! Running planned VMs: boot, run each test through the agent or over SSH,
//! check the console and the guest's reports, shut down; many VMs at once under the
//! scheduler's ledger; Ctrl-C kills every VM and keeps what finished.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod vm;

use crate::arch::Arch;
use crate::kola::builtin::{self, BodyResult, BuildFacts};
use crate::kola::machine::{Firmware, JobFate, KernelBoot, Machine, MachineSpec, Transport};
use crate::kola::protocol::bundle;
use crate::kola::qemu::Accel;
use crate::kola::scheduler::{self, Ledger, VmPlan};
use crate::kola::test::{Feature, KolaTest, TestBody};
use crate::logging::Progress;

/// How long a VM gets to power off cleanly before QMP `quit`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Everything a run needs, passed down explicitly (no globals).
pub struct Harness {
    pub arch: Arch,
    pub out_dir: PathBuf,
    pub image: PathBuf,
    pub firmware: Firmware,
    pub accel: Accel,
    pub default_memory_mib: u64,
    pub boot_timeout: Duration,
    pub facts: BuildFacts,
    /// The image's kernel, for tests with extra kernel arguments.
    pub kernel_boot: Option<KernelBoot>,
    pub transport: Transport,
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
            if let Err(e) = vm::run_vm(&h, &ledger, plan, &tx).await {
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

/// The first-boot config of the VM a test runs on (every VM gets one).
fn config_for(t: &KolaTest) -> Result<serde_json::Value> {
    Ok(t.ignition_config()?
        .unwrap_or_else(crate::kola::machine::empty_ignition))
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
        TestBody::External {
            exe,
            data_dir,
            root,
            ..
        } => {
            let (exec, tar) = bundle::pack_within(exe, data_dir.as_deref(), root)
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

/// Tries KVM: it "works" only if a guest actually becomes ready (its agent
/// answers, or SSH does).
pub async fn probe_kvm(
    arch: Arch,
    image: &Path,
    firmware: Firmware,
    transport: &Transport,
    dir: &Path,
    within: Duration,
) -> Accel {
    if !Path::new("/dev/kvm").exists() {
        return Accel::Tcg;
    }
    let spec = MachineSpec::new(
        arch,
        "kvm-probe".into(),
        dir.to_path_buf(),
        image.to_path_buf(),
        Accel::Kvm,
    )
    .firmware(firmware)
    .transport(transport.clone());
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
