//! Enabled units recorded by `firstboot` in /etc/demo-agent/units.d (one file
//! per unit, holding its `ExecStart=` command) are started once per boot.

use fs_err as fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::thread;

use agent_protocol::FailedUnit;

use super::Event;

/// Starts every recorded unit; returns those that could not even start.
/// Units that exit non-zero later arrive as [`Event::UnitFailed`].
pub fn start_all(units_d: &Path, log_dir: &Path, events: &Sender<Event>) -> Vec<FailedUnit> {
    let mut failed = Vec::new();
    let Ok(rd) = fs::read_dir(units_d) else {
        return failed;
    };
    let mut names: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        if let Err(reason) = start(&name, &units_d.join(&name), log_dir, events) {
            eprintln!("demo-agent: unit {name} failed to start: {reason}");
            failed.push(FailedUnit { name, reason });
        }
    }
    failed
}

fn start(name: &str, record: &Path, log_dir: &Path, events: &Sender<Event>) -> Result<(), String> {
    let cmdline =
        fs::read_to_string(record).map_err(|e| format!("reading {}: {e}", record.display()))?;
    let cmdline = cmdline.trim();
    if cmdline.is_empty() {
        return Err("empty ExecStart".into());
    }
    fs::create_dir_all(log_dir).map_err(|e| format!("creating {}: {e}", log_dir.display()))?;
    let log_path = log_dir.join(format!("{name}.log"));
    let log =
        fs::File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    // systemd splits ExecStart= much like sh does for plain words and quotes.
    // A unit is a service the agent supervises for the guest's life: not tied to the
    // spawning thread as `cmdext::command` would tie it.
    #[allow(clippy::disallowed_methods)]
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {cmdline}"))
        .stdin(Stdio::null())
        .stdout(log.into_file())
        .stderr(log2.into_file())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawning /bin/sh: {e}"))?;
    eprintln!("demo-agent: started unit {name}: {cmdline}");
    let events = events.clone();
    let name = name.to_string();
    thread::spawn(move || {
        let reason = match child.wait() {
            Ok(s) if s.success() => return,
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "failed".into(),
            },
            Err(e) => format!("wait failed: {e}"),
        };
        let _ = events.send(Event::UnitFailed(FailedUnit { name, reason }));
    });
    Ok(())
}
