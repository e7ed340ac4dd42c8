//! VMs for the tests, started with cosa's own QEMU command line
//! ([`cosa::kola::qemu::QemuSpec`]): the firmware paths, machine type and
//! agent channel are the ones `cosa kola` uses, never a copy. The tests talk
//! to the guest agent directly and panic with the console's tail.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cosa::arch::Arch;
use cosa::kola::machine::Firmware;
use cosa::kola::protocol::{GuestMessage, ReadyInfo, Stream};
use cosa::kola::qemu::{self, Accel, Console, QemuSpec};

/// A QEMU process, killed on drop; its console log and agent socket in `dir`.
pub struct Vm {
    child: Child,
    dir: PathBuf,
    rx: Option<Receiver<GuestMessage>>,
    tx: Option<UnixStream>,
    jobs: u32,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    /// A TCG VM whose console goes to `dir/console.txt` and agent channel to
    /// `dir/agent.sock`; with `uefi`, OVMF and a fresh variable store in `dir`.
    /// Add drives, a kernel… then [`Vm::start`] it.
    pub fn spec(dir: &Path, uefi: bool) -> QemuSpec {
        std::fs::create_dir_all(dir).unwrap();
        let arch = Arch::host().unwrap();
        let name = dir
            .file_name()
            .map_or("vm".into(), |n| n.to_string_lossy().into_owned());
        let mut s = QemuSpec::new(
            arch,
            name,
            Accel::Tcg,
            Console::File(dir.join("console.txt")),
        );
        s.agent_socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&s.agent_socket);
        if uefi {
            let vars = dir.join("OVMF_VARS.fd");
            qemu::fresh_uefi_vars(arch, &vars).unwrap();
            s.firmware = Firmware::Uefi;
            s.uefi_vars = Some(vars);
        }
        s
    }

    /// Starts QEMU for a spec made by [`Vm::spec`] on `dir`.
    pub fn start(dir: &Path, spec: &QemuSpec) -> Vm {
        let child = spec
            .command()
            .unwrap()
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", qemu::binary(spec.arch)));
        Vm {
            child,
            dir: dir.to_path_buf(),
            rx: None,
            tx: None,
            jobs: 0,
        }
    }

    /// The serial console so far (firmware and GRUB write bytes that are not UTF-8).
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("console.txt")).unwrap_or_default())
            .into_owned()
    }

    /// Wait until the console shows `text`; a boot that drops to an emergency
    /// shell fails at once.
    pub fn wait_console(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let c = self.console();
            if c.contains(text) {
                return;
            }
            if c.contains("Entering emergency mode") {
                self.fail(&format!("the guest entered emergency mode before {text:?}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {text:?} on the console within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Ask the guest to power off (ACPI, through QMP at `dir/qmp.sock`, which the
    /// spec must have set as `qmp_socket`) and wait for QEMU to exit: a clean
    /// shutdown, so what the guest wrote is on the disk.
    pub fn powerdown(&mut self, within: Duration) {
        let sock = self.dir.join("qmp.sock");
        let mut s = UnixStream::connect(&sock).unwrap_or_else(|e| {
            self.fail(&format!("connecting to QMP at {}: {e}", sock.display()))
        });
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap(); // the greeting
        for cmd in ["qmp_capabilities", "system_powerdown"] {
            writeln!(s, "{{\"execute\":\"{cmd}\"}}").unwrap();
            // Events (POWERDOWN, …) may come before the reply.
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 || !line.contains("\"event\"") {
                    break;
                }
            }
            if !line.contains("\"return\"") {
                self.fail(&format!("QMP {cmd}: {line}"));
            }
        }
        self.wait_exit(within, "the guest to power off");
    }

    pub fn fail(&self, what: &str) -> ! {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        panic!(
            "{what} ({}); console:\n{}",
            self.dir.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Connect to the agent socket; a reader thread forwards every guest message.
    fn connect(&mut self, deadline: Instant) {
        if self.rx.is_some() {
            return;
        }
        let sock = self.dir.join("agent.sock");
        let stream = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            if Instant::now() > deadline {
                self.fail("QEMU never opened the agent socket");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let (txm, rx) = mpsc::channel();
        let reader = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Ok(m) = serde_json::from_str::<GuestMessage>(&line) {
                    if txm.send(m).is_err() {
                        break;
                    }
                }
            }
        });
        self.rx = Some(rx);
        self.tx = Some(stream);
    }

    fn next(&mut self, deadline: Instant, what: &str) -> GuestMessage {
        loop {
            match self
                .rx
                .as_ref()
                .unwrap()
                .recv_timeout(Duration::from_secs(2))
            {
                Ok(m) => return m,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.fail("agent socket closed"),
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.fail(&format!("QEMU exited ({st}) while waiting for {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}"));
            }
        }
    }

    /// The agent's `ready` from a boot whose kernel command line satisfies `boot`.
    pub fn wait_ready(
        &mut self,
        within: Duration,
        what: &str,
        boot: impl Fn(&str) -> bool,
    ) -> ReadyInfo {
        let deadline = Instant::now() + within;
        self.connect(deadline);
        loop {
            if let GuestMessage::Ready(r) = self.next(deadline, what) {
                if boot(&r.cmdline) {
                    return r;
                }
            }
        }
    }

    /// Run a command through the agent: (exit code, stdout).
    pub fn exec(&mut self, argv: &[&str]) -> (i32, String) {
        self.jobs += 1;
        let id = format!("c{}", self.jobs);
        let msg = serde_json::json!({"type": "exec", "id": id, "argv": argv, "timeout_secs": 60});
        let tx = self.tx.as_mut().expect("exec before the agent was ready");
        tx.write_all(format!("{msg}\n").as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut out = Vec::new();
        loop {
            match self.next(deadline, &format!("{argv:?}")) {
                GuestMessage::Output {
                    id: j,
                    stream: Stream::Stdout,
                    data,
                } if j == id => out.extend_from_slice(&data.0),
                GuestMessage::Exit { id: j, status } if j == id => {
                    return (
                        status.code.unwrap_or(-1),
                        String::from_utf8_lossy(&out).into_owned(),
                    )
                }
                _ => {}
            }
        }
    }

    /// Wait for QEMU to exit by itself (with `exit_on_reboot`, a guest reboot is an exit).
    pub fn wait_exit(&mut self, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A qcow2 overlay in `dir` over `disk` (of `format`), so a VM never writes to a build's image.
pub fn overlay(disk: &Path, format: &str, dir: &Path) -> PathBuf {
    let p = dir.join("disk.qcow2");
    qemu::create_overlay(disk, format, &p, None).unwrap();
    p
}
