//! Facts about the running system for the `ready` message, from /proc.

use fs_err as fs;

fn proc_line(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn boot_id() -> String {
    proc_line("/proc/sys/kernel/random/boot_id")
}

pub fn kernel_release() -> String {
    proc_line("/proc/sys/kernel/osrelease")
}

pub fn cmdline() -> String {
    proc_line("/proc/cmdline")
}

pub fn uptime_secs() -> f64 {
    proc_line("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}
