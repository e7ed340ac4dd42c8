//! Running one job (a test or an `exec`): its own process group, output
//! streamed as produced, exit reported only after all output was read.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;
use std::thread;

use agent_protocol::{ExitStatus, Stream};
use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::Event;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Spawns `cmd` as job `id`; returns its process group id.
/// A job's command. Jobs are not made with `cmdext::command`: the agent is the
/// guest's supervisor, it reaps and kills its jobs by process group itself, and a
/// job must not die because the thread that happened to start it ended.
#[allow(clippy::disallowed_methods)]
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    Command::new(program)
}

pub fn spawn(id: &str, mut cmd: Command, events: &Sender<Event>) -> Result<i32> {
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pgid = i32::try_from(child.id()).context("pid out of range")?;
    let readers = [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ]
    .into_iter()
    .filter_map(|(stream, pipe)| pipe.map(|p| (stream, p)))
    .map(|(stream, mut pipe)| {
        let events = events.clone();
        let id = id.to_string();
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let ev = Event::Output {
                            id: id.clone(),
                            stream,
                            data: buf[..n].to_vec(),
                        };
                        if events.send(ev).is_err() {
                            break;
                        }
                    }
                }
            }
        })
    })
    .collect::<Vec<_>>();
    let events = events.clone();
    let id = id.to_string();
    thread::spawn(move || {
        let status = child.wait();
        // Leftover children would hold the pipes open (and outlive the test).
        kill_group(pgid);
        for r in readers {
            let _ = r.join();
        }
        let status = match status {
            Ok(s) => ExitStatus {
                code: s.code(),
                signal: s.signal(),
                timed_out: false,
            },
            Err(_) => ExitStatus::default(),
        };
        let _ = events.send(Event::Exited { id, status });
    });
    Ok(pgid)
}

/// SIGKILL to the whole process group (gone already is fine).
pub fn kill_group(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}
