//! `cosa kola run|list` and `cosa run`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::mpsc;

use crate::arch::Arch;
use crate::builds::{History, Meta, Workdir};
use crate::cli::{
    GlobalOpts, KolaAction, KolaListOpts, KolaOpts, KolaRunOpts, KolaSelectOpts, RunOpts,
};
use crate::kola::builtin::{self, BuildFacts};
use crate::kola::harness::{self, Harness, TestRun, Verdict};
use crate::kola::kernelboot;
use crate::kola::machine::{ConsoleMode, Machine, MachineSpec};
use crate::kola::qemu::{self, Accel};
use crate::kola::report;
use crate::kola::scheduler::{self, Ledger};
use crate::kola::select::{self, Denylist, Selection, Shard, TagFilter};
use crate::kola::test::{self, KolaTest, TestBody};
use crate::logging::Progress;

/// How long the KVM probe may take to reach the guest agent.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(g: &GlobalOpts, o: &KolaOpts) -> Result<()> {
    match &o.action {
        KolaAction::Run(r) => kola_run(g, r),
        KolaAction::List(l) => kola_list(g, l),
    }
}

/// The build under test and where its things are.
struct BuildUnderTest {
    wd: Workdir,
    id: String,
    arch: Arch,
    dir: PathBuf,
    meta: Meta,
}

fn open_build(g: &GlobalOpts, build: Option<&str>) -> Result<BuildUnderTest> {
    let wd = Workdir::open(&g.workdir)?;
    let history = History::new(wd.builds_dir());
    let id = history.resolve_id(build)?;
    let arch = Arch::host()?;
    let dir = history.build_dir(&id, arch.name());
    let meta = history.load_meta(&id, arch.name())?;
    Ok(BuildUnderTest {
        wd,
        id,
        arch,
        dir,
        meta,
    })
}

impl BuildUnderTest {
    /// The build's qemu image; a clear error when it was never made.
    fn qemu_image(&self) -> Result<PathBuf> {
        let p = self
            .meta
            .images
            .get("qemu")
            .map(|a| &a.path)
            .ok_or_else(|| {
                anyhow!(
                    "build {} has no qemu image: run `cosa buildextend-qemu` (or `cosa osbuild qemu`) first",
                    self.id
                )
            })?;
        let p = self.dir.join(p);
        if !p.is_file() {
            bail!(
                "{} is listed in meta.json but missing (compressed? run `cosa decompress`, or `cosa buildextend-qemu` again)",
                p.display()
            );
        }
        Ok(p)
    }

    /// The stream name: the last component of the ref (`demo/x86_64/stable`).
    fn stream(&self) -> Option<String> {
        self.meta
            .ostree_ref
            .as_deref()
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_string)
    }

    fn facts(&self) -> BuildFacts {
        let lock = self
            .dir
            .join(format!("manifest-lock.generated.{}.json", self.arch));
        BuildFacts {
            overrides_rpm: self.wd.overrides_rpm_dir(),
            overrides_active: self.meta.overrides_active.unwrap_or(false),
            lockfile: lock.is_file().then_some(lock),
        }
    }
}

fn selection(b: &BuildUnderTest, s: &KolaSelectOpts) -> Result<Selection> {
    let denylist = match (&s.denylist, s.no_denylist) {
        (_, true) => None,
        (Some(p), false) => Some(Denylist::load(p)?),
        (None, false) => {
            let p = b.wd.config_dir().join("kola-denylist.yaml");
            if p.is_file() {
                Some(Denylist::load(&p)?)
            } else {
                None
            }
        }
    };
    Ok(Selection {
        patterns: s.patterns.clone(),
        tags: s
            .tags
            .iter()
            .map(|t| TagFilter::parse(t))
            .collect::<Result<_>>()?,
        platform: s.platform.clone(),
        arch: b.arch.name().to_string(),
        // No build (kola list in a fresh workdir): kola's default distro.
        distro: Some(b.meta.name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("fcos")
            .to_string(),
        stream: b.stream(),
        denylist,
        shard: s.shard.as_deref().map(Shard::parse).transpose()?,
    })
}

fn select_tests(b: &BuildUnderTest, s: &KolaSelectOpts) -> Result<(select::Selected, Selection)> {
    let sel = selection(b, s)?;
    let mut all = test::builtin_tests();
    all.extend(test::discover(&b.wd.config_dir(), &s.exttests)?);
    let today = chrono::Utc::now().date_naive();
    Ok((select::select(all, &sel, today)?, sel))
}

/// Listing needs no build: without one, no stream-scoped denylist entries apply.
fn open_for_list(g: &GlobalOpts, build: Option<&str>) -> Result<BuildUnderTest> {
    let wd = Workdir::open(&g.workdir)?;
    if build.is_none() && History::new(wd.builds_dir()).load()?.builds.is_empty() {
        return Ok(BuildUnderTest {
            wd,
            id: "none".into(),
            arch: Arch::host()?,
            dir: PathBuf::new(),
            meta: Meta::default(),
        });
    }
    open_build(g, build)
}

fn kola_list(g: &GlobalOpts, o: &KolaListOpts) -> Result<()> {
    let b = open_for_list(g, o.select.build.as_deref())?;
    let (selected, _) = select_tests(&b, &o.select)?;
    if o.json {
        let v: Vec<serde_json::Value> = selected
            .run
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "tags": t.meta.tags,
                    "exclusive": t.meta.exclusive,
                    "timeout_secs": t.meta.timeout.as_secs(),
                    "description": t.meta.description,
                    "warn_only": selected.warn_only.contains(&t.name),
                })
            })
            .chain(
                selected
                    .skipped
                    .iter()
                    .map(|(n, why)| serde_json::json!({"name": n, "skipped": why})),
            )
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<10} {:<24} DESCRIPTION",
        "NAME", "EXCLUSIVE", "TAGS"
    );
    for t in &selected.run {
        println!(
            "{:<40} {:<10} {:<24} {}",
            t.name,
            t.meta.exclusive,
            t.meta.tags.join(","),
            t.meta.description.as_deref().unwrap_or("")
        );
    }
    for (n, why) in &selected.skipped {
        println!("{n:<40} skipped: {why}");
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Prepares the output directory: ours is emptied, a foreign non-empty one refused.
fn prepare_out_dir(out: &Path) -> Result<()> {
    const MARK: &str = ".cosa-kola";
    if out.exists() {
        let empty = std::fs::read_dir(out)?.next().is_none();
        if !empty && !out.join(MARK).exists() {
            bail!(
                "output directory {} is not empty and was not made by cosa kola: choose another --output-dir",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join(MARK), "")?;
    Ok(())
}

fn kola_run(g: &GlobalOpts, o: &KolaRunOpts) -> Result<()> {
    let b = open_build(g, o.select.build.as_deref())?;
    let image = match &o.qemu_image {
        Some(p) if p.is_file() => std::fs::canonicalize(p)?,
        Some(p) => bail!("--qemu-image {}: no such file", p.display()),
        None => b.qemu_image()?,
    };
    qemu::check_host(o.qemu_firmware)?;
    let (selected, sel) = select_tests(&b, &o.select)?;
    let out = match &o.output_dir {
        Some(d) => d.clone(),
        None => b.wd.tmp_dir().join("kola"),
    };
    prepare_out_dir(&out)?;
    let out = std::fs::canonicalize(&out)?;
    let budget = scheduler::ram_budget_mib()?;
    let parallel = scheduler::parallelism(&o.parallel, budget, o.qemu_memory)?;

    let mut skipped: Vec<TestRun> = selected
        .skipped
        .iter()
        .map(|(n, why)| skip_run(n, why, &out))
        .collect();
    let mut to_run: Vec<KolaTest> = Vec::new();
    let facts = b.facts();
    for t in selected.run.iter().cloned() {
        let not_here = match &t.body {
            TestBody::Builtin(bt) => builtin::precheck(*bt, &facts)?,
            TestBody::External { .. } => None,
        };
        match not_here.or_else(|| harness::unsupported(&t)) {
            Some(why) => skipped.push(skip_run(&t.name, &why, &out)),
            None => to_run.push(t),
        }
    }
    let started = chrono::Utc::now();
    let rt = runtime()?;
    let accel = match o.qemu_accel.as_str() {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ => rt.block_on(harness::probe_kvm(
            &image,
            o.qemu_firmware,
            &out.join("kvm-probe"),
            KVM_PROBE_TIMEOUT,
        )),
    };
    let needs_kargs = to_run.iter().any(|t| {
        !t.meta.append_kernel_args.is_empty() || !t.meta.append_firstboot_kernel_args.is_empty()
    });
    let kernel_boot = if needs_kargs {
        Some(
            kernelboot::extract(&image, &out.join("kernel-boot")).context(
                "extracting the image's kernel for tests with appendKernelArgs (direct kernel boot)",
            )?,
        )
    } else {
        None
    };
    let progress = Progress::new(to_run.len(), "tests", o.json);
    progress.line(&format!(
        "kola: {} test(s) to run, {} skipped; build {}, {} firmware, accel {}, -j {parallel}, output {}",
        to_run.len(),
        skipped.len(),
        b.id,
        firmware_name(o.qemu_firmware),
        accel.as_str(),
        out.display()
    ));
    let h = Arc::new(Harness {
        out_dir: out.clone(),
        image,
        firmware: o.qemu_firmware,
        accel,
        default_memory_mib: o.qemu_memory,
        boot_timeout: Duration::from_secs(o.boot_timeout),
        facts,
        kernel_boot,
        console_checks: !sel.skip_console_warnings(),
        progress,
    });
    let ledger = Ledger::new(parallel, budget);
    let by_name: BTreeMap<String, KolaTest> =
        to_run.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let plans = scheduler::plan(to_run, o.qemu_memory, 1)?;
    let (mut runs, interrupted) = rt.block_on(run_collect(h.clone(), ledger.clone(), plans));
    if o.rerun && !interrupted {
        let failed = harness::failed_names(&runs, &selected.warn_only);
        if !failed.is_empty() {
            h.progress.add_total(failed.len());
            h.progress.line(&format!(
                "kola: re-running {} failed test(s) in fresh VMs",
                failed.len()
            ));
            let tests: Vec<KolaTest> = failed
                .iter()
                .filter_map(|n| by_name.get(n).cloned())
                .collect();
            let plans = harness::rerun_plans(tests, o.qemu_memory)?;
            let (more, _) = rt.block_on(run_collect(h.clone(), ledger, plans));
            runs.extend(more);
        }
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
    runs.extend(skipped);

    let results: Vec<report::TestResult> = runs
        .iter()
        .map(|r| to_result(r, &selected.warn_only))
        .collect();
    let ctx = report::RunContext {
        platform: sel.platform.clone(),
        version: b.id.clone(),
        accel: accel.as_str().to_string(),
        firmware: firmware_name(o.qemu_firmware).to_string(),
        started,
    };
    report::write_reports(&out.join("reports"), &ctx, &results)?;
    let code = report::exit_code(&results);
    if o.json {
        let v = serde_json::json!({
            "result": if code == 0 { "PASS" } else if code == 77 { "WARN" } else { "FAIL" },
            "interrupted": interrupted,
            "build": b.id,
            "accel": accel.as_str(),
            "firmware": firmware_name(o.qemu_firmware),
            "output_dir": out,
            "tests": runs.iter().map(|r| serde_json::json!({
                "name": r.name,
                "result": verdict_name(r, &selected.warn_only),
                "attempt": r.attempt,
                "duration_secs": r.duration.as_secs_f64(),
                "vm": r.vm,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", report::summary_table(&results));
        println!("reports: {}", out.join("reports").display());
    }
    if interrupted {
        eprintln!("kola: interrupted; the report holds the tests that finished");
        std::process::exit(130);
    }
    if code != 0 {
        std::process::exit(code);
    }
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

fn firmware_name(f: crate::cli::Firmware) -> &'static str {
    match f {
        crate::cli::Firmware::Bios => "bios",
        crate::cli::Firmware::Uefi => "uefi",
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

fn verdict_name(r: &TestRun, warn_only: &BTreeSet<String>) -> &'static str {
    match outcome(r, warn_only) {
        report::Outcome::Pass => "PASS",
        report::Outcome::Fail => "FAIL",
        report::Outcome::Skip => "SKIP",
        report::Outcome::Warn => "WARN",
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

/// `cosa run`: boot the build's qemu image; print the agent's ready report
/// and power off, or (`-c`) hand the serial console to this terminal.
pub fn run_vm(g: &GlobalOpts, o: &RunOpts) -> Result<()> {
    let b = open_build(g, o.build.as_deref())?;
    let image = b.qemu_image()?;
    qemu::check_host(o.qemu_firmware)?;
    let ignition = match &o.ignition {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}: not a JSON Ignition config", p.display()))?,
        None => serde_json::json!({"ignition": {"version": "3.4.0"}}),
    };
    let dir = b.wd.tmp_dir().join(format!("run-{}", std::process::id()));
    let rt = runtime()?;
    let accel = rt.block_on(harness::probe_kvm(
        &image,
        o.qemu_firmware,
        &dir.join("kvm-probe"),
        KVM_PROBE_TIMEOUT,
    ));
    let spec = MachineSpec {
        name: format!("run-{}", b.id),
        dir: dir.clone(),
        image,
        accel,
        firmware: o.qemu_firmware,
        memory_mib: o.memory,
        min_disk_gib: None,
        additional_disks: Vec::new(),
        ignition: Some(ignition),
        kernel_boot: None,
        append_kernel_args: Vec::new(),
        append_firstboot_kernel_args: Vec::new(),
        console: if o.console {
            ConsoleMode::Terminal
        } else {
            ConsoleMode::Logged
        },
    };
    let result = rt.block_on(async {
        let mut m = Machine::start(spec).await?;
        if o.console {
            eprintln!(
                "cosa run: build {} ({}), serial console below; Ctrl-A x quits QEMU; agent channel {}",
                b.id,
                accel.as_str(),
                dir.join("agent.sock").display()
            );
            let how = m.wait_exit().await?;
            eprintln!("cosa run: QEMU {how}");
            return Ok(());
        }
        let ready = m.wait_ready(Duration::from_secs(300), None).await?;
        println!("{}", serde_json::to_string_pretty(&ready)?);
        m.agent_poweroff().await?;
        m.shutdown(Duration::from_secs(30)).await
    });
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
