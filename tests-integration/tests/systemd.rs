//! The systemd variant (`cosa init --variant systemd`): Debian 12's packages,
//! repackaged by packages/debrepo, composed like any stream; checked with rpm,
//! ostree and the initramfs's own cpio listing; then booted and tested by
//! `cosa kola run` over SSH; then its live media, customized with Ignition
//! configs, boot live with dracut from the ISO and by PXE and install, and
//! kola's install-media scenarios run over SSH (the whole matrix with
//! `./ci/test --long`); its
//! OCI image and other platforms are read by skopeo, qemu-img and tar; then a
//! second, signed build is reached by `cosa kola run-upgrade` from the first.

use tests_integration as common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdext::CommandRunExt;
use common::vm::Vm;
use common::{cosa_in, path_exists, repo_root, require_root, Http};
use cosa::kola::qemu::{DirectBoot, Drive, QemuSpec, UserNet, HOST_FORWARD_ADDR};
use serde_json::json;

/// The variant's RPM repo (made by `debrepo build`), or a panic saying so.
fn systemd_repo() -> PathBuf {
    common::built_repo(
        "packages/out/systemd/repo",
        "the systemd variant's",
        "`cargo run -p debrepo -- build packages/closures/systemd.toml --out packages/out/systemd`",
    )
}

fn rpm_q(root: &Path, args: &[&str]) -> String {
    cmdext::command("rpm")
        .arg("--dbpath")
        .arg(root.join("usr/lib/sysimage/rpm"))
        .args(args)
        .run_get_string()
        .unwrap()
}

/// The file names in a (gzip or zstd) cpio initramfs.
fn initramfs_listing(img: &Path) -> String {
    let cat = if std::fs::read(img).unwrap().starts_with(&[0x1f, 0x8b]) {
        "zcat"
    } else {
        "zstdcat"
    };
    cmdext::command("sh")
        .arg("-c")
        .arg(format!("{cat} \"$1\" | cpio -t --quiet"))
        .arg("sh")
        .arg(img)
        .run_get_string()
        .unwrap()
}

/// A stream test whose Ignition config is invalid (a relative path): Ignition
/// refuses it in the initramfs, the boot must stop there.
fn broken_provisioning_test(dir: &Path) -> PathBuf {
    let t = dir.join("tests/kola/provisioning");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        t.join("config.ign"),
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"relative/file","contents":{"source":"data:,x"}}]}}"#,
    )
    .unwrap();
    let script = t.join("test.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n## kola:\n##   timeoutMin: 4\necho provisioned anyway\n",
    )
    .unwrap();
    cmdext::command("chmod")
        .arg("+x")
        .arg(&script)
        .run()
        .unwrap();
    dir.to_path_buf()
}

/// The variant's kola suite, over SSH: the built-in tests and the stream's
/// own, each VM provisioned by the real Ignition with the run's key; and a
/// config Ignition refuses stops the boot, reported as such.
fn kola_over_ssh(wd: &Path, t: &Path) {
    cosa_in(wd, &["buildextend-qemu"]).ok();
    let out = t.join("kola");
    let broken = broken_provisioning_test(&t.join("broken"));
    let run = cosa_in(
        wd,
        &[
            "kola",
            "run",
            "--json",
            "-j",
            "2",
            "--output-dir",
            out.to_str().unwrap(),
            "-E",
            broken.to_str().unwrap(),
        ],
    );
    // One test fails on purpose: the run says FAIL.
    let stderr = String::from_utf8_lossy(&run.0.stderr);
    assert!(
        !run.0.status.success(),
        "kola passed a broken config: {stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&run.0.stdout)
        .unwrap_or_else(|e| panic!("kola --json: {e}; stderr: {stderr}"));
    assert_eq!(json["transport"], "ssh", "{json:#}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("reports/report.json")).unwrap()).unwrap();
    assert_eq!(r["transport"], "ssh", "{r:#}");
    let result = |name: &str| {
        r["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {r:#}"))
            .clone()
    };
    for name in [
        "basic",
        "firstboot",
        "reboot",
        "ostree-status",
        "ext.config.files",
        "ext.config.systemd.running",
        "ext.config.systemd.ignition",
    ] {
        assert_eq!(result(name)["result"], "PASS", "{name}: {:#}", result(name));
    }
    // The demo OS's own tests are denylisted on the variant.
    assert_eq!(result("ext.config.basic")["result"], "SKIP");
    // The upgrade test needs an older build: reported as skipped, with the reason.
    let up = result("ostree.upgrade");
    assert_eq!(up["result"], "SKIP", "{up:#}");
    assert!(
        up["output"].as_str().unwrap().contains("no build older"),
        "{up:#}"
    );
    let broken = result("ext.broken.provisioning");
    assert_eq!(broken["result"], "FAIL", "{broken:#}");
    let why = broken["output"].as_str().unwrap();
    assert!(
        why.contains("the boot failed before SSH was ready: emergency shell")
            && why.contains("Ignition (fetch-offline)"),
        "{why}"
    );
}

/// An Ignition config writing `text` to /etc/cosa-day0 and enabling the
/// report units `units` (name, contents): the variant has no agent, so its
/// guests report on the serial console.
fn report_config(text: &str, units: &[(&str, &str)]) -> serde_json::Value {
    let units: Vec<_> = units
        .iter()
        .map(|(name, contents)| json!({"name": name, "enabled": true, "contents": contents}))
        .collect();
    json!({
        "ignition": {"version": "3.3.0"},
        "storage": {"files": [{
            "path": "/etc/cosa-day0",
            "mode": 0o644,
            "contents": {"source": format!("data:,{}", text.replace(' ', "%20"))}
        }]},
        "systemd": {"units": units}
    })
}

/// The live system's reports: its config's file and the root image it runs
/// from, before the installer starts (which may reboot at once); the
/// installer's result, after it (when it does not reboot).
const LIVE_REPORT: &str = "[Unit]\nBefore=coreos-installer.service\n[Service]\nType=oneshot\n\
ExecStart=/bin/sh -c 'echo \"cosa-report: $$(cat /etc/cosa-day0) from $$(cat /run/cosa-live/image)\" >/dev/ttyS0'\n\
[Install]\nWantedBy=multi-user.target\n";
const INSTALL_REPORT: &str = "[Unit]\nAfter=coreos-installer.service\n[Service]\nType=oneshot\n\
ExecStart=/bin/sh -c 'echo \"cosa-report: install $$(systemctl is-active coreos-installer.service)\" >/dev/ttyS0'\n\
[Install]\nWantedBy=multi-user.target\n";

/// The installed system's report: its config's file, the kernel argument the
/// install added, and the system state once the boot is done (a simple
/// service, so the boot does not wait for it).
const INSTALLED_REPORT: &str = "[Service]\nType=simple\n\
ExecStart=/bin/sh -c 'echo \"cosa-report: $$(cat /etc/cosa-day0) $$(grep -o cosa.test=day0 /proc/cmdline) $$(systemctl is-system-running --wait) $$(systemctl --failed --no-legend --plain)\" >/dev/ttyS0'\n\
[Install]\nWantedBy=multi-user.target\n";

const LIVE_TIMEOUT: Duration = Duration::from_secs(600);

fn meta_image(wd: &Path, name: &str) -> PathBuf {
    let build = wd.join("builds/latest/x86_64");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(build.join("meta.json")).unwrap()).unwrap();
    let p = meta["images"][name]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("no images.{name} in meta.json"));
    build.join(p)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A VM of `memory_mib` in `dir` and the empty 3 GiB disk it installs to.
fn install_vm(dir: &Path, memory_mib: u64) -> (QemuSpec, PathBuf) {
    let mut spec = Vm::spec(dir, false);
    spec.memory_mib = memory_mib;
    let target = dir.join("target.raw");
    std::fs::File::create(&target)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    (spec, target)
}

/// The variant's live media: `cosa buildextend-live`, then Day-0 customized
/// copies. The ISO boots live (dracut's cosa-live module), applies its live
/// Ignition config, installs the metal image with the destination config to
/// the first disk and reboots into it, where Ignition applies that config and
/// the system comes up running. The PXE media (kernel, initramfs + rootfs, no
/// ostree= argument) boot live the same way and install; their live config
/// merges one from the host over HTTP, so the initramfs brings its network up
/// for Ignition (it does not otherwise: the ISO and qemu boots have none).
fn live_media(wd: &Path, t: &Path) {
    let out = cosa_in(wd, &["buildextend-live"]).ok();
    assert!(out.contains("live-iso"), "{out}");
    let live_ign = t.join("live.ign");
    let dest_ign = t.join("dest.ign");
    std::fs::write(
        &live_ign,
        report_config(
            "live day 0",
            &[
                ("cosa-report.service", LIVE_REPORT),
                ("cosa-report-install.service", INSTALL_REPORT),
            ],
        )
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        &dest_ign,
        report_config(
            "hello from day 0",
            &[("cosa-report.service", INSTALLED_REPORT)],
        )
        .to_string(),
    )
    .unwrap();
    // The ISO is customized by the real coreos-installer, with install hooks
    // (units ordered around coreos-installer.service by its name).
    for (kind, script) in common::HOOKS {
        std::fs::write(t.join(format!("{kind}.sh")), script).unwrap();
    }
    let iso = t.join("custom.iso");
    let (ok, _, err) = common::run_coreos_installer(&[
        "iso",
        "customize",
        "--live-ignition",
        s(&live_ign),
        "--dest-ignition",
        s(&dest_ign),
        "--dest-device",
        "/dev/vda",
        "--dest-karg-append",
        "cosa.test=day0",
        "--pre-install",
        s(&t.join("pre.sh")),
        "--post-install",
        s(&t.join("post.sh")),
        "-o",
        s(&iso),
        s(&meta_image(wd, "live-iso")),
    ]);
    assert!(ok, "coreos-installer iso customize: {err}");

    // The PXE live config: the ISO's, merging a config the host serves (it
    // replaces /etc/cosa-day0), fetched in the initramfs over the user network.
    let www = t.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("remote.ign"),
        report_config("remote day 0", &[]).to_string(),
    )
    .unwrap();
    let http = Http::serve(&www);
    let mut pxe_live = report_config(
        "live day 0",
        &[
            ("cosa-report.service", LIVE_REPORT),
            ("cosa-report-install.service", INSTALL_REPORT),
        ],
    );
    pxe_live["ignition"]["config"] = json!({"merge": [{
        "source": format!("http://{HOST_FORWARD_ADDR}:{}/remote.ign", http.1)
    }]});
    let pxe_live_ign = t.join("pxe-live.ign");
    std::fs::write(&pxe_live_ign, pxe_live.to_string()).unwrap();
    let pxe = t.join("pxe-initramfs.img");
    cosa_in(
        wd,
        &[
            "pxe",
            "customize",
            s(&meta_image(wd, "live-initramfs")),
            "-o",
            s(&pxe),
            "--live-ignition",
            s(&pxe_live_ign),
        ],
    )
    .ok();
    let initrd = t.join("pxe-initrd.img");
    cosa::live::pxe_initrd(&pxe, &meta_image(wd, "live-rootfs"), &initrd).unwrap();
    let dir = t.join("vm-pxe");
    let (mut spec, target) = install_vm(&dir, 3072);
    spec.drives = vec![Drive::disk(&target, "raw")];
    spec.network = Some(UserNet {
        forwards: vec![http.1],
        ..Default::default()
    });
    spec.direct_boot = Some(DirectBoot {
        kernel: meta_image(wd, "live-kernel"),
        initrd: Some(initrd),
        cmdline: "ignition.firstboot ignition.platform.id=metal console=ttyS0,115200n8 no_timer_check coreos.inst.install_dev=/dev/vda coreos.inst.skip_reboot".into(),
    });
    // The ISO's install and the PXE boot, two VMs at a time.
    std::thread::scope(|scope| {
        let iso_run = scope.spawn(|| iso_install(t, &iso));
        let vm = Vm::start(&dir, &spec);
        vm.wait_console(
            "cosa-report: remote day 0 from /root.squashfs",
            LIVE_TIMEOUT,
        );
        vm.wait_console("cosa-report: install active", LIVE_TIMEOUT);
        iso_run.join().unwrap();
    });
}

/// The install-media scenarios `./ci/test` runs on the variant (the rest with
/// `--long`): a live boot, and installs from the ISO and by PXE.
const TESTISO_SHORT: &[&str] = &[
    "iso-live-login.uefi",
    "iso-offline-install.4k.uefi",
    "pxe-offline-install.bios",
];

/// kola's install-media scenarios on the variant's media, over SSH: each VM's
/// media carry the run's key in their Ignition config.
fn kola_testiso(wd: &Path) {
    let mut args = vec!["kola", "run", "--parallel", "2", "--json"];
    if common::long() {
        args.extend(["--tag", "testiso"]);
    } else {
        args.extend(TESTISO_SHORT);
    }
    let out = cosa_in(wd, &args).ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["transport"], "ssh", "{v}");
    let tests = v["tests"].as_array().unwrap();
    let want = if common::long() {
        12
    } else {
        TESTISO_SHORT.len()
    };
    assert_eq!(tests.len(), want, "{v}");
    for t in tests {
        assert_eq!(t["result"], "PASS", "{t}");
    }
}

/// The customized ISO installs to the first disk and reboots into the
/// installed system, its hooks on either side of the install.
fn iso_install(t: &Path, iso: &Path) {
    let dir = t.join("vm-iso");
    let (mut spec, target) = install_vm(&dir, 2048);
    spec.drives = vec![
        Drive::disk(&target, "raw").bootindex(1),
        Drive::cdrom(iso).bootindex(2),
    ];
    let vm = Vm::start(&dir, &spec);
    vm.wait_console(
        "cosa-report: live day 0 from /run/media/iso/images/pxeboot/rootfs.img",
        LIVE_TIMEOUT,
    );
    vm.wait_console(
        "cosa-report: hello from day 0 cosa.test=day0 running",
        LIVE_TIMEOUT,
    );
    common::assert_hooks_ran(&vm.console());
    drop(vm);
}

/// `qemu-img info`'s format of `path`, read as `format` when given.
fn qemu_img_format(path: &Path, format: Option<&str>) -> String {
    let mut cmd = cmdext::command("qemu-img");
    cmd.args(["info", "--output=json"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let info: serde_json::Value = cmd.arg(path).run_get_json().unwrap();
    info["format"].as_str().unwrap().to_string()
}

/// The variant's OCI image and the platforms the other steps did not boot,
/// each read by an independent consumer: skopeo, qemu-img, tar.
fn other_artifacts(wd: &Path) {
    let out = cosa_in(wd, &["osbuild", "metal4k", "aws", "azure", "gcp", "--json"]).ok();
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["images"].as_array().unwrap().len(), 4, "{out}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("builds/latest/x86_64/meta.json")).unwrap())
            .unwrap();
    let oci = format!("oci-archive:{}", meta_image(wd, "ostree").display());
    let info: serde_json::Value = cmdext::command("skopeo")
        .arg("inspect")
        .arg(&oci)
        .run_get_json()
        .unwrap();
    assert_eq!(info["Labels"]["ostree.commit"], meta["ostree-commit"]);
    assert_eq!(qemu_img_format(&meta_image(wd, "metal4k"), None), "raw");
    assert_eq!(qemu_img_format(&meta_image(wd, "aws"), None), "vmdk");
    assert_eq!(
        qemu_img_format(&meta_image(wd, "azure"), Some("vpc")),
        "vpc"
    );
    let list = cmdext::command("tar")
        .arg("-tzf")
        .arg(meta_image(wd, "gcp"))
        .run_get_string()
        .unwrap();
    assert_eq!(list, "disk.raw\n");
}

#[test]
fn the_variant_composes_with_dracut_ignition_and_ostree() {
    require_root();
    systemd_repo();
    let t = tempfile::tempdir().unwrap();
    let wd = t.path().join("work");
    let config = repo_root();
    let out = cosa_in(
        &wd,
        &[
            "init",
            config.to_str().unwrap(),
            "-C",
            wd.to_str().unwrap(),
            "--variant",
            "systemd",
        ],
    )
    .ok();
    assert!(out.contains("variant systemd"), "{out}");
    let out = cosa_in(&wd, &["build"]).ok();
    assert!(out.contains("Built 1."), "{out}");

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("builds/latest/x86_64/meta.json")).unwrap())
            .unwrap();
    let commit = meta["ostree-commit"].as_str().unwrap();
    let repo = wd.join("cache/repo");
    let ostree = |args: &[&str]| {
        cmdext::command("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args)
            .run_get_string()
            .unwrap()
    };
    ostree(&["fsck"]);
    let root = t.path().join("co");
    ostree(&["checkout", "-H", commit, root.to_str().unwrap()]);

    // Debian's packages, by name and version, in the tree's rpmdb; the stream's
    // own kernel and layout beside them; no busybox.
    let all = rpm_q(&root, &["-qa", "--qf", "%{NAME}\n"]);
    for p in [
        "systemd",
        "dracut-core",
        "ignition",
        "ostree-boot",
        "openssh-server",
        "kernel",
        "filesystem",
    ] {
        assert!(all.lines().any(|l| l == p), "{p} not in the rpmdb:\n{all}");
    }
    assert!(!all.lines().any(|l| l == "busybox"), "{all}");
    let v = rpm_q(
        &root,
        &[
            "-q",
            "--qf",
            "%{EPOCH}:%{VERSION}-%{RELEASE}",
            "openssh-server",
        ],
    );
    assert!(v.starts_with("1:9.2p1-"), "{v}");

    // systemd is init; the merged /usr; conffiles moved to /usr/etc.
    let init = std::fs::read_link(root.join("usr/sbin/init")).unwrap();
    assert!(
        init.to_string_lossy().ends_with("systemd/systemd"),
        "{init:?}"
    );
    assert!(path_exists(&root, "usr/lib/systemd/systemd"));
    assert!(path_exists(&root, "usr/etc/ssh/sshd_config"));
    assert!(!path_exists(&root, "lib/systemd") || root.join("lib").is_symlink());

    // Maintainer-script effects, as declarative files.
    let preset = std::fs::read_to_string(
        root.join("usr/lib/systemd/system-preset/80-debrepo-openssh-server.preset"),
    )
    .unwrap();
    assert!(preset.contains("enable ssh.service"), "{preset}");
    let sysusers =
        std::fs::read_to_string(root.join("usr/lib/sysusers.d/debrepo-openssh-server.conf"))
            .unwrap();
    assert!(sysusers.contains("u sshd"), "{sysusers}");
    assert_eq!(
        std::fs::read_link(root.join("usr/etc/alternatives/awk")).unwrap(),
        Path::new("/usr/bin/mawk")
    );

    // dracut, the default generator, made the initramfs with Ignition and ostree.
    let kver = std::fs::read_dir(root.join("usr/lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let img = root
        .join("usr/lib/modules")
        .join(kver)
        .join("initramfs.img");
    let listing = initramfs_listing(&img);
    for f in [
        "usr/bin/ignition",
        "usr/lib/ostree/ostree-prepare-root",
        "usr/lib/systemd/system/ignition-fetch.service",
        "usr/lib/systemd/system/ostree-prepare-root.service",
        "usr/lib/systemd/systemd",
    ] {
        assert!(listing.lines().any(|l| l == f), "{f} not in the initramfs");
    }

    kola_over_ssh(&wd, t.path());
    cosa_run_over_ssh(&wd, t.path());
    live_media(&wd, t.path());
    kola_testiso(&wd);
    other_artifacts(&wd);
    upgrade(&wd, t.path());
}

/// `cosa run --ssh` hands the terminal (here, a pipe of commands) to an SSH
/// session with the key injected as kola does; `--bind-ro` is a host directory
/// systemd mounts read-only (the mount unit the first-boot config enables).
fn cosa_run_over_ssh(wd: &Path, t: &Path) {
    use std::io::Write;
    let share = t.join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("marker"), "host-file-COSA-BIND\n").unwrap();
    let mut child = cmdext::command(common::cosa_bin())
        .args(["run", "--ssh", "--bind-ro"])
        .arg(format!("{},/var/mnt/host", share.display()))
        .env("COSA_DIR", wd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"id -un; cat /var/mnt/host/marker; systemctl is-active var-mnt-host.mount; \
              awk '$2 == \"/var/mnt/host\" { split($4, o, \",\"); print $3, o[1] }' /proc/mounts\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["core", "host-file-COSA-BIND", "active", "9p ro"],
        "{stderr}"
    );
    assert!(stderr.contains("guest powered off"), "{stderr}");
}

/// A second build (one file added through overrides/rootfs), signed with the
/// stream's key; the first build's qemu image upgrades to it in the guest through
/// the remote its stream configured (`gpg-verify=true` and the stream's public
/// key, baked into the image), boots it, keeps an /etc change, rolls back. When
/// the guest trusts another key, the pull is refused.
fn upgrade(wd: &Path, t: &Path) {
    let first = cosa_in(wd, &["meta", "--get", "buildid"]).ok();
    let added = wd.join("overrides/rootfs/usr/share/cosa-upgrade-test");
    std::fs::create_dir_all(added.parent().unwrap()).unwrap();
    std::fs::write(&added, "the second build\n").unwrap();
    let out = cosa_in(wd, &["build"]).ok();
    assert!(out.contains("Built "), "{out}");
    let second = cosa_in(wd, &["meta", "--get", "buildid"]).ok();
    assert_ne!(first.trim(), second.trim());
    let keys = t.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (home, fpr) = common::demo_stream_key_home(&keys);
    let (other, _) = common::gpg_home(&keys, "other");
    cosa_in(wd, &["sign", "--gpg-homedir", s(&home), "--gpg-key", &fpr]).ok();
    let other_key = keys.join("other.gpg");
    common::gpg_export(&other, &other_key);

    // The accepted upgrade as `kola run` runs it (the stream's remote and key, from
    // the image), and the refused one through `kola run-upgrade --gpg-key` with
    // another key: two VMs at a time.
    let out = t.join("upgrade");
    let refused_out = t.join("upgrade-refused");
    let (r, refused) = std::thread::scope(|scope| {
        let refused = scope.spawn(|| {
            cosa_in(
                wd,
                &[
                    "kola",
                    "run-upgrade",
                    "--json",
                    "--from",
                    first.trim(),
                    "--gpg-key",
                    s(&other_key),
                    "--output-dir",
                    s(&refused_out),
                ],
            )
        });
        let accepted = cosa_in(
            wd,
            &[
                "kola",
                "run",
                "--json",
                "--output-dir",
                s(&out),
                "ostree.upgrade",
            ],
        );
        (accepted, refused.join().unwrap())
    });
    let stdout = String::from_utf8_lossy(&r.0.stdout);
    let stderr = String::from_utf8_lossy(&r.0.stderr);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("reports/report.json")).unwrap()).unwrap();
    assert!(r.0.status.success(), "{stdout}\n{stderr}\n{report:#}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["result"], "PASS", "{json:#}");
    assert_eq!(report["tests"][0]["name"], "ostree.upgrade", "{report:#}");
    let output = report["tests"][0]["output"].as_str().unwrap();
    for want in [
        "gpg-verify true, keys: the image's /usr/share/demo/keys/stream.gpg",
        &format!("booted build {}", second.trim()),
        "/etc change kept",
        &format!("rolled back: booted build {} again", first.trim()),
    ] {
        assert!(output.contains(want), "{want:?} not in {output}");
    }

    // Signed by a key the remote does not trust: the pull is refused, and the
    // report names both builds and quotes the console.
    let stdout = String::from_utf8_lossy(&refused.0.stdout);
    assert!(!refused.0.status.success(), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["result"], "FAIL", "{json:#}");
    let output = json["tests"][0]["output"].as_str().unwrap();
    assert!(
        output.contains(&format!("build {}", first.trim()))
            && output.contains(&format!("build {}", second.trim()))
            && output.contains("ostree admin upgrade")
            && output.to_lowercase().contains("signature")
            && output.contains("console tail"),
        "{output}"
    );
}
