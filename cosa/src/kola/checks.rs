//! Checks every VM gets, whatever its test: the console and the agent's
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

/// (what, substring) pairs that fail a VM when a console line holds them.
const CONSOLE_BADNESS: &[(&str, &str)] = &[
    ("kernel panic", "Kernel panic - not syncing"),
    ("kernel oops", "Oops:"),
    ("kernel oops", "BUG: unable to handle"),
    ("kernel warning", "WARNING: CPU:"),
    ("kernel warning", "------------[ cut here ]------------"),
    ("general protection fault", "general protection fault"),
    ("soft lockup", "soft lockup - CPU"),
    ("hung task", "blocked for more than"),
    ("emergency shell", "demo-initramfs: emergency:"),
    ("emergency shell", "demo-init: emergency:"),
    ("emergency shell", "Entering emergency mode"),
    ("emergency shell", "You are in emergency mode"),
    (
        "dracut emergency shell",
        "dracut-initqueue[1]: Warning: dracut-initqueue: timeout",
    ),
    ("segfault", "segfault at"),
    ("OOM killer", "invoked oom-killer"),
    ("OOM killer", "Out of memory: Killed process"),
    ("failed unit", "Failed to start "),
    ("ignition failure", "Ignition failed"),
];

/// Scans console output (the whole log or a slice of it), one finding per bad line.
pub fn scan_console(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some((what, _)) = CONSOLE_BADNESS.iter().find(|(_, pat)| line.contains(pat)) {
            found.push(Finding {
                what,
                line: line.trim().to_string(),
            });
        }
    }
    found
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

/// Failed units the agent's `ready` listed.
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
