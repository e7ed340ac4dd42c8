//! `kola run`: pick the tests, choose the accelerator, run the VMs, write the reports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use tokio::sync::mpsc;

use crate::kola::build::{BuildUnderTest, SelectOptions};
use crate::kola::builtin;
use crate::kola::harness::{self, Harness, TestRun, Verdict};
use crate::kola::kernelboot;
use crate::kola::machine::{Firmware, Transport, TransportKind};
use crate::kola::qemu::{self, Accel};
use crate::kola::report;
use crate::kola::scheduler::{self, Ledger};
use crate::kola::select::Selected;
use crate::kola::test::{Builtin, KolaTest, TestBody};
use crate::kola::testiso;
use crate::kola::upgrade;
use crate::logging::Progress;

/// How long the KVM probe may take to reach the guest agent.
pub(crate) const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything `kola run` needs besides the workdir.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub select: SelectOptions,
    /// Parallel VMs: a number or `auto`.
    pub parallel: String,
    pub firmware: Firmware,
    /// Default: the workdir's tmp/kola.
    pub output_dir: Option<PathBuf>,
    /// Re-run failed tests once in fresh VMs.
    pub rerun: bool,
    /// No progress bar (the caller prints JSON).
    pub quiet: bool,
    /// Boot this qcow2 instead of the build's qemu image.
    pub qemu_image: Option<PathBuf>,
    /// `None`: KVM if a probe VM reaches its agent, else TCG.
    pub accel: Option<Accel>,
    pub memory_mib: u64,
    pub boot_timeout: Duration,
    /// `None`: the agent if the build carries it, else SSH.
    pub transport: Option<TransportKind>,
}

/// What a run did: every attempt of every test, skipped ones included.
#[derive(Debug)]
pub struct RunOutcome {
    pub build: String,
    pub accel: Accel,
    pub firmware: Firmware,
    pub transport: &'static str,
    pub output_dir: PathBuf,
    pub runs: Vec<TestRun>,
    pub results: Vec<report::TestResult>,
    pub warn_only: BTreeSet<String>,
    /// Ctrl-C ended the run; the reports hold the tests that finished.
    pub interrupted: bool,
    /// kola's exit code: 0 pass, 77 only warnings, else failures.
    pub exit_code: i32,
}

impl RunOutcome {
    pub fn reports_dir(&self) -> PathBuf {
        self.output_dir.join("reports")
    }

    /// The `--json` summary.
    pub fn to_json(&self) -> serde_json::Value {
        let code = self.exit_code;
        serde_json::json!({
            "result": if code == 0 { "PASS" } else if code == report::EXIT_WARN_ONLY { "WARN" } else { "FAIL" },
            "interrupted": self.interrupted,
            "build": self.build,
            "accel": self.accel.as_str(),
            "firmware": self.firmware.as_str(),
            "transport": self.transport,
            "output_dir": self.output_dir,
            "tests": self.runs.iter().map(|r| serde_json::json!({
                "name": r.name,
                "result": outcome(r, &self.warn_only).to_string(),
                "attempt": r.attempt,
                "duration_secs": r.duration.as_secs_f64(),
                "vm": r.vm,
            })).collect::<Vec<_>>(),
        })
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Runs the selected tests of a build in QEMU and writes the reports.
pub fn run(workdir: &Path, o: &RunOptions) -> Result<RunOutcome> {
    let b = BuildUnderTest::open(workdir, o.select.build.as_deref())?;
    qemu::check_host(b.arch, o.firmware)?;
    let (selected, sel) = b.select_tests(&o.select)?;
    let out = o
        .output_dir
        .clone()
        .unwrap_or_else(|| b.wd.tmp_dir().join("kola"));
    prepare_out_dir(&out)?;
    let out = fs::canonicalize(&out)?;
    let budget = scheduler::ram_budget_mib()?;
    let parallel = scheduler::parallelism(&o.parallel, budget, o.memory_mib)?;
    let facts = b.facts();
    let (to_run, mut skipped) = partition_runnable(&selected, &facts, &out)?;
    // The upgrade test boots the previous build's image, beside the VM plans.
    let (upgrades, to_run): (Vec<KolaTest>, Vec<KolaTest>) = to_run
        .into_iter()
        .partition(|t| t.body == TestBody::Builtin(Builtin::Upgrade));
    // The install-media scenarios boot the live media, each in a VM of its own.
    let (isos, to_run): (Vec<KolaTest>, Vec<KolaTest>) = to_run
        .into_iter()
        .partition(|t| matches!(t.body, TestBody::Builtin(Builtin::Testiso(_))));
    let scenarios: Vec<testiso::Scenario> = isos
        .iter()
        .filter_map(|t| match t.body {
            TestBody::Builtin(Builtin::Testiso(s)) => Some(s),
            _ => None,
        })
        .collect();
    if scenarios.iter().any(|s| s.firmware == Firmware::Uefi) {
        qemu::check_host(b.arch, Firmware::Uefi)?;
    }
    let media = if scenarios.is_empty() {
        None
    } else {
        Some(Arc::new(testiso::Media::prepare(
            &b,
            &scenarios,
            &out.join("testiso"),
        )?))
    };
    let upgrade_from = match upgrades.first() {
        None => None,
        Some(t) => match upgrade::upgrade_source(&b) {
            Ok(from) => Some(from),
            Err(why) => {
                skipped.push(skip_run(&t.name, &why, &out));
                None
            }
        },
    };
    // `None`: only the install-media scenarios run (they boot the live media),
    // on a build without a qemu image (one made by `cosa import`, say).
    let image = match (&o.qemu_image, &upgrade_from) {
        (Some(p), _) if p.is_file() => Some(fs::canonicalize(p)?),
        (Some(p), _) => bail!("--qemu-image {}: no such file", p.display()),
        // Only the upgrade test runs: the build under test needs no image of its own.
        (None, Some(from)) if to_run.is_empty() => Some(from.qemu_image()?),
        (None, None) if to_run.is_empty() && !scenarios.is_empty() => b.qemu_image().ok(),
        (None, _) => Some(b.qemu_image()?),
    };
    let transport = Transport::make(b.transport(o.transport)?, &out.join("ssh"))?;

    let started = chrono::Utc::now();
    let rt = runtime()?;
    let accel = match (o.accel, &image) {
        (Some(a), _) => a,
        (None, Some(image)) => rt.block_on(harness::probe_kvm(
            b.arch,
            image,
            o.firmware,
            &transport,
            &out.join("kvm-probe"),
            KVM_PROBE_TIMEOUT,
        )),
        (None, None) if !std::path::Path::new("/dev/kvm").exists() => Accel::Tcg,
        (None, None) => bail!(
            "build {} has no qemu image to probe KVM with: choose --qemu-accel kvm or tcg",
            b.id
        ),
    };
    let image = image.unwrap_or_default();
    let kernel_boot = if to_run.iter().any(KolaTest::needs_kernel_args) {
        Some(
            kernelboot::extract(&image, &out.join("kernel-boot")).context(
                "extracting the image's kernel for tests with appendKernelArgs (direct kernel boot)",
            )?,
        )
    } else {
        None
    };
    let n_extra = usize::from(upgrade_from.is_some()) + scenarios.len();
    let progress = Progress::new(to_run.len() + n_extra, "tests", o.quiet);
    progress.line(&format!(
        "kola: {} test(s) to run, {} skipped; build {}, {} firmware, accel {}, transport {}, -j {parallel}, output {}",
        to_run.len() + n_extra,
        skipped.len(),
        b.id,
        o.firmware.as_str(),
        accel.as_str(),
        transport.name(),
        out.display()
    ));
    let h = Arc::new(Harness {
        arch: b.arch,
        out_dir: out.clone(),
        image,
        firmware: o.firmware,
        accel,
        default_memory_mib: o.memory_mib,
        boot_timeout: o.boot_timeout,
        facts,
        kernel_boot,
        transport: transport.clone(),
        console_checks: !sel.skip_console_warnings(),
        progress,
    });
    let ledger = Ledger::new(parallel, budget);
    let by_name: BTreeMap<String, KolaTest> = to_run
        .iter()
        .chain(upgrades.iter().filter(|_| upgrade_from.is_some()))
        .chain(isos.iter())
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let plans = scheduler::plan(to_run, o.memory_mib, 1)?;
    let upgrade_case = upgrade_from.as_ref().map(|from| upgrade::Case {
        from,
        to: &b,
        key: None,
        firmware: o.firmware,
        accel,
        memory_mib: o.memory_mib,
        boot_timeout: o.boot_timeout,
        transport: transport.clone(),
        dir: out.join(upgrade::TEST_NAME),
    });
    let iso_cases = match &media {
        Some(media) => {
            let memory_mib = testiso::memory_mib(media, o.memory_mib)?;
            scenarios
                .iter()
                .map(|&scenario| testiso::Case {
                    scenario,
                    media: media.clone(),
                    arch: b.arch,
                    accel,
                    transport: transport.clone(),
                    memory_mib,
                    dir: out.join(scenario.name),
                })
                .collect()
        }
        None => Vec::new(),
    };
    let (mut runs, interrupted) = rt.block_on(async {
        let upgrade = run_upgrade_case(&h, &ledger, upgrade_case.as_ref());
        let isos = run_testiso_cases(&h, &ledger, iso_cases);
        let (collected, upgraded, isos) =
            tokio::join!(run_collect(h.clone(), ledger.clone(), plans), upgrade, isos);
        let (mut runs, interrupted) = collected;
        runs.extend(upgraded);
        runs.extend(isos);
        (runs, interrupted)
    });
    if o.rerun && !interrupted {
        let more = rt.block_on(rerun_failed(&h, ledger, &runs, &selected, &by_name))?;
        runs.extend(more);
    }
    if interrupted {
        let done: BTreeSet<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        let unfinished: Vec<TestRun> = by_name
            .keys()
            .filter(|n| !done.contains(n.as_str()))
            .map(|n| skip_run(n, "not finished: the run was interrupted (Ctrl-C)", &out))
            .collect();
        runs.extend(unfinished);
    }
    h.progress.finish();
    // Shut the runtime down now: no VM outlives the run.
    drop(rt);
    runs.append(&mut skipped);

    let warn_only = selected.warn_only;
    let results: Vec<report::TestResult> = runs.iter().map(|r| to_result(r, &warn_only)).collect();
    let ctx = report::RunContext {
        platform: sel.platform.clone(),
        version: b.id.clone(),
        accel: accel.as_str().to_string(),
        firmware: o.firmware.as_str().to_string(),
        transport: transport.name().to_string(),
        started,
    };
    report::write_reports(&out.join("reports"), &ctx, &results)?;
    Ok(RunOutcome {
        build: b.id,
        accel,
        firmware: o.firmware,
        transport: transport.name(),
        output_dir: out,
        exit_code: report::exit_code(&results),
        runs,
        results,
        warn_only,
        interrupted,
    })
}

/// The upgrade test, with a VM's share of the ledger, until done or Ctrl-C.
async fn run_upgrade_case(
    h: &Harness,
    ledger: &Ledger,
    case: Option<&upgrade::Case<'_>>,
) -> Option<TestRun> {
    let case = case?;
    let test = async {
        let _lease = match ledger.acquire(case.memory_mib).await {
            Ok(l) => l,
            Err(e) => {
                let mut r = skip_run(upgrade::TEST_NAME, "", &case.dir);
                r.verdict = Verdict::Fail;
                r.output = format!("{e:#}");
                return r;
            }
        };
        h.progress.line(&format!(
            "kola: {}: build {} → build {}",
            upgrade::TEST_NAME,
            case.from.id,
            case.to.id
        ));
        let r = upgrade::run_case(case).await;
        h.progress.inc();
        TestRun {
            name: r.name,
            verdict: match r.outcome {
                report::Outcome::Pass => Verdict::Pass,
                report::Outcome::Skip => Verdict::Skip,
                _ => Verdict::Fail,
            },
            duration: r.duration,
            output: r.output,
            attempt: r.attempt,
            vm: r.vm.unwrap_or_default(),
            console_log: r.console_log.unwrap_or_else(|| case.dir.join("none")),
        }
    };
    tokio::select! {
        r = test => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    }
}

/// The install-media scenarios, each in its own VM with its share of the
/// ledger, until done or Ctrl-C (which kills their VMs).
async fn run_testiso_cases(
    h: &Arc<Harness>,
    ledger: &Ledger,
    cases: Vec<testiso::Case>,
) -> Vec<TestRun> {
    let mut set = tokio::task::JoinSet::new();
    for c in cases {
        let (h, ledger) = (h.clone(), ledger.clone());
        set.spawn(async move {
            let name = c.scenario.name;
            let mut started = std::time::Instant::now();
            let r = match ledger.acquire(c.memory_mib).await {
                Ok(_lease) => {
                    started = std::time::Instant::now();
                    h.progress.line(&format!(
                        "kola: {name}: {} firmware, {} MiB",
                        c.scenario.firmware.as_str(),
                        c.memory_mib
                    ));
                    testiso::run(&c).await
                }
                Err(e) => Err(e),
            };
            h.progress.inc();
            let (verdict, output) = match r {
                Ok(Ok(log)) => (Verdict::Pass, log),
                Ok(Err(why)) => (Verdict::Fail, why),
                Err(e) => (Verdict::Fail, format!("{e:#}")),
            };
            TestRun {
                name: name.to_string(),
                verdict,
                duration: started.elapsed(),
                output,
                attempt: 1,
                vm: name.to_string(),
                console_log: c.console_log(),
            }
        });
    }
    let mut runs = Vec::new();
    let collect = async {
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                runs.push(r);
            }
        }
    };
    tokio::select! {
        _ = collect => {}
        // The set is dropped with this function: its tasks, and their VMs, end.
        _ = tokio::signal::ctrl_c() => {}
    }
    runs
}

/// Splits the selection into the tests this host can run and skip records
/// for the rest (the selection's own skips included).
fn partition_runnable(
    selected: &Selected,
    facts: &builtin::BuildFacts,
    out: &Path,
) -> Result<(Vec<KolaTest>, Vec<TestRun>)> {
    let mut skipped: Vec<TestRun> = selected
        .skipped
        .iter()
        .map(|(n, why)| skip_run(n, why, out))
        .collect();
    let mut to_run = Vec::new();
    for t in selected.run.iter().cloned() {
        let not_here = match &t.body {
            TestBody::Builtin(bt) => builtin::precheck(*bt, facts)?,
            TestBody::External { .. } => None,
        };
        match not_here.or_else(|| harness::unsupported(&t)) {
            Some(why) => skipped.push(skip_run(&t.name, &why, out)),
            None => to_run.push(t),
        }
    }
    Ok((to_run, skipped))
}

/// `--rerun`: every failed test (not warn-only) once more, each in a fresh VM.
async fn rerun_failed(
    h: &Arc<Harness>,
    ledger: Ledger,
    runs: &[TestRun],
    selected: &Selected,
    by_name: &BTreeMap<String, KolaTest>,
) -> Result<Vec<TestRun>> {
    let failed = harness::failed_names(runs, &selected.warn_only);
    if failed.is_empty() {
        return Ok(Vec::new());
    }
    h.progress.add_total(failed.len());
    h.progress.line(&format!(
        "kola: re-running {} failed test(s) in fresh VMs",
        failed.len()
    ));
    // The upgrade test and the install-media scenarios are not re-run: they
    // boot other images than the build's, outside the plans.
    let tests: Vec<KolaTest> = failed
        .iter()
        .filter_map(|n| by_name.get(n).cloned())
        .filter(|t| {
            !matches!(
                t.body,
                TestBody::Builtin(Builtin::Upgrade | Builtin::Testiso(_))
            )
        })
        .collect();
    let plans = harness::rerun_plans(tests, h.default_memory_mib)?;
    Ok(run_collect(h.clone(), ledger, plans).await.0)
}

/// Prepares the output directory: ours is emptied, a foreign non-empty one refused.
pub(crate) fn prepare_out_dir(out: &Path) -> Result<()> {
    const MARK: &str = ".cosa-kola";
    if out.exists() {
        let empty = fs::read_dir(out)?.next().is_none();
        if !empty && !out.join(MARK).exists() {
            bail!(
                "output directory {} is not empty and was not made by cosa kola: choose another --output-dir",
                out.display()
            );
        }
        fs::remove_dir_all(out)?;
    }
    fs::create_dir_all(out)?;
    fs::write(out.join(MARK), "")?;
    Ok(())
}

/// Runs the plans until done or Ctrl-C; on Ctrl-C every VM is killed
/// (their tasks are dropped, and QEMU dies with its `Child`).
async fn run_collect(
    h: Arc<Harness>,
    ledger: Ledger,
    plans: Vec<scheduler::VmPlan>,
) -> (Vec<TestRun>, bool) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut work = tokio::spawn(harness::run_plans(h.clone(), ledger, plans, tx));
    let interrupted = tokio::select! {
        _ = &mut work => false,
        _ = tokio::signal::ctrl_c() => {
            h.progress.line("kola: interrupted: killing every VM");
            work.abort();
            let _ = work.await;
            true
        }
    };
    let mut runs: Vec<TestRun> = Vec::new();
    let mut seen = BTreeSet::new();
    while let Ok(r) = rx.try_recv() {
        // A VM that fails after some tests reported answers only for the rest.
        if seen.insert((r.name.clone(), r.attempt)) {
            runs.push(r);
        }
    }
    (runs, interrupted)
}

fn skip_run(name: &str, why: &str, out: &Path) -> TestRun {
    TestRun {
        name: name.to_string(),
        verdict: Verdict::Skip,
        duration: Duration::ZERO,
        output: why.to_string(),
        attempt: 1,
        vm: String::new(),
        console_log: out.join("none"),
    }
}

fn outcome(r: &TestRun, warn_only: &BTreeSet<String>) -> report::Outcome {
    match r.verdict {
        Verdict::Pass => report::Outcome::Pass,
        Verdict::Skip => report::Outcome::Skip,
        Verdict::Fail if warn_only.contains(&r.name) => report::Outcome::Warn,
        Verdict::Fail => report::Outcome::Fail,
    }
}

fn to_result(r: &TestRun, warn_only: &BTreeSet<String>) -> report::TestResult {
    report::TestResult {
        name: r.name.clone(),
        outcome: outcome(r, warn_only),
        duration: r.duration,
        output: r.output.clone(),
        attempt: r.attempt,
        vm: (!r.vm.is_empty()).then(|| r.vm.clone()),
        console_log: r.console_log.is_file().then(|| r.console_log.clone()),
    }
}
