//! `demo-agent serve`: the guest side of kola (docs/agent-protocol.md).
//!
//! One main loop owns all state; threads feed it [`Event`]s (host messages,
//! job output and exits, reboot requests from /tmp/autopkgtest-reboot).

use fs_err as fs;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use agent_protocol::{
    ExecRequest, ExitStatus, FailedUnit, GuestMessage, HostMessage, ReadyInfo, ResumedJob,
    RunRequest, ShutdownAction, Stream, GUEST_PORT_PATH, PROTOCOL_VERSION,
};
use anyhow::{anyhow, bail, Context, Result};
use cmdext::CommandRunExt;

use crate::sysinfo;

mod job;
mod port;
mod state;
mod units;

use state::{Found, JobMeta, StateDir};

#[derive(Debug, clap::Args)]
pub struct ServeOpts {
    /// The virtio-serial port (or, for tests, a Unix socket to connect to).
    #[arg(long, hide = true, default_value = GUEST_PORT_PATH)]
    port: PathBuf,
    /// Prefix for /var/lib/demo-agent, /etc/demo-agent/units.d, /tmp and /run.
    #[arg(long, hide = true, default_value = "/")]
    root: PathBuf,
    /// Command run to reboot for /tmp/autopkgtest-reboot (split on spaces).
    #[arg(long, hide = true, default_value = "reboot")]
    reboot_command: String,
    /// Command run for a `shutdown` request with action poweroff.
    #[arg(long, hide = true, default_value = "poweroff")]
    poweroff_command: String,
}

/// Everything the main loop reacts to.
pub enum Event {
    Host(HostMessage),
    BadFrame(String),
    Output {
        id: String,
        stream: Stream,
        data: Vec<u8>,
    },
    Exited {
        id: String,
        status: ExitStatus,
    },
    RebootRequest {
        mark: String,
        reply: UnixStream,
    },
    UnitFailed(FailedUnit),
}

struct Job {
    pgid: i32,
    deadline: Option<Instant>,
    timed_out: bool,
    /// Set for the (single) test job; `None` for `exec` jobs.
    test: Option<TestJob>,
}

struct TestJob {
    name: String,
    /// Set once the test asked for a reboot: its exit means "reboot now".
    reboot_mark: Option<String>,
}

struct Agent {
    opts: ServeOpts,
    state: StateDir,
    out: port::Outbox,
    events: Sender<Event>,
    jobs: HashMap<String, Job>,
    failed_units: Vec<FailedUnit>,
    /// This boot resumes a rebooted test: facts for every `ready`.
    resumed: Option<(ResumedJob, String)>,
    /// Started on the first `hello`, so the host sees `ready` before output.
    pending_resume: Option<(JobMeta, String)>,
    going_down: bool,
}

fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

fn run_command(cmdline: &str) -> Result<()> {
    let mut words = cmdline.split_whitespace();
    let prog = words.next().ok_or_else(|| anyhow!("empty command"))?;
    cmdext::command(prog).args(words).run_inherited()
}

fn shell_quote(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .filter(|s| !s.contains('\''))
        .ok_or_else(|| anyhow!("path {} cannot be quoted", p.display()))?;
    Ok(format!("'{s}'"))
}

/// Writes /tmp/autopkgtest-reboot, which hands its MARK to our control socket.
fn write_reboot_script(path: &Path, control: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("locating our own executable")?;
    let script = format!(
        "#!/bin/sh\n# Written by demo-agent serve: record MARK, reboot, re-run the test (docs/agent-protocol.md).\nexec {} reboot-request --control {} -- \"$@\"\n",
        shell_quote(&exe)?,
        shell_quote(control)?
    );
    if let Some(d) = path.parent() {
        fs::create_dir_all(d)?;
    }
    fs::write(path, script).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn listen_control(path: &Path, events: Sender<Event>) -> Result<()> {
    let _ = fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut line = String::new();
            let read = conn
                .try_clone()
                .map(BufReader::new)
                .and_then(|mut r| r.read_line(&mut line));
            if read.is_err() {
                continue;
            }
            let mark = line.trim_end_matches('\n').to_string();
            if events
                .send(Event::RebootRequest { mark, reply: conn })
                .is_err()
            {
                return;
            }
        }
    });
    Ok(())
}

pub fn serve(opts: ServeOpts) -> Result<()> {
    let root = opts.root.clone();
    let state = StateDir::new(under(&root, "/var/lib/demo-agent"));
    fs::create_dir_all(state.path())
        .with_context(|| format!("creating {}", state.path().display()))?;
    let (events, rx) = mpsc::channel();
    let control = state.path().join("control.sock");
    listen_control(&control, events.clone())?;
    write_reboot_script(&under(&root, "/tmp/autopkgtest-reboot"), &control)?;

    // Units start once per boot, even if serve is restarted.
    let started = under(&root, "/run/demo-agent/units-started");
    let failed_units = if started.exists() {
        Vec::new()
    } else {
        let f = units::start_all(
            &under(&root, crate::ignition::UNITS_D),
            &state.path().join("units"),
            &events,
        );
        if let Some(d) = started.parent() {
            fs::create_dir_all(d)?;
        }
        fs::write(&started, b"")?;
        f
    };

    let out = port::start(opts.port.clone(), events.clone());
    let mut agent = Agent {
        opts,
        state,
        out,
        events,
        jobs: HashMap::new(),
        failed_units,
        resumed: None,
        pending_resume: None,
        going_down: false,
    };
    match agent.state.load()? {
        Found::Nothing => {}
        Found::Resume(meta, mark) => {
            agent.resumed = Some((
                ResumedJob {
                    id: meta.id.clone(),
                    name: meta.name.clone(),
                },
                mark.clone(),
            ));
            agent.pending_resume = Some((meta, mark));
        }
        Found::Interrupted(meta) => {
            agent.out.send(&GuestMessage::Error {
                id: Some(meta.id),
                message: format!(
                    "test {} was interrupted: the system or the agent went down without /tmp/autopkgtest-reboot",
                    meta.name
                ),
            });
            agent.state.finish()?;
        }
    }
    eprintln!(
        "demo-agent: serving kola on {} (protocol {PROTOCOL_VERSION})",
        agent.opts.port.display()
    );
    agent.out.send(&GuestMessage::Ready(agent.ready()));
    agent.run(rx)
}

impl Agent {
    fn ready(&self) -> ReadyInfo {
        ReadyInfo {
            protocol: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            boot_id: sysinfo::boot_id(),
            kernel_release: sysinfo::kernel_release(),
            cmdline: sysinfo::cmdline(),
            uptime_secs: sysinfo::uptime_secs(),
            reboot_mark: self.resumed.as_ref().map(|(_, m)| m.clone()),
            resuming: self.resumed.as_ref().map(|(j, _)| j.clone()),
            failed_units: self.failed_units.clone(),
        }
    }

    fn error(&self, id: Option<&str>, message: impl Into<String>) {
        self.out.send(&GuestMessage::Error {
            id: id.map(Into::into),
            message: message.into(),
        });
    }

    fn run(&mut self, rx: mpsc::Receiver<Event>) -> Result<()> {
        loop {
            let next = self
                .jobs
                .values()
                .filter(|j| !j.timed_out)
                .filter_map(|j| j.deadline)
                .min();
            let ev = match next {
                Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match ev {
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => self.expire(),
                Err(RecvTimeoutError::Disconnected) => bail!("all event sources are gone"),
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        for j in self.jobs.values_mut() {
            if !j.timed_out && j.deadline.is_some_and(|d| d <= now) {
                j.timed_out = true;
                job::kill_group(j.pgid);
            }
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Host(m) => self.host_message(m),
            Event::BadFrame(msg) => self.error(None, msg),
            Event::Output { id, stream, data } => self.out.send(&GuestMessage::Output {
                id,
                stream,
                data: data.into(),
            }),
            Event::Exited { id, status } => self.exited(id, status),
            Event::RebootRequest { mark, mut reply } => {
                let answer = match self.reboot_requested(&mark) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error: {e:#}"),
                };
                let _ = writeln!(reply, "{answer}");
            }
            Event::UnitFailed(u) => {
                eprintln!("demo-agent: unit {} failed: {}", u.name, u.reason);
                self.failed_units.push(u);
            }
        }
    }

    fn host_message(&mut self, m: HostMessage) {
        match m {
            HostMessage::Hello { protocol } => {
                if protocol != PROTOCOL_VERSION {
                    self.error(
                        None,
                        format!("host speaks protocol {protocol}, this agent {PROTOCOL_VERSION}"),
                    );
                }
                self.out.send(&GuestMessage::Ready(self.ready()));
                if let Some((meta, mark)) = self.pending_resume.take() {
                    let r = self
                        .state
                        .clear_mark()
                        .and_then(|()| self.start_test(&meta, Some(&mark)));
                    if let Err(e) = r {
                        self.error(
                            Some(&meta.id),
                            format!("resuming test {}: {e:#}", meta.name),
                        );
                        let _ = self.state.finish();
                    }
                }
            }
            HostMessage::Ping { id } => self.out.send(&GuestMessage::Pong { id }),
            HostMessage::Run(req) => {
                let id = req.id.clone();
                if let Err(e) = self.run_request(req) {
                    self.error(Some(&id), format!("{e:#}"));
                }
            }
            HostMessage::Exec(req) => {
                let id = req.id.clone();
                if let Err(e) = self.exec_request(req) {
                    self.error(Some(&id), format!("{e:#}"));
                }
            }
            HostMessage::Kill { id } => match self.jobs.get(&id) {
                Some(j) => job::kill_group(j.pgid),
                None => self.error(Some(&id), "kill: no such job"),
            },
            HostMessage::Shutdown { action } => {
                self.going_down = true;
                self.out.send(&GuestMessage::ShuttingDown { action });
                self.out.flush(Duration::from_secs(5));
                let cmd = match action {
                    ShutdownAction::Poweroff => self.opts.poweroff_command.clone(),
                    ShutdownAction::Reboot => self.opts.reboot_command.clone(),
                };
                if let Err(e) = run_command(&cmd) {
                    self.going_down = false;
                    self.error(None, format!("shutdown: {e:#}"));
                }
            }
        }
    }

    fn check_new_job(&self, id: &str) -> Result<()> {
        if self.going_down {
            bail!("the system is going down");
        }
        if self.jobs.contains_key(id) {
            bail!("a job with id {id:?} is already running");
        }
        Ok(())
    }

    fn run_request(&mut self, req: RunRequest) -> Result<()> {
        self.check_new_job(&req.id)?;
        if let Some(t) = self.jobs.values().find_map(|j| j.test.as_ref()) {
            bail!("test {} is still running", t.name);
        }
        let exec = Path::new(&req.exec);
        if req.exec.is_empty() || !exec.components().all(|c| matches!(c, Component::Normal(_))) {
            bail!(
                "exec {:?} is not a relative path inside the bundle",
                req.exec
            );
        }
        let meta = JobMeta {
            id: req.id,
            name: req.name,
            exec: req.exec,
            env: req.env,
            timeout_secs: req.timeout_secs,
        };
        self.state.prepare(&meta, &req.bundle.0)?;
        self.start_test(&meta, None).inspect_err(|_| {
            let _ = self.state.finish();
        })
    }

    fn start_test(&mut self, meta: &JobMeta, mark: Option<&str>) -> Result<()> {
        let dir = self.state.test_dir();
        let mut cmd = job::command(dir.join(&meta.exec));
        cmd.current_dir(&dir)
            .envs(&meta.env)
            .env("KOLA_TEST", &meta.name)
            .env("KOLA_EXT_DATA", dir.join(agent_protocol::bundle::DATA_DIR))
            .env("AUTOPKGTEST_TMP", self.state.tmp_dir());
        match mark {
            Some(m) => cmd.env("AUTOPKGTEST_REBOOT_MARK", m),
            None => cmd.env_remove("AUTOPKGTEST_REBOOT_MARK"),
        };
        let pgid = job::spawn(&meta.id, cmd, &self.events)
            .with_context(|| format!("test {}", meta.name))?;
        self.jobs.insert(
            meta.id.clone(),
            Job {
                pgid,
                deadline: meta
                    .timeout_secs
                    .map(|s| Instant::now() + Duration::from_secs(s)),
                timed_out: false,
                test: Some(TestJob {
                    name: meta.name.clone(),
                    reboot_mark: None,
                }),
            },
        );
        self.out.send(&GuestMessage::Started {
            id: meta.id.clone(),
        });
        Ok(())
    }

    fn exec_request(&mut self, req: ExecRequest) -> Result<()> {
        self.check_new_job(&req.id)?;
        let (prog, args) = req
            .argv
            .split_first()
            .ok_or_else(|| anyhow!("exec: empty argv"))?;
        let mut cmd = job::command(prog);
        cmd.args(args).envs(&req.env).current_dir("/");
        let pgid = job::spawn(&req.id, cmd, &self.events)?;
        self.jobs.insert(
            req.id.clone(),
            Job {
                pgid,
                deadline: req
                    .timeout_secs
                    .map(|s| Instant::now() + Duration::from_secs(s)),
                timed_out: false,
                test: None,
            },
        );
        self.out.send(&GuestMessage::Started { id: req.id });
        Ok(())
    }

    fn reboot_requested(&mut self, mark: &str) -> Result<()> {
        if mark.is_empty() || mark.contains('\n') {
            bail!("invalid mark {mark:?}");
        }
        let (pgid, test) = self
            .jobs
            .values_mut()
            .find_map(|j| j.test.as_mut().map(|t| (j.pgid, t)))
            .ok_or_else(|| anyhow!("no test is running"))?;
        self.state.set_mark(mark).context("recording the mark")?;
        test.reboot_mark = Some(mark.to_string());
        // Its exit (after all output is read) triggers the reboot.
        job::kill_group(pgid);
        Ok(())
    }

    fn exited(&mut self, id: String, mut status: ExitStatus) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        match job.test {
            Some(TestJob {
                name,
                reboot_mark: Some(mark),
            }) => {
                self.going_down = true;
                self.out.send(&GuestMessage::Reboot {
                    id: id.clone(),
                    name,
                    mark,
                });
                self.out.flush(Duration::from_secs(5));
                if let Err(e) = run_command(&self.opts.reboot_command) {
                    self.going_down = false;
                    self.error(Some(&id), format!("reboot: {e:#}"));
                    let _ = self.state.finish();
                }
            }
            test => {
                status.timed_out = job.timed_out;
                // Forget the test first: once the host sees `exit`, nothing resumes.
                if test.is_some() {
                    if let Err(e) = self.state.finish() {
                        self.error(None, format!("{e:#}"));
                    }
                }
                self.out.send(&GuestMessage::Exit { id, status });
            }
        }
    }
}

/// `demo-agent reboot-request MARK` (via /tmp/autopkgtest-reboot): hands MARK
/// to `serve`, which kills this test's process group and reboots.
pub fn reboot_request(control: &Path, mark: &str) -> Result<()> {
    let mut s = UnixStream::connect(control)
        .with_context(|| format!("connecting to demo-agent at {}", control.display()))?;
    writeln!(s, "{mark}")?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer)?;
    let answer = answer.trim();
    if answer != "ok" {
        bail!("reboot refused: {answer}");
    }
    // The agent kills us with the rest of the test; never return to the test.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
