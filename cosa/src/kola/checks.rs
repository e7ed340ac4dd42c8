//! Checks every VM gets, whatever its test: the console and the guest's
//! reports are scanned for what means the OS is broken even when the test
//! itself passed (kola's `CheckConsole` and journal checks).

use std::fmt;

use crate::kola::protocol::FailedUnit;

/// Something wrong the checks found, with the line that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: &'static str,
    /// The failing line, quoted as it appeared.
    pub line: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.what, self.line)
    }
}

/// (what, substrings) that fail a VM when a console line holds every one of them.
const CONSOLE_BADNESS: &[(&str, &[&str])] = &[
    ("kernel panic", &["Kernel panic - not syncing"]),
    ("kernel oops", &["Oops:"]),
    ("kernel oops", &["BUG: unable to handle"]),
    ("kernel warning", &["WARNING: CPU:"]),
    ("kernel warning", &["------------[ cut here ]------------"]),
    ("general protection fault", &["general protection fault"]),
    ("soft lockup", &["soft lockup - CPU"]),
    ("hung task", &["blocked for more than"]),
    ("emergency shell", &["demo-initramfs: emergency:"]),
    ("emergency shell", &["demo-init: emergency:"]),
    ("emergency shell", &["Entering emergency mode"]),
    ("emergency shell", &["You are in emergency mode"]),
    ("emergency shell", &["Started emergency.service"]),
    (
        "dracut emergency shell",
        &["dracut-initqueue", "Warning: dracut-initqueue: timeout"],
    ),
    ("dracut fatal", &["dracut: FATAL:"]),
    ("dracut fatal", &["dracut Warning: Could not boot"]),
    ("ordering cycle", &["Found ordering cycle"]),
    (
        "generator failure",
        &["-generators/", "failed with exit status"],
    ),
    (
        "generator failure",
        &["-generators/", "terminated by signal"],
    ),
    ("segfault", &["segfault at"]),
    ("OOM killer", &["invoked oom-killer"]),
    ("OOM killer", &["Out of memory: Killed process"]),
    ("failed unit", &["Failed to start "]),
    ("failed unit", &["Dependency failed for "]),
    ("timed out", &["Timed out waiting for device"]),
    ("ignition failure", &["Ignition failed"]),
];

/// What ends a boot for good: no point waiting for the guest after these.
const FATAL: &[&str] = &[
    "kernel panic",
    "emergency shell",
    "dracut emergency shell",
    "dracut fatal",
];

fn scan(text: &str, table: &[(&'static str, &[&str])]) -> Vec<Finding> {
    let mut found = Vec::new();
    for line in text.lines() {
        // systemd colours its status lines; match and quote them plain.
        let line = strip_ansi(line.trim_end_matches('\r'));
        if let Some((what, _)) = table
            .iter()
            .find(|(_, pats)| pats.iter().all(|p| line.contains(p)))
        {
            found.push(Finding {
                what,
                line: line.trim().to_string(),
            });
        }
    }
    found
}

/// Scans console output (the whole log or a slice of it), one finding per bad line.
pub fn scan_console(text: &str) -> Vec<Finding> {
    scan(text, CONSOLE_BADNESS)
}

/// The first line of `text` that means the boot cannot go on (a panic, an
/// emergency shell), for a harness waiting on the guest.
pub fn fatal_boot(text: &str) -> Option<Finding> {
    scan_console(text)
        .into_iter()
        .find(|f| FATAL.contains(&f.what))
}

/// `text` without ANSI escape sequences (CSI `ESC [ … letter`).
fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\x1b') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Drops findings that repeat a line already found (the console and the
/// kernel log both carry kernel messages, with different timestamps).
pub fn dedup(findings: &mut Vec<Finding>) {
    fn key(f: &Finding) -> (&'static str, String) {
        let l = f.line.trim();
        let l = match (l.starts_with('['), l.find("] ")) {
            (true, Some(i)) => &l[i + 2..],
            _ => l,
        };
        (f.what, l.trim().to_string())
    }
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert(key(f)));
}

/// Failed units a boot reported (the agent's `ready`, or systemctl over SSH).
pub fn failed_units(units: &[FailedUnit]) -> Vec<Finding> {
    units
        .iter()
        .map(|u| Finding {
            what: "failed unit",
            line: format!("{}: {}", u.name, u.reason),
        })
        .collect()
}

/// The last `n` lines of a console log, for reports of VMs that died or hung.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind() {
        let log = "\
[    1.0] ok line
[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs
[    3.0] Oops: 0002 [#1] PREEMPT SMP NOPTI
[    3.2] WARNING: CPU: 0 PID: 1 at mm/slab.c:1 foo
demo-initramfs: emergency: root device LABEL=root not found
demo-init: emergency: first-boot provisioning failed (demo-agent firstboot exited 1)
[    4.0] sh[99]: segfault at 0 ip 000 sp 000 error 4
[    5.0] kworker invoked oom-killer: gfp_mask=0x0
";
        let f = scan_console(log);
        let whats: Vec<&str> = f.iter().map(|f| f.what).collect();
        assert_eq!(
            whats,
            [
                "kernel panic",
                "kernel oops",
                "kernel warning",
                "emergency shell",
                "emergency shell",
                "segfault",
                "OOM killer"
            ]
        );
        assert_eq!(
            f[3].line,
            "demo-initramfs: emergency: root device LABEL=root not found"
        );
    }

    #[test]
    fn same_line_from_console_and_dmesg_counts_once() {
        let mut f = scan_console("[    2.100000] Kernel panic - not syncing: x\n");
        f.extend(scan_console("[    2.1] Kernel panic - not syncing: x\n"));
        f.extend(scan_console("[    3.0] Kernel panic - not syncing: y\n"));
        dedup(&mut f);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn systemd_and_dracut_failures() {
        let log = "\
[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mignition-fetch-offline.service\x1b[0m - Ignition (fetch-offline).
[ TIME ] Timed out waiting for device dev-disk-by\\x2dlabel-boot.device - /dev/disk/by-label/boot.
[DEPEND] Dependency failed for boot.mount - /boot.
[   12.0] systemd[1]: basic.target: Found ordering cycle on sysinit.target/start
[   13.0] (sd-exec-[212]: /usr/lib/systemd/system-generators/ostree-system-generator failed with exit status 1.
[   14.0] dracut: FATAL: No or empty root= argument
[  OK  ] Started emergency.service - Emergency Shell.
";
        let f = scan_console(log);
        let whats: Vec<&str> = f.iter().map(|f| f.what).collect();
        assert_eq!(
            whats,
            [
                "failed unit",
                "timed out",
                "failed unit",
                "ordering cycle",
                "generator failure",
                "dracut fatal",
                "emergency shell"
            ]
        );
        assert_eq!(
            f[0].line,
            "[FAILED] Failed to start ignition-fetch-offline.service - Ignition (fetch-offline)."
        );
        assert_eq!(fatal_boot(log).unwrap().what, "dracut fatal");
        assert!(fatal_boot("[  OK  ] Started ssh.service\n").is_none());
    }

    #[test]
    fn clean_console_is_clean() {
        let log = "demo-init: system up (6.1.0-56-amd64, Demo CoreOS 1)\nlocalhost login: \n";
        assert!(scan_console(log).is_empty());
    }

    #[test]
    fn units_and_tail() {
        let u = [FailedUnit {
            name: "broken.service".into(),
            reason: "exited with status 3".into(),
        }];
        assert_eq!(
            failed_units(&u)[0].to_string(),
            "failed unit: \"broken.service: exited with status 3\""
        );
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
