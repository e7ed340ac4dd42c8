//! Drives `demo-agent serve` as a host process over a Unix socket (standing in
//! for the virtio-serial port) with the host-side protocol library: exec,
//! a test run through an autopkgtest reboot and its resumption, timeouts,
//! failed units, bad frames and shutdown.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use agent_protocol::framing::{JobEnd, JobResult};
use agent_protocol::{
    bundle, Connection, ExecRequest, GuestMessage, HostMessage, RunRequest, ShutdownAction,
    PROTOCOL_VERSION,
};

type Conn = Connection<UnixStream, UnixStream>;

struct Guest {
    root: tempfile::TempDir,
    listener: UnixListener,
    agent: Option<Child>,
}

impl Guest {
    fn new() -> Guest {
        let root = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(root.path().join("port.sock")).unwrap();
        listener.set_nonblocking(true).unwrap();
        Guest {
            root,
            listener,
            agent: None,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    fn boot(&mut self) -> Conn {
        let s = self.boot_raw();
        Connection::new(s.try_clone().unwrap(), s)
    }

    /// Starts (or, after a simulated reboot, restarts) the agent and accepts
    /// its connection.
    fn boot_raw(&mut self) -> UnixStream {
        let root = self.root.path();
        let agent = cmdext::command(env!("CARGO_BIN_EXE_demo-agent"))
            .arg("serve")
            .arg("--port")
            .arg(root.join("port.sock"))
            .arg("--root")
            .arg(root)
            .arg("--reboot-command")
            .arg(format!("touch {}", root.join("rebooted").display()))
            .arg("--poweroff-command")
            .arg(format!("touch {}", root.join("powered-off").display()))
            .spawn()
            .unwrap();
        self.agent = Some(agent);
        let start = Instant::now();
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("agent never connected: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }

    /// What a reboot does to the agent: it dies and /run is emptied.
    fn power_cycle(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill().unwrap();
            a.wait().unwrap();
        }
        let _ = fs::remove_dir_all(self.path("run"));
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

fn wait_for(p: &Path) {
    let start = Instant::now();
    while !p.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            p.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn exec(conn: &mut Conn, id: &str, argv: &[&str], timeout: Option<u64>) -> JobResult {
    conn.exec(ExecRequest {
        id: id.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        timeout_secs: timeout,
    })
    .unwrap();
    conn.wait_job(id, |_| {}).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn whole_session() {
    let mut g = Guest::new();
    // Enabled units recorded by firstboot: one fine, one failing.
    let units_d = g.path("etc/demo-agent/units.d");
    fs::create_dir_all(&units_d).unwrap();
    fs::write(units_d.join("fine.service"), "/bin/sleep 30\n").unwrap();
    fs::write(units_d.join("broken.service"), "/bin/sh -c 'exit 3'\n").unwrap();

    let mut conn = g.boot();
    // The failing unit is reported once it has exited.
    let start = Instant::now();
    let ready = loop {
        let r = conn.hello().unwrap();
        if !r.failed_units.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break r;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ready.protocol, PROTOCOL_VERSION);
    assert!(!ready.boot_id.is_empty());
    assert!(!ready.kernel_release.is_empty());
    assert_eq!(ready.reboot_mark, None);
    assert_eq!(ready.resuming, None);
    assert_eq!(ready.failed_units.len(), 1, "{:?}", ready.failed_units);
    assert_eq!(ready.failed_units[0].name, "broken.service");
    assert_eq!(ready.failed_units[0].reason, "exited with status 3");

    conn.send(&HostMessage::Ping { id: 42 }).unwrap();
    loop {
        match conn.recv().unwrap() {
            GuestMessage::Pong { id } => {
                assert_eq!(id, 42);
                break;
            }
            GuestMessage::Ready(_) => {}
            m => panic!("unexpected {m:?}"),
        }
    }

    // Ad-hoc exec: both streams and the exit code.
    let r = exec(
        &mut conn,
        "e1",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        None,
    );
    assert_eq!(text(&r.stdout), "out\n");
    assert_eq!(text(&r.stderr), "err\n");
    match r.end {
        JobEnd::Exit(s) => {
            assert_eq!(s.code, Some(3));
            assert!(!s.timed_out);
        }
        e => panic!("{e:?}"),
    }

    // A test that reboots once through the autopkgtest protocol.
    let src = tempfile::tempdir().unwrap();
    let script = src.path().join("reboot.sh");
    fs::write(
        &script,
        format!(
            r#"#!/bin/sh
set -e
echo "name=$KOLA_TEST data=$(cat "$KOLA_EXT_DATA/greeting") cwd=$(pwd) foo=$FOO mark=${{AUTOPKGTEST_REBOOT_MARK:-none}}"
case "${{AUTOPKGTEST_REBOOT_MARK:-}}" in
  "") echo before-reboot; {reboot} step1 ;;
  step1) echo after-reboot; echo done >&2; exit 0 ;;
esac
echo not-reached
exit 7
"#,
            reboot = g.path("tmp/autopkgtest-reboot").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let data = src.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("greeting"), "hi").unwrap();
    let (exec_name, tar) = bundle::pack(&script, Some(&data)).unwrap();
    assert_eq!(exec_name, "reboot.sh");
    conn.run(RunRequest {
        id: "t1".into(),
        name: "ext.demo.reboot".into(),
        exec: exec_name,
        bundle: tar.into(),
        env: [("FOO".to_string(), "bar".to_string())].into(),
        timeout_secs: Some(60),
    })
    .unwrap();
    let r = conn.wait_job("t1", |_| {}).unwrap();
    let test_dir = g.path("var/lib/demo-agent/job/test");
    assert_eq!(
        text(&r.stdout),
        format!(
            "name=ext.demo.reboot data=hi cwd={} foo=bar mark=none\nbefore-reboot\n",
            test_dir.display()
        )
    );
    assert_eq!(
        r.end,
        JobEnd::Reboot {
            mark: "step1".into()
        }
    );
    wait_for(&g.path("rebooted"));
    assert_eq!(
        fs::read_to_string(g.path("var/lib/demo-agent/job/mark")).unwrap(),
        "step1\n"
    );

    // "Reboot": the agent restarts and resumes the test without a new `run`.
    g.power_cycle();
    let mut conn = g.boot();
    let ready = conn.hello().unwrap();
    assert_eq!(ready.reboot_mark.as_deref(), Some("step1"));
    let resumed = ready.resuming.expect("resuming");
    assert_eq!(
        (resumed.id.as_str(), resumed.name.as_str()),
        ("t1", "ext.demo.reboot")
    );
    let r = conn.wait_job("t1", |_| {}).unwrap();
    assert_eq!(
        text(&r.stdout),
        format!(
            "name=ext.demo.reboot data=hi cwd={} foo=bar mark=step1\nafter-reboot\n",
            test_dir.display()
        )
    );
    assert_eq!(text(&r.stderr), "done\n");
    match r.end {
        JobEnd::Exit(s) => assert!(s.success(), "{s}"),
        e => panic!("{e:?}"),
    }
    assert!(!g.path("var/lib/demo-agent/job").exists());

    // Timeout: the whole process group dies, background children included.
    let t0 = Instant::now();
    let r = exec(
        &mut conn,
        "slow",
        &["sh", "-c", "sleep 30 & echo started; sleep 30"],
        Some(1),
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(text(&r.stdout), "started\n");
    match r.end {
        JobEnd::Exit(s) => {
            assert_eq!(s.signal, Some(9));
            assert!(s.timed_out);
        }
        e => panic!("{e:?}"),
    }

    // Errors: a job that cannot start, a kill for an unknown job.
    let r = exec(&mut conn, "nope", &["/nonexistent/program"], None);
    assert!(
        matches!(r.end, JobEnd::Error(ref m) if m.contains("nonexistent")),
        "{:?}",
        r.end
    );
    conn.send(&HostMessage::Kill { id: "ghost".into() })
        .unwrap();
    match conn.recv().unwrap() {
        GuestMessage::Error { id, message } => {
            assert_eq!(id.as_deref(), Some("ghost"));
            assert!(message.contains("no such job"));
        }
        m => panic!("unexpected {m:?}"),
    }

    conn.send(&HostMessage::Shutdown {
        action: ShutdownAction::Poweroff,
    })
    .unwrap();
    assert_eq!(
        conn.recv().unwrap(),
        GuestMessage::ShuttingDown {
            action: ShutdownAction::Poweroff
        }
    );
    wait_for(&g.path("powered-off"));
}

#[test]
fn bad_frames_and_interrupted_test() {
    let mut g = Guest::new();
    // A test left behind by a crash (no mark): reported once, then forgotten.
    let job = g.path("var/lib/demo-agent/job");
    fs::create_dir_all(job.join("test")).unwrap();
    fs::write(
        job.join("job.json"),
        r#"{"id":"old","name":"ext.demo.crashed","exec":"t","env":{},"timeout_secs":null}"#,
    )
    .unwrap();
    let mut raw = g.boot_raw();
    let mut conn = Connection::new(raw.try_clone().unwrap(), raw.try_clone().unwrap());
    match conn.recv().unwrap() {
        GuestMessage::Error { id, message } => {
            assert_eq!(id.as_deref(), Some("old"));
            assert!(
                message.contains("ext.demo.crashed was interrupted"),
                "{message}"
            );
        }
        m => panic!("unexpected {m:?}"),
    }
    assert!(matches!(conn.recv().unwrap(), GuestMessage::Ready(r) if r.resuming.is_none()));
    assert!(!job.exists());

    for garbage in ["this is not json\n", "{\"type\":\"frobnicate\"}\n"] {
        raw.write_all(garbage.as_bytes()).unwrap();
        match conn.recv().unwrap() {
            GuestMessage::Error { id: None, message } => {
                assert!(message.starts_with("invalid message"), "{message}")
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    // The session survives bad input.
    assert_eq!(conn.hello().unwrap().protocol, PROTOCOL_VERSION);
}
