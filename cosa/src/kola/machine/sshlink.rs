//! The SSH side of a [`Machine`]: readiness, commands and tests over the
//! OpenSSH client, as upstream kola drives its guests.
//!
//! - Ready: SSH answers as `core`, and `systemctl is-system-running --wait`
//!   says the boot finished; the failed units are recorded.
//! - A test is copied with its `data/` to `/var/lib/cosa-kola/tests/NAME`
//!   and run as root in a transient unit (`systemd-run --wait --pipe`), its
//!   output streamed back over the connection.
//! - Reboots follow autopkgtest: `/tmp/autopkgtest-reboot MARK` (or
//!   `-prepare MARK` and a reboot of the test's own) leaves the mark in
//!   `/var/lib/cosa-kola/reboot-mark`; the harness waits for the next boot
//!   and runs the test again with `AUTOPKGTEST_REBOOT_MARK=MARK`.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fs_err as fs;
use tokio::process::Child;
use tokio::time::Instant;

use super::launch::{describe_exit, Link};
use super::{BootInfo, JobFate, JobOutput, Machine};
use crate::kola::checks;
use crate::kola::protocol::{ExitStatus, FailedUnit, JobEnd};
use crate::kola::ssh::{self, quote, Captured, Ended};

/// The harness's directory in the guest: persistent across reboots.
const STATE_DIR: &str = "/var/lib/cosa-kola";
/// Where a test that asked for a reboot leaves its mark.
const REBOOT_MARK: &str = "/var/lib/cosa-kola/reboot-mark";
/// How long the guest gets to answer the harness's own short questions.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

const AUTOPKGTEST_REBOOT_PREPARE: &str = r#"#!/bin/sh
# cosa kola (SSH transport): the test reboots the machine itself; run it
# again on the next boot with AUTOPKGTEST_REBOOT_MARK=MARK.
set -eu
[ $# -eq 1 ] || { echo "usage: autopkgtest-reboot-prepare MARK" >&2; exit 2; }
mkdir -p /var/lib/cosa-kola
printf '%s\n' "$1" > /var/lib/cosa-kola/reboot-mark.new
mv /var/lib/cosa-kola/reboot-mark.new /var/lib/cosa-kola/reboot-mark
sync
"#;

const AUTOPKGTEST_REBOOT: &str = r#"#!/bin/sh
# cosa kola (SSH transport): reboot now, then run the test again with
# AUTOPKGTEST_REBOOT_MARK=MARK.
set -eu
[ $# -eq 1 ] || { echo "usage: autopkgtest-reboot MARK" >&2; exit 2; }
/tmp/autopkgtest-reboot-prepare "$1"
systemctl reboot
# systemd stops the test on the way down.
exec sleep infinity
"#;

/// One boot's SSH connection (its master process) and where to reach it.
pub(crate) struct SshLink {
    target: ssh::Target,
    master: Option<Child>,
    /// Where the current boot's console output starts (scanned for fatal lines
    /// while connecting).
    watch_from: usize,
    /// Holds the control socket: a short path under the system's temp dir.
    _sockets: tempfile::TempDir,
}

impl SshLink {
    pub(crate) fn target(&self) -> &ssh::Target {
        &self.target
    }

    pub(super) fn new(port: u16, key: &ssh::KeyPair, log: &Path) -> Result<SshLink> {
        let dir = tempfile::Builder::new()
            .prefix("cosa-ssh-")
            .tempdir()
            .context("making a directory for the SSH control socket")?;
        Ok(SshLink {
            target: ssh::Target {
                port,
                key: key.private.clone(),
                control: dir.path().join("c"),
                log: log.to_path_buf(),
            },
            master: None,
            watch_from: 0,
            _sockets: dir,
        })
    }

    /// Ends the master connection (the guest rebooted, or the VM ends).
    pub(super) async fn disconnect(&mut self) {
        if let Some(mut m) = self.master.take() {
            let _ = m.kill().await;
        }
        let _ = fs::remove_file(&self.target.control);
    }

    /// How to reach the guest by hand.
    pub(crate) fn shown(&self) -> String {
        self.target.shown()
    }
}

/// How a remote command went, as far as the VM is concerned.
enum Remote {
    Done(Captured),
    /// QEMU exited while the command ran.
    VmLost(String),
    /// No SSH connection could be made by the deadline.
    Unreachable(String),
    /// The console shows the boot ended (the lines that say so).
    BootFailed(String),
}

fn exit_status(s: &std::process::ExitStatus) -> ExitStatus {
    ExitStatus {
        code: s.code(),
        signal: s.signal(),
        timed_out: false,
    }
}

/// `sudo -n -- ARGV…` for the remote shell.
fn as_root(argv: &[&str]) -> String {
    let mut s = String::from("sudo -n --");
    for a in argv {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

/// The failed units `systemctl list-units --state=failed --plain --no-legend` lists.
fn parse_failed_units(text: &str) -> Vec<FailedUnit> {
    text.lines()
        .filter_map(|l| {
            // Without --plain, a bullet comes first.
            let mut w = l.split_whitespace().skip_while(|w| *w == "●");
            let name = w.next()?.to_string();
            // LOAD ACTIVE SUB, then the description.
            let rest: Vec<&str> = w.collect();
            let (states, desc) = rest.split_at(rest.len().min(3));
            Some(FailedUnit {
                name,
                reason: format!("{} ({})", states.join("/"), desc.join(" ")),
            })
        })
        .collect()
}

/// The test's bundle under `test/` and the autopkgtest helpers under `bin/`, one tar.
fn upload_tar(bundle: &[u8]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(bundle);
    for e in a.entries().context("reading the test bundle")? {
        let mut e = e?;
        let path = Path::new("test").join(e.path()?);
        let mut h = e.header().clone();
        b.append_data(&mut h, path, &mut e)?;
    }
    for (name, body) in [
        ("bin/autopkgtest-reboot", AUTOPKGTEST_REBOOT),
        ("bin/autopkgtest-reboot-prepare", AUTOPKGTEST_REBOOT_PREPARE),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, body.as_bytes())?;
    }
    Ok(b.into_inner()?)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Machine {
    fn ssh_link(&mut self) -> Result<&mut SshLink> {
        match &mut self.link {
            Link::Ssh(l) => Ok(l),
            Link::Agent(_) => Err(anyhow!("internal: {} has no SSH link", self.spec.name)),
        }
    }

    /// Runs `remote` as `core` through the boot's master connection (made
    /// first if there is none), until it exits, `deadline` passes, or QEMU ends.
    async fn remote(
        &mut self,
        remote: &str,
        stdin: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<Remote> {
        self.note(&format!("ssh> {remote}"));
        let Link::Ssh(link) = &mut self.link else {
            bail!("internal: {} has no SSH link", self.spec.name);
        };
        if link.master.is_none() {
            let console = self.spec.dir.join("console.txt");
            let master = tokio::select! {
                m = link.target.connect(deadline) => m,
                s = self.child.wait() => return Ok(Remote::VmLost(format!("QEMU {}", describe_exit(s)))),
                f = watch_fatal(&console, link.watch_from) => {
                    self.note(&format!("ssh< the boot failed: {f}"));
                    return Ok(Remote::BootFailed(f));
                }
            };
            match master {
                Ok(m) => link.master = Some(m),
                Err(e) => {
                    let why = format!("{e:#}");
                    self.note(&format!("ssh< {why}"));
                    return Ok(Remote::Unreachable(why));
                }
            }
        }
        let cmd = link.target.command(remote);
        let r = tokio::select! {
            r = ssh::capture(cmd, stdin, deadline) => Remote::Done(r?),
            s = self.child.wait() => Remote::VmLost(format!("QEMU {}", describe_exit(s))),
        };
        match &r {
            Remote::Done(c) => {
                if c.connection_failed() {
                    link.disconnect().await;
                }
                let ended = match &c.ended {
                    Ended::Exited(s) => s.to_string(),
                    Ended::TimedOut => "timed out".into(),
                };
                let err = c.stderr_text();
                self.note(&format!(
                    "ssh< {ended}, {} bytes of stdout{}",
                    c.stdout.len(),
                    if err.is_empty() {
                        String::new()
                    } else {
                        format!("; stderr: {}", checks_tail(&err))
                    }
                ));
            }
            Remote::VmLost(why) | Remote::Unreachable(why) | Remote::BootFailed(why) => {
                self.note(&format!("ssh< {why}"))
            }
        }
        Ok(r)
    }

    /// SSH answers in a boot other than `previous_boot` and systemd finished
    /// starting it.
    pub(super) async fn ssh_wait_ready(
        &mut self,
        within: Duration,
        previous_boot: Option<&str>,
    ) -> Result<BootInfo> {
        const PROBE: &str = "cat /proc/sys/kernel/random/boot_id; uname -r; cat /proc/cmdline; \
             systemctl is-system-running --wait; \
             systemctl list-units --state=failed --plain --no-legend --no-pager";
        let deadline = Instant::now() + within;
        let mut why = String::from("no answer yet");
        let from = self.console_len();
        self.ssh_link()?.watch_from = from;
        while Instant::now() < deadline {
            let c = match self.remote(PROBE, None, deadline).await {
                Ok(Remote::Done(c)) => c,
                Ok(Remote::VmLost(how)) => {
                    return Err(anyhow!(
                        "{}: {how} before it was reachable over SSH; console tail:\n{}",
                        self.spec.name,
                        self.console_tail()
                    ))
                }
                Ok(Remote::Unreachable(e)) => {
                    why = e;
                    break;
                }
                Ok(Remote::BootFailed(lines)) => {
                    return Err(anyhow!(
                        "{}: the boot failed before SSH was ready: {lines}; console tail:\n{}",
                        self.spec.name,
                        self.console_tail()
                    ))
                }
                Err(e) => return Err(e),
            };
            if matches!(c.ended, Ended::TimedOut) {
                why = "SSH answered, but systemd did not finish starting the system".into();
                break;
            }
            if c.connection_failed() {
                why = format!("ssh: {}", c.stderr_text());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let text = c.stdout_text();
            let mut lines = text.lines();
            let boot_id = lines.next().unwrap_or_default().trim().to_string();
            if boot_id.is_empty() || Some(boot_id.as_str()) == previous_boot {
                // Still the boot that is going down.
                self.ssh_link()?.disconnect().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let info = BootInfo {
                boot_id,
                kernel_release: lines.next().unwrap_or_default().trim().to_string(),
                cmdline: lines.next().unwrap_or_default().trim().to_string(),
                agent_version: None,
                system_state: lines.next().map(|s| s.trim().to_string()),
                failed_units: parse_failed_units(&lines.collect::<Vec<_>>().join("\n")),
            };
            let shown = self.ssh_link()?.shown();
            self.note(&format!(
                "ready over SSH ({shown}): boot {}, system {}",
                info.boot_id,
                info.system_state.as_deref().unwrap_or("?")
            ));
            self.boots += 1;
            self.ready = Some(info.clone());
            return Ok(info);
        }
        Err(anyhow!(
            "{}: the guest was not ready over SSH within {} s ({why}); console tail:\n{}",
            self.spec.name,
            within.as_secs(),
            self.console_tail()
        ))
    }

    /// Runs `argv` as root.
    pub(super) async fn ssh_exec(&mut self, argv: &[&str], within: Duration) -> Result<JobOutput> {
        let r = self
            .remote(&as_root(argv), None, Instant::now() + within)
            .await?;
        let mut out = JobOutput::timed_out();
        out.fate = match r {
            Remote::VmLost(why) | Remote::Unreachable(why) | Remote::BootFailed(why) => {
                JobFate::VmLost(why)
            }
            Remote::Done(c) => {
                let fate = match &c.ended {
                    Ended::TimedOut => JobFate::TimedOut,
                    Ended::Exited(_) if c.connection_failed() => {
                        JobFate::VmLost(format!("SSH failed: {}", c.stderr_text()))
                    }
                    Ended::Exited(s) => JobFate::Ended(JobEnd::Exit(exit_status(s))),
                };
                out.stdout = c.stdout;
                out.stderr = c.stderr;
                fate
            }
        };
        Ok(out)
    }

    /// The units that failed so far in this boot.
    pub async fn failed_units(&mut self) -> Vec<FailedUnit> {
        if !matches!(self.link, Link::Ssh(_)) {
            // The agent reports them with `ready`.
            return Vec::new();
        }
        let q = "systemctl list-units --state=failed --plain --no-legend --no-pager";
        match self.remote(q, None, Instant::now() + PROBE_TIMEOUT).await {
            Ok(Remote::Done(c)) if c.ok() => parse_failed_units(&c.stdout_text()),
            _ => Vec::new(),
        }
    }

    /// Copies a test and runs it as root in a transient unit, through any
    /// number of autopkgtest reboots, until it ends or `timeout` passes.
    pub(super) async fn ssh_run_test(
        &mut self,
        name: &str,
        exec: &str,
        bundle: Vec<u8>,
        timeout: Duration,
    ) -> Result<JobOutput> {
        let deadline = Instant::now() + timeout;
        let dir = format!("{STATE_DIR}/tests/{}", sanitize(name));
        let upload = upload_tar(&bundle)?;
        let id = self.job_id("t");
        let mut out = JobOutput::timed_out();
        let mut mark: Option<String> = None;
        loop {
            // Every boot: /tmp does not keep the helpers across reboots.
            let install = format!(
                "set -e; rm -rf {d}; mkdir -p {d}; tar -x --no-same-owner -C {d} -f -; \
                 install -m 0755 {d}/bin/autopkgtest-reboot {d}/bin/autopkgtest-reboot-prepare /tmp/",
                d = quote(&dir)
            );
            match self
                .remote(
                    &as_root(&["sh", "-c", &install]),
                    Some(upload.clone()),
                    deadline,
                )
                .await?
            {
                Remote::Done(c) if c.ok() => {}
                Remote::Done(c) => {
                    out.fate = JobFate::Ended(JobEnd::Error(format!(
                        "copying the test to {dir} in the guest failed: {}",
                        c.stderr_text()
                    )));
                    return Ok(out);
                }
                Remote::VmLost(why) | Remote::Unreachable(why) | Remote::BootFailed(why) => {
                    out.fate = JobFate::VmLost(why);
                    return Ok(out);
                }
            }
            let before = self.ready.as_ref().map(|r| r.boot_id.clone());
            let mut run = format!(
                "sudo -n systemd-run --quiet --wait --pipe --collect --service-type=exec \
                 --unit=kola-runext-{id}-{boot} -p WorkingDirectory={d}/test \
                 -E KOLA_TEST={n} -E KOLA_EXT_DATA={d}/test/data -E AUTOPKGTEST_TMP=/var/tmp",
                boot = self.boots,
                d = quote(&dir),
                n = quote(name),
            );
            if let Some(m) = &mark {
                run.push_str(&format!(" -E AUTOPKGTEST_REBOOT_MARK={}", quote(m)));
            }
            run.push_str(&format!(" -- {}/test/{}", quote(&dir), quote(exec)));
            let ran = match self.remote(&run, None, deadline).await? {
                Remote::Done(c) => {
                    out.stdout.extend_from_slice(&c.stdout);
                    out.stderr.extend_from_slice(&c.stderr);
                    if matches!(c.ended, Ended::TimedOut) {
                        out.fate = JobFate::TimedOut;
                        return Ok(out);
                    }
                    Some(c)
                }
                // A directly booted kernel ends QEMU when the guest reboots.
                Remote::VmLost(_) if self.spec.kernel_boot.is_some() => None,
                // Gone with the reboot the test asked for (or not: see below).
                Remote::Unreachable(_) => None,
                Remote::VmLost(why) | Remote::BootFailed(why) => {
                    out.fate = JobFate::VmLost(why);
                    return Ok(out);
                }
            };
            // Did the test ask for a reboot, or is the guest going down?
            let (same_boot, pending) = if ran.is_some() {
                self.boot_and_mark(before.as_deref(), deadline).await?
            } else {
                (false, None)
            };
            if let (Some(c), true, None) = (&ran, same_boot, &pending) {
                out.fate = match &c.ended {
                    Ended::Exited(_) if c.connection_failed() => JobFate::VmLost(format!(
                        "the SSH connection dropped during the test: {}",
                        c.stderr_text()
                    )),
                    Ended::Exited(s) => JobFate::Ended(JobEnd::Exit(exit_status(s))),
                    Ended::TimedOut => JobFate::TimedOut,
                };
                return Ok(out);
            }
            if let Err(e) = self.ssh_follow_reboot(before.as_deref(), deadline).await {
                out.fate = JobFate::VmLost(format!("{e:#}"));
                return Ok(out);
            }
            let take = format!(
                "sudo -n sh -c {}",
                quote(&format!("cat {REBOOT_MARK} && rm -f {REBOOT_MARK}"))
            );
            match self.remote(&take, None, deadline).await? {
                Remote::Done(c) if c.ok() => {
                    let m = c.stdout_text().trim().to_string();
                    out.reboots.push(m.clone());
                    mark = Some(m);
                    if let Some(r) = &self.ready {
                        out.findings.extend(checks::failed_units(&r.failed_units));
                    }
                }
                _ => {
                    out.fate = JobFate::VmLost(
                        "the guest rebooted during the test, which did not ask for it (no autopkgtest-reboot mark)"
                            .into(),
                    );
                    return Ok(out);
                }
            }
        }
    }

    /// After a test's command ended: (still the boot `before`, the reboot mark if one is pending).
    async fn boot_and_mark(
        &mut self,
        before: Option<&str>,
        deadline: Instant,
    ) -> Result<(bool, Option<String>)> {
        let q =
            format!("cat /proc/sys/kernel/random/boot_id; cat {REBOOT_MARK} 2>/dev/null || true");
        let within = deadline.min(Instant::now() + PROBE_TIMEOUT);
        Ok(match self.remote(&q, None, within).await? {
            Remote::Done(c) if c.ok() => {
                let text = c.stdout_text();
                let mut lines = text.lines();
                let same = lines.next().map(str::trim) == before;
                let mark = lines
                    .next()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string);
                (same, mark)
            }
            // No answer: the guest is going down.
            _ => (false, None),
        })
    }

    /// Waits for the boot after `before`, starting QEMU again when the
    /// kernel was booted directly (QEMU ended with the guest's reboot).
    async fn ssh_follow_reboot(&mut self, before: Option<&str>, deadline: Instant) -> Result<()> {
        self.ssh_link()?.disconnect().await;
        if self.spec.kernel_boot.is_some() {
            let within = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(within, self.child.wait())
                .await
                .is_err()
            {
                bail!("the guest did not go down for its reboot");
            }
            self.note("QEMU exited for the test's reboot; starting the next boot");
            self.relaunch().await?;
        }
        let within = deadline.saturating_duration_since(Instant::now());
        self.ssh_wait_ready(within, before).await.map(drop)
    }

    /// Reboots the guest with systemd and waits until it is ready in the next boot.
    pub(super) async fn ssh_reboot(&mut self, within: Duration) -> Result<BootInfo> {
        let deadline = Instant::now() + within;
        let before = self.ready.as_ref().map(|r| r.boot_id.clone());
        if let Remote::Done(c) = self
            .remote(
                "sudo -n systemctl --no-block reboot",
                None,
                Instant::now() + PROBE_TIMEOUT,
            )
            .await?
        {
            if !c.ok() {
                bail!(
                    "{}: systemctl reboot failed: {}",
                    self.spec.name,
                    c.stderr_text()
                );
            }
        }
        self.ssh_follow_reboot(before.as_deref(), deadline)
            .await
            .with_context(|| format!("{}: rebooting", self.spec.name))?;
        self.ready
            .clone()
            .with_context(|| format!("{}: no boot recorded after the reboot", self.spec.name))
    }

    /// Asks the guest to power off; does not wait.
    pub(super) async fn ssh_poweroff(&mut self) -> Result<()> {
        match self
            .remote(
                "sudo -n systemctl --no-block poweroff",
                None,
                Instant::now() + PROBE_TIMEOUT,
            )
            .await?
        {
            Remote::Done(c) if c.ok() => Ok(()),
            Remote::Done(c) => Err(anyhow!(
                "{}: systemctl poweroff failed: {}",
                self.spec.name,
                c.stderr_text()
            )),
            Remote::VmLost(_) | Remote::Unreachable(_) | Remote::BootFailed(_) => Ok(()),
        }
    }
}

/// Returns once the console from byte `from` on shows a line that ends the
/// boot (a panic, an emergency shell), with the lines that led there.
async fn watch_fatal(console: &Path, from: usize) -> String {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Ok(b) = fs::read(console) {
            let text = String::from_utf8_lossy(b.get(from..).unwrap_or_default());
            if let Some(fatal) = checks::fatal_boot(&text) {
                let mut why = vec![fatal.to_string()];
                why.extend(
                    checks::scan_console(&text)
                        .into_iter()
                        .filter(|f| f.what == "failed unit" || f.what == "timed out")
                        .take(3)
                        .map(|f| f.to_string()),
                );
                return why.join("; ");
            }
        }
    }
}

/// The last line of a remote command's stderr, for the harness log.
fn checks_tail(s: &str) -> String {
    checks::tail(s, 3).replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_units_are_parsed() {
        let text = "foo.service loaded failed failed Foo Daemon\n\
                    ● bar.mount  loaded failed failed /bar\n\n";
        let u = parse_failed_units(text);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].name, "foo.service");
        assert_eq!(u[0].reason, "loaded/failed/failed (Foo Daemon)");
        assert_eq!(u[1].name, "bar.mount");
    }

    #[test]
    fn commands_run_as_root_quoted() {
        assert_eq!(
            as_root(&["sh", "-c", "echo it's"]),
            "sudo -n -- sh -c \"echo it's\""
        );
    }

    #[test]
    fn the_upload_holds_the_test_and_the_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("test.sh");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data/x"), "x").unwrap();
        let (_, bundle) =
            crate::kola::protocol::bundle::pack(&exe, Some(&dir.path().join("data"))).unwrap();
        let t = upload_tar(&bundle).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&t[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.contains(&"test/test.sh".to_string()), "{names:?}");
        assert!(names.contains(&"test/data/x".to_string()), "{names:?}");
        assert!(
            names.contains(&"bin/autopkgtest-reboot".to_string()),
            "{names:?}"
        );
    }

    #[test]
    fn unit_safe_names() {
        assert_eq!(sanitize("ext.config.a/b c"), "ext.config.a_b_c");
    }
}
