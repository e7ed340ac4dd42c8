//! `cosa kola run-upgrade`: boot an older build's qemu image, serve a newer build's
//! commit to the guest from the host, upgrade in the guest with ostree, reboot,
//! check, roll back.
//!
//! The newer commit is pulled from the workdir's repo into an archive repo under
//! the output directory, served on the host's loopback, and reached by the guest
//! through a guestfwd at `qemu::HOST_FORWARD_ADDR` (the guest reaches nothing
//! else). In the guest, the remote its deployment's origin names is pointed at
//! that server, and `ostree admin upgrade` pulls and deploys; the image's GRUB
//! reads the menu ostree rewrites (see `image::grub`), so the reboot boots the new
//! deployment. Checks: the booted commit and version are the new build's; a file
//! written to `/etc` before the upgrade survived the three-way merge; the old
//! deployment is still there as the rollback; deploying it again and rebooting
//! boots the old commit (Debian 12's ostree 2022.7 has no `set-default`).
//!
//! An image whose stream configures the remote (`/etc/ostree/remotes.d`, as the
//! systemd variant does with `gpg-verify=true` and the stream's key) keeps that
//! configuration: only its URL is pointed at the host, so the test proves what a
//! machine in the field would accept. With `--gpg-key`, the remote trusts that
//! public key instead; a commit without a good signature by it is refused by the pull.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cmdext::CommandRunExt;
use fs_err as fs;

use crate::builds::History;
use crate::kola::build::BuildUnderTest;
use crate::kola::builtin::{booted_deployment, sh};
use crate::kola::harness;
use crate::kola::httpd::Httpd;
use crate::kola::machine::{Firmware, Machine, MachineSpec, Transport, TransportKind};
use crate::kola::qemu::{self, Accel};
use crate::kola::report::{self, Outcome, TestResult};
use crate::kola::run::{prepare_out_dir, runtime, KVM_PROBE_TIMEOUT};

/// The test's name in the reports.
pub const TEST_NAME: &str = "ostree.upgrade";

/// How long one guest step (a pull and deploy included) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the etc-merge check's file goes.
const MARKER: &str = "/etc/cosa-upgrade-marker";

#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// The build booted first; default: the one before `to` in builds.json.
    pub from: Option<String>,
    /// The build upgraded to; default: the latest.
    pub to: Option<String>,
    pub firmware: Firmware,
    /// `None`: KVM if a probe VM reaches the guest, else TCG.
    pub accel: Option<Accel>,
    pub memory_mib: u64,
    pub boot_timeout: Duration,
    /// Default: the workdir's tmp/kola-upgrade.
    pub output_dir: Option<PathBuf>,
    /// The stream's public key (binary or armored): verify the commit's signature.
    pub gpg_key: Option<PathBuf>,
}

#[derive(Debug)]
pub struct UpgradeOutcome {
    pub from: String,
    pub to: String,
    pub accel: Accel,
    pub firmware: Firmware,
    pub output_dir: PathBuf,
    pub result: TestResult,
    pub exit_code: i32,
}

impl UpgradeOutcome {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "result": self.result.outcome.to_string(),
            "from": self.from,
            "to": self.to,
            "accel": self.accel.as_str(),
            "firmware": self.firmware.as_str(),
            "output_dir": self.output_dir,
            "tests": [{
                "name": self.result.name,
                "result": self.result.outcome.to_string(),
                "duration_secs": self.result.duration.as_secs_f64(),
                "output": self.result.output,
            }],
        })
    }
}

/// The build before `to` in builds.json (newest first).
fn previous_build(wd: &crate::builds::Workdir, to: &str) -> Result<String> {
    let b = History::new(wd.builds_dir()).load()?;
    let ids: Vec<&str> = b.builds.iter().map(|e| e.id.as_str()).collect();
    let i = ids
        .iter()
        .position(|i| *i == to)
        .with_context(|| format!("build {to} is not in builds.json"))?;
    ids.get(i + 1).map(|s| s.to_string()).ok_or_else(|| {
        anyhow!("no build older than {to} to upgrade from: build once more to have two")
    })
}

/// An archive repo at `dir` holding `commit` (with its detached signatures) under
/// each of `refs`, pulled from `src`.
fn export_repo(src: &Path, commit: &str, refs: &[&str], dir: &Path) -> Result<()> {
    let repo = format!("--repo={}", dir.display());
    cmdext::command("ostree")
        .args([&repo, "init", "--mode=archive"])
        .run()
        .with_context(|| format!("creating {}", dir.display()))?;
    cmdext::command("ostree")
        .args([&repo, "pull-local"])
        .arg(src)
        .arg(commit)
        .run()
        .with_context(|| format!("copying commit {commit} into {}", dir.display()))?;
    for r in refs {
        cmdext::command("ostree")
            .args([&repo, "refs", &format!("--create={r}"), "--force", commit])
            .run()?;
    }
    cmdext::command("ostree")
        .args([&repo, "summary", "-u"])
        .run()
        .context("writing the served repo's summary")?;
    Ok(())
}

/// The build before `to` in builds.json that an upgrade test starts from, and why
/// there is none.
pub(crate) fn upgrade_source(to: &BuildUnderTest) -> std::result::Result<BuildUnderTest, String> {
    let id = previous_build(&to.wd, &to.id).map_err(|e| format!("{e:#}"))?;
    let from = BuildUnderTest::open(to.wd.root(), Some(&id)).map_err(|e| format!("{e:#}"))?;
    check_case(&from, to).map_err(|e| format!("{e:#}"))?;
    Ok(from)
}

/// One upgrade test: everything it needs besides the two builds.
pub(crate) struct Case<'a> {
    pub from: &'a BuildUnderTest,
    pub to: &'a BuildUnderTest,
    /// The public key the guest's remote trusts instead of the image's config.
    pub key: Option<Vec<u8>>,
    pub firmware: Firmware,
    pub accel: Accel,
    pub memory_mib: u64,
    pub boot_timeout: Duration,
    pub transport: Transport,
    /// The test's own directory (the served repo, the VM's files).
    pub dir: PathBuf,
}

/// Check what a case needs of the two builds before any VM starts.
pub(crate) fn check_case(from: &BuildUnderTest, to: &BuildUnderTest) -> Result<()> {
    if from.meta.ostree_commit == to.meta.ostree_commit {
        bail!(
            "builds {} and {} have the same commit {}: nothing to upgrade",
            from.id,
            to.id,
            to.meta.ostree_commit
        );
    }
    if from.transport(None)? != TransportKind::Ssh {
        bail!(
            "build {}'s guest is reached through the demo agent and has no ostree CLI: \
             an upgrade test needs a stream whose guests run ostree and sshd (the systemd variant)",
            from.id
        );
    }
    to.meta
        .ostree_ref
        .as_ref()
        .with_context(|| format!("build {} records no ostree ref", to.id))?;
    from.qemu_image()?;
    Ok(())
}

/// Serve `to`'s commit, boot `from`'s image, upgrade, reboot, check, roll back. The
/// result names both builds; a failure quotes the console's tail.
pub(crate) async fn run_case(c: &Case<'_>) -> TestResult {
    let started = Instant::now();
    let vm = "upgrade".to_string();
    let console_log = c.dir.join(&vm).join("console.txt");
    let header = format!(
        "upgrade from build {} (commit {}) to build {} (commit {})",
        c.from.id, c.from.meta.ostree_commit, c.to.id, c.to.meta.ostree_commit
    );
    let (outcome, output) = match run_case_inner(c, &vm).await {
        Ok(Ok(log)) => (Outcome::Pass, format!("{header}\n{log}")),
        Ok(Err(why)) => (Outcome::Fail, format!("{header}: {why}")),
        Err(e) => (Outcome::Fail, format!("{header}: {e:#}")),
    };
    TestResult {
        name: TEST_NAME.to_string(),
        outcome,
        duration: started.elapsed(),
        output,
        attempt: 1,
        vm: Some(vm),
        console_log: console_log.is_file().then_some(console_log),
    }
}

/// `Err`: the test could not be set up; `Ok(Err)`: the guest's part failed (with
/// the console tail).
async fn run_case_inner(c: &Case<'_>, vm: &str) -> Result<std::result::Result<String, String>> {
    let (from, to) = (c.from, c.to);
    let to_ref = to
        .meta
        .ostree_ref
        .clone()
        .with_context(|| format!("build {} records no ostree ref", to.id))?;
    let from_ref = from
        .meta
        .ostree_ref
        .clone()
        .unwrap_or_else(|| to_ref.clone());
    let www = c.dir.join("www");
    fs::create_dir_all(&www)?;
    export_repo(
        &to.wd.repo_path(),
        &to.meta.ostree_commit,
        &[to_ref.as_str(), from_ref.as_str()],
        &www.join("repo"),
    )?;
    let httpd = Httpd::serve(&www)?;
    let spec = MachineSpec::new(
        from.arch,
        vm.to_string(),
        c.dir.join(vm),
        from.qemu_image()?,
        c.accel,
    )
    .firmware(c.firmware)
    .memory(c.memory_mib)
    .transport(c.transport.clone())
    .forwards(vec![httpd.port]);
    let plan = Plan {
        from,
        to,
        port: httpd.port,
        key: c.key.as_deref(),
        boot_timeout: c.boot_timeout,
    };
    let mut m = Machine::start(spec).await?;
    let r = match plan.run(&mut m).await {
        Ok(log) => Ok(log),
        Err(e) => Err(format!("{e:#}; console tail:\n{}", m.console_tail())),
    };
    let _ = m.shutdown(Duration::from_secs(20)).await;
    m.remove_scratch();
    drop(httpd);
    Ok(r)
}

/// Boot `from`, upgrade to `to`, reboot, check, roll back; write the reports.
pub fn run_upgrade(workdir: &Path, o: &UpgradeOptions) -> Result<UpgradeOutcome> {
    let to = BuildUnderTest::open(workdir, o.to.as_deref())?;
    let from_id = match &o.from {
        Some(f) => f.clone(),
        None => {
            previous_build(&to.wd, &to.id).map_err(|e| anyhow!("{e:#}, or name one with --from"))?
        }
    };
    let from = BuildUnderTest::open(workdir, Some(&from_id))?;
    check_case(&from, &to)?;
    qemu::check_host(from.arch, o.firmware)?;
    let key = match &o.gpg_key {
        Some(p) => {
            Some(fs::read(p).with_context(|| format!("reading the GPG key {}", p.display()))?)
        }
        None => None,
    };
    let out = o
        .output_dir
        .clone()
        .unwrap_or_else(|| to.wd.tmp_dir().join("kola-upgrade"));
    prepare_out_dir(&out)?;
    let out = fs::canonicalize(&out)?;
    let transport = Transport::make(TransportKind::Ssh, &out.join("ssh"))?;
    let rt = runtime()?;
    let accel = match o.accel {
        Some(a) => a,
        None => rt.block_on(harness::probe_kvm(
            from.arch,
            &from.qemu_image()?,
            o.firmware,
            &transport,
            &out.join("kvm-probe"),
            KVM_PROBE_TIMEOUT,
        )),
    };
    eprintln!(
        "kola: upgrade from build {} ({}) to {} ({}), {} firmware, accel {}, output {}",
        from.id,
        short(&from.meta.ostree_commit),
        to.id,
        short(&to.meta.ostree_commit),
        o.firmware.as_str(),
        accel.as_str(),
        out.display()
    );
    let started_at = chrono::Utc::now();
    let case = Case {
        from: &from,
        to: &to,
        key,
        firmware: o.firmware,
        accel,
        memory_mib: o.memory_mib,
        boot_timeout: o.boot_timeout,
        transport: transport.clone(),
        dir: out.clone(),
    };
    let result = rt.block_on(run_case(&case));
    drop(rt);
    let ctx = report::RunContext {
        platform: "qemu".into(),
        version: to.id.clone(),
        accel: accel.as_str().to_string(),
        firmware: o.firmware.as_str().to_string(),
        transport: transport.name().to_string(),
        started: started_at,
    };
    let results = vec![result];
    report::write_reports(&out.join("reports"), &ctx, &results)?;
    Ok(UpgradeOutcome {
        from: from.id.clone(),
        to: to.id.clone(),
        accel,
        firmware: o.firmware,
        output_dir: out,
        exit_code: report::exit_code(&results),
        result: results.into_iter().next().expect("one result"),
    })
}

/// Each phase's wall time, for the log's `timings:` line (bench/release reads it).
struct Clock {
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, what: &'static str) {
        let now = Instant::now();
        self.laps.push((what, now - self.last));
        self.last = now;
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .laps
            .iter()
            .map(|(w, d)| format!("{w} {:.1} s", d.as_secs_f64()))
            .collect();
        format!("timings: {}", parts.join(", "))
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

struct Plan<'a> {
    from: &'a BuildUnderTest,
    to: &'a BuildUnderTest,
    port: u16,
    key: Option<&'a [u8]>,
    boot_timeout: Duration,
}

impl Plan<'_> {
    /// Runs a guest step; its failure names `what` and quotes its output.
    async fn step(&self, m: &mut Machine, what: &str, script: &str) -> Result<String> {
        let (ok, text) = sh(m, script, STEP_TIMEOUT).await?;
        if !ok {
            bail!("{what} failed: {}", text.trim());
        }
        Ok(text)
    }

    /// `ostree admin status`. Its exit status is not the verdict: with
    /// `gpg-verify=true` it also fails for a deployment of an unsigned commit (an
    /// older build kept as the rollback) after listing every deployment.
    async fn status(&self, m: &mut Machine) -> Result<String> {
        Ok(sh(m, "ostree admin status 2>&1", STEP_TIMEOUT).await?.1)
    }

    /// The booted deployment's commit and version.
    async fn booted(&self, m: &mut Machine) -> Result<(String, Option<String>)> {
        let status = self.status(m).await?;
        booted_deployment(&status)
            .ok_or_else(|| anyhow!("no booted deployment in `ostree admin status`:\n{status}"))
    }

    async fn run(&self, m: &mut Machine) -> Result<String> {
        let (from, to) = (&self.from.meta, &self.to.meta);
        let mut log = Vec::new();
        let mut clock = Clock::new();
        m.wait_ready(self.boot_timeout, None)
            .await
            .with_context(|| format!("booting build {}", self.from.id))?;
        clock.lap("boot");
        let (booted, _) = self.booted(m).await?;
        if booted != from.ostree_commit {
            bail!(
                "the image of build {} booted commit {booted}, not its own {}",
                self.from.id,
                from.ostree_commit
            );
        }
        log.push(format!(
            "booted build {} ({})",
            self.from.id,
            short(&booted)
        ));

        // The remote the deployment's origin names, pointed at the host.
        let refspec = self
            .step(
                m,
                "reading the deployment's origin",
                "sed -n 's/^refspec=//p' /ostree/deploy/*/deploy/*.origin | head -n1",
            )
            .await?;
        let remote = refspec
            .trim()
            .split_once(':')
            .map(|(r, _)| r.to_string())
            .ok_or_else(|| {
                anyhow!(
                    "the deployment's origin refspec {:?} names no remote",
                    refspec.trim()
                )
            })?;
        let url = format!("http://{}:{}/repo", qemu::HOST_FORWARD_ADDR, self.port);
        // The image's own remote config (the stream's key and gpg-verify) is kept
        // and only its URL pointed at the host; --gpg-key replaces the trust with
        // that key; an image without a config for the remote gets one without
        // verification.
        let conf = format!("/etc/ostree/remotes.d/{remote}.conf");
        let (script, keys) = match self.key {
            Some(key) => (
                format!(
                    "ostree remote delete --if-exists {remote} && \
                     ostree remote add --set=gpg-verify=true {remote} {url} && \
                     printf %s {} | base64 -d >/run/cosa-upgrade-key && \
                     ostree remote gpg-import -k /run/cosa-upgrade-key {remote} >/dev/null",
                    base64::engine::general_purpose::STANDARD.encode(key)
                ),
                "the key given with --gpg-key".to_string(),
            ),
            None => (
                format!(
                    "if [ -f {conf} ]; then sed -i 's|^url=.*|url={url}|' {conf} && cat {conf}; \
                     else ostree remote add --no-gpg-verify {remote} {url}; fi"
                ),
                String::new(),
            ),
        };
        let text = self
            .step(
                m,
                "configuring the remote",
                &format!("{script} && ostree remote show-url {remote} >/dev/null"),
            )
            .await?;
        let setting = |k: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(k)?.strip_prefix('='))
                .map(|v| v.trim().to_string())
        };
        let (verify, keys) = if self.key.is_some() {
            (true, keys)
        } else if text.contains("[remote") {
            let keys = setting("gpgkeypath")
                .map_or("the image's keyring".into(), |p| format!("the image's {p}"));
            (setting("gpg-verify").as_deref() == Some("true"), keys)
        } else {
            (false, "none".into())
        };
        log.push(format!(
            "remote {remote} → {url} (gpg-verify {verify}, keys: {keys})"
        ));
        self.step(
            m,
            "writing the /etc marker",
            &format!("echo 'written before the upgrade' >{MARKER}"),
        )
        .await?;

        clock.lap("configure");
        // Pull and deploy as two steps, so the pull's share of the time is known.
        let what = format!("ostree admin upgrade (pull) to build {}", self.to.id);
        const PULL: &str = "ostree admin upgrade --pull-only 2>&1";
        let out = match self.step(m, &what, PULL).await {
            Ok(out) => out,
            // A fetch cut by the guestfwd relay ("While fetching …: Failed sending
            // data to the peer") is retried once; the pull resumes with what it
            // has, and the log says so. Anything else (a refused signature) fails.
            Err(e) if format!("{e:#}").contains("While fetching") => {
                let why = format!("{e:#}");
                let line = why
                    .lines()
                    .find(|l| l.contains("While fetching"))
                    .unwrap_or_default();
                log.push(format!("pull retried once after a transport error: {line}"));
                self.step(m, &what, PULL).await?
            }
            Err(e) => return Err(e),
        };
        clock.lap("pull");
        let deployed = self
            .step(
                m,
                &format!("ostree admin upgrade (deploy) of build {}", self.to.id),
                "ostree admin upgrade --deploy-only 2>&1",
            )
            .await?;
        clock.lap("deploy");
        log.push(format!(
            "ostree admin upgrade: {}",
            format!("{}\n{}", out.trim(), deployed.trim())
                .trim()
                .replace('\n', "; ")
        ));
        let boot = m
            .reboot(self.boot_timeout)
            .await
            .with_context(|| format!("rebooting into build {}", self.to.id))?;
        clock.lap("reboot");
        let (booted, version) = self.booted(m).await?;
        if booted != to.ostree_commit {
            bail!(
                "after the upgrade the guest booted commit {booted}, not build {}'s {}",
                self.to.id,
                to.ostree_commit
            );
        }
        if version.as_deref() != Some(to.ostree_version.as_str()) {
            bail!(
                "the booted deployment's version is {version:?}, not build {}'s {}",
                self.to.id,
                to.ostree_version
            );
        }
        log.push(format!(
            "booted build {} ({}, version {}) in boot {}",
            self.to.id,
            short(&booted),
            to.ostree_version,
            boot.boot_id
        ));
        let status = self.status(m).await?;
        if !status
            .lines()
            .any(|l| l.contains(&from.ostree_commit) && !l.starts_with("* "))
        {
            bail!(
                "the previous deployment ({}) is gone:\n{status}",
                from.ostree_commit
            );
        }
        self.step(
            m,
            "checking the /etc marker",
            &format!("grep -q 'written before the upgrade' {MARKER}"),
        )
        .await
        .context("the /etc change made before the upgrade did not survive the merge")?;
        log.push("the previous deployment is kept; /etc change kept".into());
        clock.lap("checks");
        if !boot.failed_units.is_empty() {
            bail!(
                "build {} booted with failed units: {:?}",
                self.to.id,
                boot.failed_units
            );
        }

        // Roll back: the previous deployment's commit deployed again, as default.
        self.step(
            m,
            &format!("deploying build {}'s commit again", self.from.id),
            &format!("ostree admin deploy --retain {} 2>&1", from.ostree_commit),
        )
        .await?;
        m.reboot(self.boot_timeout)
            .await
            .with_context(|| format!("rebooting back into build {}", self.from.id))?;
        let (booted, _) = self.booted(m).await?;
        if booted != from.ostree_commit {
            bail!(
                "after the rollback the guest booted {booted}, not build {}'s {}",
                self.from.id,
                from.ostree_commit
            );
        }
        clock.lap("rollback");
        log.push(format!("rolled back: booted build {} again", self.from.id));
        log.push(clock.summary());
        Ok(log.join("\n"))
    }
}
