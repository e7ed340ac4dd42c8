//! What the harness's own tests do, driven through the guest agent.
//!
//! The checks every VM gets (console, failed units) run around these bodies;
//! a body only checks what is particular to its test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::kola::machine::{JobFate, Machine};
use crate::kola::protocol::bundle;
use crate::kola::test::Builtin;
use cmdext::CommandRunExt;

/// The file the `firstboot` test's config writes, and what it holds.
const FIRSTBOOT_PATH: &str = "/etc/cosa-kola/firstboot";
const FIRSTBOOT_CONTENT: &str = "provisioned by cosa kola";

/// How a built-in test body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyResult {
    Pass(String),
    Fail(String),
    Skip(String),
}

/// What the built-in tests need to know about the build under test.
#[derive(Debug, Clone)]
pub struct BuildFacts {
    /// The workdir's `overrides/rpm`.
    pub overrides_rpm: PathBuf,
    /// meta.json's `coreos-assembler.overrides-active`.
    pub overrides_active: bool,
    /// The lockfile the build recorded (`manifest-lock.generated.<arch>.json`).
    pub lockfile: Option<PathBuf>,
    /// meta.json's `ostree-commit` and `ostree-version`.
    pub commit: String,
    pub version: String,
}

/// The first-boot config a built-in test needs, if any.
pub fn ignition_config(b: Builtin) -> Option<serde_json::Value> {
    match b {
        Builtin::Firstboot => Some(json!({
            "ignition": {"version": "3.0.0"},
            "storage": {"files": [{
                "path": FIRSTBOOT_PATH,
                "mode": 420,
                "contents": {"source": format!("data:,{}", FIRSTBOOT_CONTENT.replace(' ', "%20"))}
            }]}
        })),
        Builtin::Basic
        | Builtin::Reboot
        | Builtin::KernelOverride
        | Builtin::OstreeStatus
        | Builtin::Upgrade
        | Builtin::Testiso(_) => None,
    }
}

/// Why built-in test `b` cannot apply to this build, known before any VM boots.
pub fn precheck(b: Builtin, facts: &BuildFacts) -> Result<Option<String>> {
    if b != Builtin::KernelOverride {
        return Ok(None);
    }
    if !facts.overrides_active {
        return Ok(Some(
            "the build has no overrides (coreos-assembler.overrides-active is not set)".into(),
        ));
    }
    Ok(override_kernel(&facts.overrides_rpm)?
        .is_none()
        .then(|| format!("no kernel package in {}", facts.overrides_rpm.display())))
}

/// Runs built-in test `b` on `m`; `dir` is the test's output directory.
pub async fn run(
    b: Builtin,
    m: &mut Machine,
    facts: &BuildFacts,
    dir: &Path,
    timeout: Duration,
) -> Result<BodyResult> {
    match b {
        Builtin::Basic => basic(m, timeout).await,
        Builtin::Firstboot => firstboot(m, timeout).await,
        Builtin::Reboot => reboot(m, dir, timeout).await,
        Builtin::KernelOverride => kernel_override(m, facts, timeout).await,
        Builtin::OstreeStatus => ostree_status(m, facts, timeout).await,
        // It boots another build's image: `kola run` runs it beside the VM plans.
        Builtin::Upgrade => {
            anyhow::bail!("the upgrade test does not run in a test VM of the build")
        }
        // They boot the live media: `kola run` runs them beside the VM plans.
        Builtin::Testiso(s) => {
            anyhow::bail!(
                "{} boots the live media, not a test VM of the build",
                s.name
            )
        }
    }
}

/// `ostree admin status`: the booted deployment (`* STATEROOT CHECKSUM.SERIAL`)
/// and its `Version:` line.
pub(crate) fn booted_deployment(status: &str) -> Option<(String, Option<String>)> {
    let mut lines = status.lines();
    let booted = lines.find(|l| l.starts_with("* "))?;
    let checksum = booted
        .split_whitespace()
        .nth(2)?
        .split('.')
        .next()?
        .to_string();
    let version = lines
        .take_while(|l| l.starts_with(' ') || l.is_empty())
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().to_string());
    Some((checksum, version))
}

/// What ostree says of an unsigned commit on a remote with gpg-verify=true.
pub(crate) const UNSIGNED: &str = "GPG verification enabled, but no signatures found";

async fn ostree_status(
    m: &mut Machine,
    facts: &BuildFacts,
    timeout: Duration,
) -> Result<BodyResult> {
    let (ok, text) = sh(
        m,
        "command -v ostree >/dev/null || { echo 'no ostree CLI'; exit 3; }; ostree admin status 2>&1",
        timeout,
    )
    .await?;
    if !ok && text.starts_with("no ostree CLI") {
        return Ok(BodyResult::Skip("the guest has no ostree CLI".into()));
    }
    // ostree 2022.7 lists every deployment and then fails when the remote has
    // gpg-verify=true and a deployed commit is unsigned (a build not yet signed);
    // that is a fact about the build, not a broken status.
    if !ok && !text.contains(UNSIGNED) {
        return Ok(BodyResult::Fail(format!(
            "ostree admin status failed:\n{text}"
        )));
    }
    let Some((checksum, version)) = booted_deployment(&text) else {
        return Ok(BodyResult::Fail(format!(
            "ostree admin status shows no booted deployment:\n{text}"
        )));
    };
    if checksum != facts.commit {
        return Ok(BodyResult::Fail(format!(
            "booted commit {checksum}, the build's is {}:\n{text}",
            facts.commit
        )));
    }
    if version.as_deref() != Some(facts.version.as_str()) {
        return Ok(BodyResult::Fail(format!(
            "booted version {version:?}, the build's is {}:\n{text}",
            facts.version
        )));
    }
    Ok(BodyResult::Pass(text))
}

pub(crate) async fn sh(m: &mut Machine, script: &str, timeout: Duration) -> Result<(bool, String)> {
    let out = m.exec(&["sh", "-c", script], timeout).await?;
    let mut text = out.text();
    match &out.fate {
        JobFate::Ended(_) => {}
        JobFate::TimedOut => text.push_str("\n(timed out)"),
        JobFate::VmLost(why) => text.push_str(&format!("\n(VM lost: {why})")),
    }
    Ok((out.success(), text))
}

async fn basic(m: &mut Machine, timeout: Duration) -> Result<BodyResult> {
    let cmdline = m
        .ready
        .as_ref()
        .map(|r| r.cmdline.clone())
        .unwrap_or_default();
    if !cmdline.contains("ignition.platform.id=qemu") {
        return Ok(BodyResult::Fail(format!(
            "kernel command line lacks ignition.platform.id=qemu: {cmdline}"
        )));
    }
    let (ok, text) = sh(
        m,
        "set -e; uname -r; . /etc/os-release; echo \"$PRETTY_NAME\"; test -d /sysroot; touch /var/.kola-basic; rm /var/.kola-basic",
        timeout,
    )
    .await?;
    Ok(if ok {
        BodyResult::Pass(text)
    } else {
        BodyResult::Fail(format!("basic checks in the guest failed:\n{text}"))
    })
}

async fn firstboot(m: &mut Machine, timeout: Duration) -> Result<BodyResult> {
    let script = format!(
        "set -e; cat {FIRSTBOOT_PATH}; echo; \
         if [ -e /boot/ignition.firstboot ]; then echo '/boot/ignition.firstboot still present after provisioning'; exit 1; fi"
    );
    let (ok, text) = sh(m, &script, timeout).await?;
    Ok(if ok && text.lines().next() == Some(FIRSTBOOT_CONTENT) {
        BodyResult::Pass(text)
    } else {
        BodyResult::Fail(format!(
            "the first-boot config's {FIRSTBOOT_PATH} is not as written (want {FIRSTBOOT_CONTENT:?}):\n{text}"
        ))
    })
}

const REBOOT_SCRIPT: &str = r#"#!/bin/sh
# cosa kola built-in: reboot through the autopkgtest protocol.
set -eu
case "${AUTOPKGTEST_REBOOT_MARK:-}" in
"")
    echo kept > /var/cosa-kola-reboot
    cat /proc/sys/kernel/random/boot_id > /var/cosa-kola-boot-id
    echo "rebooting"
    /tmp/autopkgtest-reboot cosa-rebooted
    ;;
cosa-rebooted)
    grep -qx kept /var/cosa-kola-reboot || { echo "/var lost its content across the reboot"; exit 1; }
    if [ "$(cat /var/cosa-kola-boot-id)" = "$(cat /proc/sys/kernel/random/boot_id)" ]; then
        echo "boot_id did not change: no reboot happened"; exit 1
    fi
    echo "ok: rebooted, resumed with AUTOPKGTEST_REBOOT_MARK=$AUTOPKGTEST_REBOOT_MARK, /var kept"
    ;;
*) echo "unexpected AUTOPKGTEST_REBOOT_MARK=$AUTOPKGTEST_REBOOT_MARK"; exit 1 ;;
esac
"#;

async fn reboot(m: &mut Machine, dir: &Path, timeout: Duration) -> Result<BodyResult> {
    let script = dir.join("reboot.sh");
    fs_err::write(&script, REBOOT_SCRIPT)?;
    set_executable(&script)?;
    let (exec, tar) =
        bundle::pack(&script, None).with_context(|| format!("packing {}", script.display()))?;
    let boots_before = m.boots;
    let out = m.run_test("reboot", exec, tar, timeout).await?;
    let text = out.text();
    if !out.success() {
        return Ok(BodyResult::Fail(format!(
            "{}:\n{text}",
            fate_text(&out.fate)
        )));
    }
    if out.reboots != ["cosa-rebooted"] || m.boots != boots_before + 1 {
        return Ok(BodyResult::Fail(format!(
            "expected one reboot with mark cosa-rebooted and a new boot, saw marks {:?} and {} new boot(s):\n{text}",
            out.reboots,
            m.boots - boots_before
        )));
    }
    Ok(BodyResult::Pass(text))
}

fn set_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", p.display()))
}

pub fn fate_text(f: &JobFate) -> String {
    match f {
        JobFate::Ended(crate::kola::protocol::JobEnd::Exit(s)) => format!("test ended: {s}"),
        JobFate::Ended(crate::kola::protocol::JobEnd::Error(e)) => format!("agent error: {e}"),
        JobFate::Ended(crate::kola::protocol::JobEnd::Reboot { mark }) => {
            format!("test rebooted with mark {mark} and never resumed")
        }
        JobFate::TimedOut => "timed out".into(),
        JobFate::VmLost(why) => format!("VM lost: {why}"),
    }
}

/// The kernel package in `overrides/rpm`: (version-release.arch, kernel release from its files).
fn override_kernel(dir: &Path) -> Result<Option<(String, String)>> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok(None);
    };
    for e in entries {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("rpm") {
            continue;
        }
        let out = cmdext::command("rpm")
            .args([
                "-qp",
                "--nosignature",
                "--nodigest",
                "--qf",
                "%{NAME} %{VERSION}-%{RELEASE}.%{ARCH}\n[%{FILENAMES}\n]",
            ])
            .arg(&p)
            .run_get_string()
            .with_context(|| format!("reading the header of {}", p.display()))?;
        let mut lines = out.lines();
        let Some((name, vra)) = lines.next().and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if name != "kernel" {
            continue;
        }
        // Every kernel package ships /usr/lib/modules/<release>/vmlinuz.
        let kver = lines.find_map(|f| {
            f.strip_prefix("/usr/lib/modules/")
                .and_then(|r| r.strip_suffix("/vmlinuz"))
                .filter(|r| !r.contains('/'))
                .map(str::to_string)
        });
        if let Some(kver) = kver {
            return Ok(Some((vra.to_string(), kver)));
        }
    }
    Ok(None)
}

async fn kernel_override(
    m: &mut Machine,
    facts: &BuildFacts,
    timeout: Duration,
) -> Result<BodyResult> {
    if !facts.overrides_active {
        return Ok(BodyResult::Skip(
            "the build has no overrides (coreos-assembler.overrides-active is not set)".into(),
        ));
    }
    let Some((vra, kver)) = override_kernel(&facts.overrides_rpm)? else {
        return Ok(BodyResult::Skip(format!(
            "no kernel package in {}",
            facts.overrides_rpm.display()
        )));
    };
    let mut report = format!("override: kernel-{vra} (kernel release {kver})\n");
    if let Some(lock) = &facts.lockfile {
        let l: serde_json::Value = serde_json::from_slice(
            &std::fs::read(lock).with_context(|| format!("reading {}", lock.display()))?,
        )
        .with_context(|| format!("parsing {}", lock.display()))?;
        let locked = l["packages"]["kernel"]["evra"].as_str().unwrap_or("");
        // evra may carry an epoch ("0:6.1…"); the override's is without.
        if locked.rsplit(':').next() != Some(vra.as_str()) {
            return Ok(BodyResult::Fail(format!(
                "{report}the build's lockfile {} records kernel {locked:?}: the override was not composed",
                lock.display()
            )));
        }
        report.push_str(&format!("lockfile: kernel {locked}\n"));
    }
    let booted = m
        .ready
        .as_ref()
        .map(|r| r.kernel_release.clone())
        .unwrap_or_default();
    report.push_str(&format!("booted: {booted}\n"));
    if booted != kver {
        return Ok(BodyResult::Fail(format!(
            "{report}the guest booted kernel release {booted}, the override package ships {kver}"
        )));
    }
    // Where the image has rpm, also ask its database.
    let (ok, text) = sh(
        m,
        "command -v rpm >/dev/null || exit 3; rpm -q --qf '%{VERSION}-%{RELEASE}.%{ARCH}\\n' kernel",
        timeout,
    )
    .await?;
    if ok {
        let got = text.trim();
        if got != vra {
            return Ok(BodyResult::Fail(format!(
                "{report}the guest's rpm -q kernel says {got}, want {vra}"
            )));
        }
        report.push_str(&format!("guest rpmdb: kernel {got}\n"));
    } else {
        report.push_str("guest has no rpm: package checked by kernel release\n");
    }
    Ok(BodyResult::Pass(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_booted_deployment() {
        let status = "  demo 1111.0 (pending)\n    Version: 2\n* demo abcd.0\n    Version: 1.20261205.0\n    origin refspec: demo:demo/x86_64/systemd\n  demo 9999.0 (rollback)\n    Version: 0\n";
        assert_eq!(
            booted_deployment(status),
            Some(("abcd".into(), Some("1.20261205.0".into())))
        );
        assert_eq!(booted_deployment("  demo abcd.0\n"), None);
    }

    #[test]
    fn only_firstboot_has_a_config() {
        let c = ignition_config(Builtin::Firstboot).unwrap();
        assert_eq!(c["storage"]["files"][0]["path"], FIRSTBOOT_PATH);
        assert_eq!(
            c["storage"]["files"][0]["contents"]["source"],
            "data:,provisioned%20by%20cosa%20kola"
        );
        assert!(ignition_config(Builtin::Basic).is_none());
    }
}
