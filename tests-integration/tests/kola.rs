//! `cosa kola run` on the demo stream's qemu image, booted under QEMU (TCG
//! here): built-in tests with SeaBIOS and OVMF, the stream's external tests,
//! a VM that never boots, a failing test, and the reports.
//!
//! The image is built once per test binary; scenarios take turns (at most two
//! VMs at a time on this 2-core machine).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

/// One scenario at a time: each runs at most two VMs.
static VMS: Mutex<()> = Mutex::new(());

use tests_integration::cosa_bin;

/// The demo stream workdir with one build and its qemu image, made once.
fn workdir() -> &'static Path {
    static WD: OnceLock<PathBuf> = OnceLock::new();
    WD.get_or_init(|| {
        let repo = tests_integration::repo_root().join("packages/out/repo");
        assert!(
            repo.join("repodata/repomd.xml").exists(),
            "the demo stream's RPM repo is missing at {}: run packages/build-repo first",
            repo.display()
        );
        let wd = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kola-workdir");
        let _ = std::fs::remove_dir_all(&wd);
        let stream = tests_integration::repo_root();
        ok(cosa(
            &wd,
            &["init", stream.to_str().unwrap(), "-C", wd.to_str().unwrap()],
        ));
        ok(cosa(&wd, &["build"]));
        ok(cosa(&wd, &["buildextend-qemu"]));
        wd
    })
}

fn cosa(wd: &Path, args: &[&str]) -> Output {
    cmdext::command(cosa_bin())
        .args(args)
        .env("COSA_DIR", wd)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "cosa failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kola(wd: &Path, out: &Path, args: &[&str]) -> std::process::Child {
    cmdext::command(cosa_bin())
        .args([
            "kola",
            "run",
            "--json",
            "--output-dir",
            out.to_str().unwrap(),
        ])
        .args(args)
        .env("COSA_DIR", wd)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn report(out: &Path) -> serde_json::Value {
    let p = out.join("reports/report.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn result_of<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in report: {r:#}"))
}

/// The JUnit file parses as XML and names every test.
fn junit_valid(out: &Path, names: &[&str]) {
    let p = out.join("reports/junit.xml");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut r = quick_xml::Reader::from_str(&text);
    loop {
        match r.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{} is not well-formed XML: {e}", p.display()),
        }
    }
    assert!(text.contains("<testsuite"), "{text}");
    for n in names {
        assert!(text.contains(&format!("name=\"{n}\"")), "{n} not in {text}");
    }
}

fn outdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kola-out-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn basic_passes_with_bios_and_uefi() {
    let wd = workdir();
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let (bios, uefi) = (outdir("bios"), outdir("uefi"));
    let b = kola(wd, &bios, &["-j", "1", "--qemu-firmware", "bios", "basic"]);
    let u = kola(wd, &uefi, &["-j", "1", "--qemu-firmware", "uefi", "basic"]);
    for (child, out, fw) in [(b, &bios, "bios"), (u, &uefi, "uefi")] {
        let o = child.wait_with_output().unwrap();
        let s = ok(o);
        let summary: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(summary["result"], "PASS", "{summary:#}");
        let r = report(out);
        assert_eq!(r["result"], "PASS", "{r:#}");
        assert_eq!(r["firmware"], fw);
        assert!(["kvm", "tcg"].contains(&r["accel"].as_str().unwrap()));
        assert_eq!(result_of(&r, "basic")["result"], "PASS");
        junit_valid(out, &["basic"]);
        let console =
            String::from_utf8_lossy(&std::fs::read(out.join("basic/console.txt")).unwrap())
                .into_owned();
        assert!(console.contains("system up"), "{console}");
        assert!(out.join("basic/agent.log").is_file());
        assert!(out.join("basic/config.ign").is_file());
    }
}

/// An HTTP listener on the host's loopback answering every request with 200,
/// counting the connections it got.
struct LoopbackHttp(
    std::net::TcpListener,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
);

impl LoopbackHttp {
    fn start() -> LoopbackHttp {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (l, c) = (listener.try_clone().unwrap(), count.clone());
        // Lives until the test process ends: it only ever answers on loopback.
        std::thread::spawn(move || {
            for mut conn in l.incoming().flatten() {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        LoopbackHttp(listener, count)
    }

    fn connections(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A kola test that must not reach `listener` through the user network's host
/// address (10.0.2.2), as an unrestricted QEMU user network would let it.
fn loopback_isolation_test(dir: &Path, listener: &std::net::TcpListener) -> PathBuf {
    let port = listener.local_addr().unwrap().port();
    let tests = dir.join("isolation");
    let test = tests.join("loopback");
    std::fs::create_dir_all(test.join("data")).unwrap();
    std::fs::write(test.join("data/port"), port.to_string()).unwrap();
    let exe = test.join("test.sh");
    std::fs::write(
        &exe,
        r#"#!/bin/sh
## kola:
##   timeoutMin: 2
##   exclusive: false
port=$(cat "$KOLA_EXT_DATA/port")
for t in timeout wget; do
    command -v $t >/dev/null || { echo "no $t in the guest: cannot probe"; exit 2; }
done
# The probe means something only once DHCP has put the guest on 10.0.2.0/24
# (a restricted network offers no gateway: 10.0.2.2 is on the link).
i=0
until ip route get 10.0.2.2 >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 60 ] || { echo "no route to 10.0.2.2 after 60 s: cannot probe"; ip route; exit 2; }
    sleep 1
done
# A restricted network drops the SYN: the connection hangs until timeout ends it.
# (busybox's own wget -T crashes on that path.)
timeout 5 wget -q -O /dev/null "http://10.0.2.2:$port/"
status=$?
if [ $status -eq 0 ]; then
    echo "reached the host's loopback listener at 10.0.2.2:$port"
    exit 1
fi
echo "10.0.2.2:$port is unreachable from the guest (wget: exit status $status)"
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    tests
}

#[test]
fn stream_external_and_builtin_tests_pass() {
    let wd = workdir();
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let out = outdir("ext");
    // The guest's network is restricted: a host loopback listener stays unreached.
    let listener = LoopbackHttp::start();
    let isolation = loopback_isolation_test(&outdir("isolation-tests"), &listener.0);
    let o = kola(
        wd,
        &out,
        &[
            "-j",
            "2",
            "-E",
            isolation.to_str().unwrap(),
            "ext.config.*",
            "ext.isolation.*",
            "firstboot",
            "reboot",
        ],
    )
    .wait_with_output()
    .unwrap();
    ok(o);
    let r = report(&out);
    let names = [
        "ext.config.basic",
        "ext.config.files",
        "ext.config.kernel",
        "ext.config.reboot",
        "ext.isolation.loopback",
        "firstboot",
        "reboot",
    ];
    for n in names {
        assert_eq!(result_of(&r, n)["result"], "PASS", "{n}: {r:#}");
    }
    let probe = result_of(&r, "ext.isolation.loopback")["output"]
        .as_str()
        .unwrap();
    assert!(probe.contains("is unreachable from the guest"), "{probe}");
    assert_eq!(
        listener.connections(),
        0,
        "a guest connected to the host's loopback listener"
    );
    junit_valid(&out, &names);
}

#[test]
fn never_booting_vm_and_failing_test_are_reported() {
    let wd = workdir();
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = outdir("bad-inputs");
    std::fs::create_dir_all(&scratch).unwrap();
    // A blank disk: the firmware finds nothing to boot and the agent never answers.
    let blank = scratch.join("blank.qcow2");
    let st = cmdext::command("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&blank)
        .arg("1G")
        .status()
        .unwrap();
    assert!(st.success());
    // A test that fails with output of its own.
    let tests = scratch.join("tests");
    std::fs::create_dir_all(tests.join("fails")).unwrap();
    std::fs::create_dir_all(tests.join("panics")).unwrap();
    // Both share one VM (exclusive: false): each answers for its own console.
    let scripts = [
        (
            "fails",
            "echo 'checking the frobnicator'\necho 'frobnicator is broken' >&2\nexit 3\n",
        ),
        (
            "panics",
            "echo 'Kernel panic - not syncing: staged by the kola test' > /dev/console\n\
             echo 'demo[42]: segfault at 0 ip 0 sp 0 error 4 (staged by the kola test)' > /dev/kmsg\n\
             echo done\n",
        ),
    ];
    for (name, body) in scripts {
        let exe = tests.join(name).join("test.sh");
        std::fs::write(
            &exe,
            format!("#!/bin/sh\n## kola:\n##   timeoutMin: 2\n##   exclusive: false\n{body}"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let (hang_out, fail_out) = (outdir("hang"), outdir("fail"));
    let hang = kola(
        wd,
        &hang_out,
        &[
            "-j",
            "1",
            "--qemu-accel",
            "tcg",
            "--boot-timeout",
            "15",
            "--qemu-image",
            blank.to_str().unwrap(),
            "basic",
        ],
    );
    let fail = kola(
        wd,
        &fail_out,
        &["-j", "1", "-E", tests.to_str().unwrap(), "ext.tests.*"],
    );

    let o = hang.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report(&hang_out);
    let t = result_of(&r, "basic");
    assert_eq!(t["result"], "FAIL");
    let output = t["output"].as_str().unwrap();
    assert!(
        output.contains("did not boot to its agent within 15 s") && output.contains("console tail"),
        "{output}"
    );
    junit_valid(&hang_out, &["basic"]);

    let o = fail.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = report(&fail_out);
    assert_eq!(r["result"], "FAIL");
    let t = result_of(&r, "ext.tests.fails");
    assert_eq!(t["result"], "FAIL");
    let output = t["output"].as_str().unwrap();
    assert!(output.contains("checking the frobnicator"), "{output}");
    assert!(output.contains("frobnicator is broken"), "{output}");
    assert!(output.contains("exit status 3"), "{output}");
    assert_eq!(t["vm"], "batch-1");
    // A test that passed in the guest fails on what it put on the console,
    // quoted; the other test on the same VM does not answer for it.
    let t = result_of(&r, "ext.tests.panics");
    assert_eq!(t["result"], "FAIL", "{r:#}");
    assert_eq!(t["vm"], "batch-1");
    let output = t["output"].as_str().unwrap();
    assert!(
        output.contains("kernel panic: \"Kernel panic - not syncing: staged by the kola test\""),
        "{output}"
    );
    // Only in the kernel log (the console's printk level hides it): read through the agent.
    assert!(
        output.contains("segfault: ") && output.contains("(staged by the kola test)"),
        "{output}"
    );
    assert!(!result_of(&r, "ext.tests.fails")["output"]
        .as_str()
        .unwrap()
        .contains("staged by the kola test"));
    junit_valid(&fail_out, &["ext.tests.fails", "ext.tests.panics"]);
}

#[test]
fn missing_image_says_what_to_run() {
    let wd = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kola-noimage");
    let _ = std::fs::remove_dir_all(&wd);
    let stream = tests_integration::repo_root();
    ok(cosa(
        &wd,
        &["init", stream.to_str().unwrap(), "-C", wd.to_str().unwrap()],
    ));
    // A build without images: meta.json without images.qemu.
    let b = wd.join("builds/1.0/x86_64");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("meta.json"), r#"{"buildid":"1.0","name":"demo","ostree-commit":"0000000000000000000000000000000000000000000000000000000000000000","ostree-version":"1.0","ostree-timestamp":"2026-01-01T00:00:00Z"}"#).unwrap();
    std::fs::write(
        wd.join("builds/builds.json"),
        r#"{"schema-version":"1.0.0","builds":[{"id":"1.0","arches":["x86_64"]}],"timestamp":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let o = cosa(&wd, &["kola", "run", "basic"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cosa buildextend-qemu"), "{err}");
    // The install-media scenarios need the live media, not the qemu image.
    let o = cosa(
        &wd,
        &["kola", "run", "--qemu-accel", "tcg", "iso-live-login.bios"],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the install-media tests need the build's live media")
            && err.contains("cosa buildextend-live"),
        "{err}"
    );
}

#[test]
fn kernel_override_is_the_kernel_booted() {
    let wd = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kola-override");
    let _ = std::fs::remove_dir_all(&wd);
    let stream = tests_integration::repo_root();
    workdir(); // the repo check, and one build at a time
    ok(cosa(
        &wd,
        &["init", stream.to_str().unwrap(), "-C", wd.to_str().unwrap()],
    ));
    // The stream pins the newer kernel; the older one overrides it.
    let repo = tests_integration::repo_root().join("packages/out/repo");
    let older = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("kernel-") && n.ends_with(".rpm")
        })
        .min()
        .expect("a kernel RPM in the demo repo");
    std::fs::copy(
        &older,
        wd.join("overrides/rpm").join(older.file_name().unwrap()),
    )
    .unwrap();
    ok(cosa(&wd, &["build"]));
    ok(cosa(&wd, &["buildextend-qemu"]));
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let out = outdir("override");
    ok(kola(&wd, &out, &["-j", "1", "kernel-override"])
        .wait_with_output()
        .unwrap());
    let r = report(&out);
    let t = result_of(&r, "kernel-override");
    assert_eq!(t["result"], "PASS", "{r:#}");
    let output = t["output"].as_str().unwrap();
    let nvra = older.file_stem().unwrap().to_string_lossy().into_owned();
    assert!(output.contains(&format!("override: {nvra}")), "{output}");
}

/// `cosa run -c` with its serial console on pipes: everything it printed, and
/// QEMU's exit. `input` is typed once `ready` appears; without `input` the VM
/// is killed once `ready` appears.
fn run_console(wd: &Path, args: &[&str], ready: &str, input: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut child = cmdext::command(cosa_bin())
        .args(["run", "-c"])
        .args(args)
        .env("COSA_DIR", wd)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !seen.lock().unwrap().contains(ready) {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "cosa run {args:?}: no {ready:?} on the console:\n{}",
                seen.lock().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    match input {
        Some(text) => {
            child
                .stdin
                .as_mut()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            while child.try_wait().unwrap().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("cosa run {args:?}: the guest did not power off");
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        }
        None => {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    text
}

#[test]
fn cosa_run_logs_in_and_takes_kargs_and_disks() {
    let wd = workdir();
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    // The motd is what the root shell prints once logged in.
    let motd = "Demo CoreOS: an image-based test OS";
    // A host directory the guest mounts read-only (9p).
    let share = tempfile::tempdir().unwrap();
    std::fs::write(share.path().join("marker"), "host-file-COSA-BIND\n").unwrap();
    let bind = format!("{},/var/mnt/host", share.path().display());
    std::thread::scope(|s| {
        let plain = s.spawn(|| run_console(wd, &["--no-autologin"], "login:", None));
        let out = run_console(
            wd,
            &["--kargs", "cosa.test=run", "--add-disk", "1G", "--bind-ro", &bind],
            motd,
            Some(
                "echo COSA-RUN-$((6*7)); cat /proc/cmdline; ls /sys/block; \
                 cat /var/mnt/host/marker; touch /var/mnt/host/new || echo NOT-WRITABLE; poweroff\n",
            ),
        );
        assert!(out.contains("COSA-RUN-42"), "no root shell:\n{out}");
        assert!(out.contains("cosa.test=run"), "--kargs not booted:\n{out}");
        assert!(out.contains("vdb"), "--add-disk not attached:\n{out}");
        assert!(
            out.contains("host-file-COSA-BIND"),
            "--bind-ro not mounted:\n{out}"
        );
        assert!(
            out.contains("NOT-WRITABLE"),
            "--bind-ro is writable:\n{out}"
        );
        assert!(!share.path().join("new").exists());
        let plain = plain.join().unwrap();
        assert!(
            !plain.contains(motd),
            "--no-autologin logged in anyway:\n{plain}"
        );
    });
    // Bad input: refused before any VM starts.
    let o = cosa(wd, &["run", "--add-disk", "5 G"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--add-disk"));
    let o = cosa(
        wd,
        &["run", "--bind-ro", "/nonexistent-cosa-dir,/var/mnt/x"],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--bind-ro") && err.contains("/nonexistent-cosa-dir"),
        "{err}"
    );
}
