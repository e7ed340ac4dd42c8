//! `cosa buildextend-live`, `cosa iso customize`, `cosa pxe customize` on the demo
//! stream, and the real coreos-installer's `iso` and `pxe` commands on the same
//! media (they follow Fedora CoreOS's layout). The media are booted under QEMU
//! (TCG), two VMs at a time, with SeaBIOS and OVMF: kola's install-media scenarios
//! (`cosa kola run --tag testiso`: live from the ISO as a CD and as a disk,
//! installs from the ISO and by PXE, online and offline, to 512-byte and 4K
//! disks), then what they do not cover: media customized by coreos-installer.
//! Everything is checked through the agent channel, not by sleeping.

use tests_integration as common;

use std::path::Path;
use std::time::Duration;

use common::vm::Vm;
use common::DemoBuild;
use cosa::kola::protocol::ReadyInfo;
use cosa::kola::qemu::{DirectBoot, Drive};

const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

const DAY0_IGN: &str = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/cosa-day0","mode":420,"contents":{"source":"data:,hello%20from%20day%200%0A"}}]}}"#;

fn sha256(p: &Path) -> String {
    cosa::builds::artifact::sha256_file(p).unwrap().0
}

/// Start a VM of 1.5 GiB with `drives` (and a kernel); `dir` keeps console.txt
/// and the agent socket. Without `reboot`, a guest reboot ends QEMU.
fn start(
    dir: &Path,
    uefi: bool,
    reboot: bool,
    drives: Vec<Drive>,
    kernel: Option<DirectBoot>,
) -> Vm {
    let mut spec = Vm::spec(dir, uefi);
    spec.memory_mib = 1536;
    spec.exit_on_reboot = !reboot;
    spec.drives = drives;
    spec.direct_boot = kernel;
    Vm::start(dir, &spec)
}

/// The agent's `ready` from a boot whose kernel command line satisfies `boot`.
fn wait_ready(vm: &mut Vm, what: &str, boot: impl Fn(&str) -> bool) -> ReadyInfo {
    vm.wait_ready(BOOT_TIMEOUT, what, boot)
}

fn cdrom(iso: &Path, bootindex: u32) -> Drive {
    Drive::cdrom(iso).bootindex(bootindex)
}

fn disk(file: &Path, bootindex: u32, readonly: bool) -> Drive {
    let d = Drive::disk(file, "raw").bootindex(bootindex);
    if readonly {
        d.readonly()
    } else {
        d
    }
}

fn empty_disk(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(3 << 30).unwrap();
}

fn is_live(cmdline: &str) -> bool {
    cmdline.contains("coreos.liveiso=") || !cmdline.contains("root=LABEL=root")
}

/// A customized ISO's live Ignition config and kernel argument reach the live system.
fn iso_live_ignition(iso: &Path, dir: &Path) {
    let mut vm = start(dir, false, false, vec![cdrom(iso, 1)], None);
    let r = wait_ready(&mut vm, "the customized live system", |c| {
        c.contains("coreos.liveiso=")
    });
    assert!(r.cmdline.contains("cosa.test=live"), "{}", r.cmdline);
    let (code, text) = vm.exec(&["cat", "/etc/cosa-day0"]);
    assert_eq!((code, text.as_str()), (0, "hello from day 0\n"));
}

/// Media customized by coreos-installer install the embedded metal image to the
/// first disk unattended and reboot into it; the installed system has the
/// embedded configs' files (and the derived image's) and kernel argument.
fn iso_offline_install(iso: &Path, dir: &Path, uefi: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let target = dir.join("target.raw");
    empty_disk(&target);
    let drives = vec![disk(&target, 1, false), cdrom(iso, 2)];
    let mut vm = start(dir, uefi, true, drives, None);
    let r = wait_ready(&mut vm, "the installed system", |c| !is_live(c));
    assert!(r.cmdline.contains("cosa.test=day0"), "{}", r.cmdline);
    assert!(
        !r.cmdline.contains("no_timer_check"),
        "--dest-karg-delete no_timer_check was not applied: {}",
        r.cmdline
    );
    check_day0_files(&mut vm);
}

fn check_day0_files(vm: &mut Vm) {
    let (code, text) = vm.exec(&["cat", "/etc/cosa-day0"]);
    assert_eq!((code, text.as_str()), (0, "hello from day 0\n"));
    let (code, text) = vm.exec(&["cat", "/etc/cosa-extra"]);
    assert_eq!((code, text.as_str()), (0, "an extra file\n"));
    let (code, _) = vm.exec(&["test", "-e", "/run/demo/firstboot.done"]);
    assert_eq!(code, 0, "the installed system did not run its first boot");
    let (code, _) = vm.exec(&["test", "-f", &format!("/{DERIVED_FILE}")]);
    assert_eq!(
        code, 0,
        "the installed system lacks the derived image's file"
    );
}

/// A live system booted by PXE from an initramfs that `coreos-installer pxe
/// customize --live-ignition` made: the config reaches it.
fn pxe_live_ignition(kernel: &Path, initrd: &Path, dir: &Path) {
    let pxe = DirectBoot {
        kernel: kernel.to_path_buf(),
        initrd: Some(initrd.to_path_buf()),
        cmdline:
            "ignition.firstboot ignition.platform.id=metal console=ttyS0,115200n8 no_timer_check"
                .into(),
    };
    let mut vm = start(dir, false, false, Vec::new(), Some(pxe));
    wait_ready(&mut vm, "the PXE live system", is_live);
    let (code, text) = vm.exec(&["cat", "/etc/cosa-day0"]);
    assert_eq!((code, text.as_str()), (0, "hello from day 0\n"));
}

/// A derived image (the demo build plus a layer with [`DERIVED_FILE`]) made into a
/// build by `cosa import`: the live media are made from it like from any build.
fn import_derived(b: &DemoBuild, t: &Path) {
    b.cosa(&["build-container"]).ok();
    let archive = b.image("ostree");
    let dir = t.join("derived");
    let st = cmdext::command("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("oci:{}", dir.display()))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo copy");
    common::append_oci_layer(
        &dir,
        &[(DERIVED_FILE, tar::EntryType::Regular, b"derived\n", 0o644)],
    );
    let out = b.cosa(&["import", &format!("oci:{}", dir.display())]).ok();
    assert!(out.contains("Imported"), "{out}");
}

/// What the derived image adds (an out-of-tree driver's stand-in).
const DERIVED_FILE: &str = "usr/share/cosa-derived";

/// What `--dest-file` adds, written by a config of its own for coreos-installer
/// (which has no `--dest-file`).
const EXTRA_IGN: &str = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/cosa-extra","mode":420,"contents":{"source":"data:,an%20extra%20file%0A"}}]}}"#;

fn live_build() -> (DemoBuild, tempfile::TempDir) {
    let b = DemoBuild::new();
    let t = tempfile::tempdir().unwrap();
    import_derived(&b, t.path());
    b.cosa(&["buildextend-live"]).ok();
    std::fs::write(t.path().join("day0.ign"), DAY0_IGN).unwrap();
    std::fs::write(t.path().join("extra.ign"), EXTRA_IGN).unwrap();
    (b, t)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// coreos-installer must succeed: its stdout.
fn ci_ok(args: &[&str]) -> String {
    let (ok, out, err) = common::run_coreos_installer(args);
    assert!(ok, "coreos-installer {args:?}: {err}");
    out
}

/// coreos-installer must fail: its stderr.
fn ci_err(args: &[&str]) -> String {
    let (ok, _, err) = common::run_coreos_installer(args);
    assert!(!ok, "coreos-installer {args:?} succeeded");
    err
}

/// The real coreos-installer reads, customizes, resets and extracts our media,
/// and each tool takes the other's customized media as customized.
fn coreos_installer_interop(b: &DemoBuild, t: &Path) {
    let iso = b.image("live-iso");
    let iso_s = s(&iso);
    let ign = t.join("day0.ign");
    let default = ci_ok(&["iso", "kargs", "show", "--default", iso_s]);
    assert_eq!(ci_ok(&["iso", "kargs", "show", iso_s]), default);
    assert!(default.contains("coreos.liveiso=demo-"), "{default}");
    assert!(ci_err(&["iso", "ignition", "show", iso_s]).contains("No embedded Ignition config"));

    // cosa's customization, as coreos-installer reads it, and undone by its reset.
    let cosa_iso = t.join("ci-cosa.iso");
    b.cosa(&[
        "iso",
        "customize",
        iso_s,
        "-o",
        s(&cosa_iso),
        "--dest-ignition",
        s(&ign),
        "--dest-device",
        "/dev/vda",
        "--live-karg-append",
        "cosa.test=live",
    ])
    .ok();
    // An ordinary file, as coreos-installer leaves one: the umask's mode, not 0600.
    let mode = std::os::unix::fs::PermissionsExt::mode(&cosa_iso.metadata().unwrap().permissions());
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
        .unwrap();
    assert_eq!(mode & 0o777, 0o666 & !umask, "{}", cosa_iso.display());
    let live: serde_json::Value =
        serde_json::from_str(&ci_ok(&["iso", "ignition", "show", s(&cosa_iso)])).unwrap();
    let paths: Vec<&str> = live["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/etc/coreos/dest.ign",
            "/etc/coreos/installer.d/0000-customize.yaml"
        ]
    );
    let kargs = ci_ok(&["iso", "kargs", "show", s(&cosa_iso)]);
    assert_eq!(kargs.trim(), format!("{} cosa.test=live", default.trim()));
    let e = ci_err(&[
        "iso",
        "customize",
        "--dest-device",
        "/dev/vda",
        "-o",
        s(&t.join("x.iso")),
        s(&cosa_iso),
    ]);
    assert!(e.contains("already customized"), "{e}");
    let reset = t.join("ci-reset.iso");
    ci_ok(&["iso", "reset", "-o", s(&reset), s(&cosa_iso)]);
    assert_eq!(
        sha256(&reset),
        sha256(&iso),
        "coreos-installer's reset of cosa's customization is not the original ISO"
    );

    // coreos-installer's own edits, and cosa on its output.
    let emb = t.join("ci-embed.iso");
    ci_ok(&[
        "iso",
        "ignition",
        "embed",
        "-i",
        s(&ign),
        "-o",
        s(&emb),
        iso_s,
    ]);
    assert_eq!(
        ci_ok(&["iso", "ignition", "show", s(&emb)]).trim(),
        DAY0_IGN
    );
    ci_ok(&["iso", "kargs", "modify", "-a", "cosa.test=ci", s(&emb)]);
    assert!(ci_ok(&["iso", "kargs", "show", s(&emb)]).contains("cosa.test=ci"));
    let e = b
        .cosa(&[
            "iso",
            "customize",
            s(&emb),
            "-o",
            s(&t.join("y.iso")),
            "--dest-device",
            "/dev/vda",
        ])
        .err();
    assert!(e.contains("customized already"), "{e}");
    let again = t.join("ci-again.iso");
    b.cosa(&[
        "iso",
        "customize",
        s(&emb),
        "-o",
        s(&again),
        "--dest-device",
        "/dev/vda",
        "-f",
    ])
    .ok();
    assert!(ci_ok(&["iso", "ignition", "show", s(&again)]).contains("installer.d"));
    ci_ok(&["iso", "kargs", "reset", s(&emb)]);
    assert_eq!(ci_ok(&["iso", "kargs", "show", s(&emb)]), default);
    ci_ok(&["iso", "ignition", "remove", s(&emb)]);
    assert_eq!(
        sha256(&emb),
        sha256(&iso),
        "ignition remove + kargs reset is not the original ISO"
    );

    // The PXE artifacts inside the ISO are the build's.
    let pxe = t.join("ci-pxe");
    std::fs::create_dir(&pxe).unwrap();
    ci_ok(&["iso", "extract", "pxe", "-o", s(&pxe), iso_s]);
    for (name, file) in [
        ("live-kernel", "vmlinuz"),
        ("live-initramfs", "initrd.img"),
        ("live-rootfs", "rootfs.img"),
    ] {
        let stem = iso.file_stem().unwrap().to_str().unwrap();
        assert_eq!(
            sha256(&pxe.join(format!("{stem}-{file}"))),
            sha256(&b.image(name)),
            "{name}"
        );
    }
    // Refusals: what the OS cannot do, media customized by the other tool.
    let e = ci_err(&[
        "iso",
        "customize",
        "--network-keyfile",
        s(&ign),
        "-o",
        s(&t.join("z.iso")),
        iso_s,
    ]);
    assert!(
        e.contains("does not support customizing network settings"),
        "{e}"
    );
    let ci_initrd = t.join("ci-initrd.img");
    ci_ok(&[
        "pxe",
        "customize",
        "--dest-device",
        "/dev/vda",
        "-o",
        s(&ci_initrd),
        s(&b.image("live-initramfs")),
    ]);
    let e = b
        .cosa(&[
            "pxe",
            "customize",
            s(&ci_initrd),
            "-o",
            s(&t.join("w.img")),
            "--dest-device",
            "/dev/vda",
        ])
        .err();
    assert!(e.contains("customized already"), "{e}");
    let cosa_initrd = t.join("cosa-initrd.img");
    b.cosa(&[
        "pxe",
        "customize",
        s(&b.image("live-initramfs")),
        "-o",
        s(&cosa_initrd),
        "--dest-device",
        "/dev/vda",
    ])
    .ok();
    let e = ci_err(&[
        "pxe",
        "customize",
        "--dest-device",
        "/dev/vda",
        "-o",
        s(&t.join("v.img")),
        s(&cosa_initrd),
    ]);
    assert!(e.contains("already customized"), "{e}");
}

fn validate_meta(path: &Path) {
    common::assert_meta_schema_valid(path);
}

#[test]
fn live_media_are_recorded_and_customize_refuses_bad_input() {
    let (b, t) = live_build();
    let meta = b.meta();
    assert_eq!(meta["coreos-assembler.oci-imported"], true);
    for name in ["live-kernel", "live-initramfs", "live-rootfs", "live-iso"] {
        let p = b.image(name);
        assert_eq!(
            meta["images"][name]["sha256"].as_str().unwrap(),
            sha256(&p),
            "{name}"
        );
    }
    validate_meta(&b.build_dir().join("meta.json"));
    let iso = b.image("live-iso");
    // Both El Torito entries, the GPT with the EFI partition, the build's label.
    let out = cmdext::command("xorriso")
        .args(["-indev"])
        .arg(&iso)
        .args(["-report_el_torito", "plain", "-report_system_area", "plain"])
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("El Torito boot img :   1  BIOS"),
        "{report}"
    );
    assert!(
        report.contains("El Torito boot img :   2  UEFI"),
        "{report}"
    );
    assert!(report.contains("EFI boot partition"), "{report}");
    let id = meta["buildid"].as_str().unwrap();
    assert!(
        report.contains(&format!("Volume id    : 'demo-{id}'")),
        "{report}"
    );
    // Again: nothing rebuilt.
    assert!(b.cosa(&["buildextend-live"]).ok().contains("already built"));

    let before = sha256(&iso);
    let out = t.path().join("custom.iso");
    let bad = t.path().join("bad.ign");
    for (text, why) in [
        (r#"{"ignition":{"version":"2.2.0"}}"#, "3.x.y"),
        ("{not json", "not valid JSON"),
        (r#"{"storage":{}}"#, "ignition.version"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let e = b
            .cosa(&[
                "iso",
                "customize",
                iso.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--dest-ignition",
                bad.to_str().unwrap(),
            ])
            .err();
        assert!(e.contains(why), "{e}");
        assert!(!out.exists(), "output written despite an invalid config");
    }
    // --output is required, and may not be the input.
    b.cosa(&[
        "iso",
        "customize",
        iso.to_str().unwrap(),
        "--dest-device",
        "/dev/vda",
    ])
    .err();
    let e = b
        .cosa(&[
            "iso",
            "customize",
            iso.to_str().unwrap(),
            "-o",
            iso.to_str().unwrap(),
            "--dest-device",
            "/dev/vda",
            "-f",
        ])
        .err();
    assert!(e.contains("never modified"), "{e}");

    let ign = t.path().join("day0.ign");
    b.cosa(&[
        "iso",
        "customize",
        iso.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dest-ignition",
        ign.to_str().unwrap(),
        "--dest-device",
        "/dev/vda",
    ])
    .ok();
    assert_eq!(sha256(&iso), before, "the original ISO changed");
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        std::fs::metadata(&iso).unwrap().len()
    );
    // Exists: refused without --force.
    b.cosa(&[
        "iso",
        "customize",
        iso.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--dest-device",
        "/dev/vda",
    ])
    .err();

    // PXE: the initramfs copy gains the customization; the originals stay.
    let initramfs = b.image("live-initramfs");
    let initramfs_sum = sha256(&initramfs);
    let custom_initrd = t.path().join("custom-initrd.img");
    b.cosa(&[
        "pxe",
        "customize",
        initramfs.to_str().unwrap(),
        "-o",
        custom_initrd.to_str().unwrap(),
        "--dest-ignition",
        ign.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(sha256(&initramfs), initramfs_sum);
    let orig = std::fs::read(&initramfs).unwrap();
    let new = std::fs::read(&custom_initrd).unwrap();
    assert!(new.len() > orig.len() && new.starts_with(&orig));
    let e = b
        .cosa(&[
            "pxe",
            "customize",
            initramfs.to_str().unwrap(),
            "-o",
            t.path().join("k.img").to_str().unwrap(),
            "--live-karg-append",
            "quiet",
        ])
        .err();
    assert!(e.contains("PXE media carry no kernel command line"), "{e}");

    coreos_installer_interop(&b, t.path());
}

/// kola's install-media scenarios on the derived build's media: every one must
/// run and pass (`cosa kola run --tag testiso`).
fn kola_testiso(b: &DemoBuild) {
    let out = b
        // The imported build has no qemu image to probe KVM with, and no
        // lockfile saying the demo agent is in the image.
        .cosa(&[
            "kola",
            "run",
            "--tag",
            "testiso",
            "--parallel",
            "2",
            "--qemu-accel",
            "tcg",
            "--transport",
            "agent",
            "--json",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["transport"], "agent", "{v}");
    let tests = v["tests"].as_array().unwrap();
    let names: Vec<&str> = tests.iter().map(|t| t["name"].as_str().unwrap()).collect();
    // Every scenario (their names are upstream's: testiso's unit tests check them).
    let all: Vec<&str> = cosa::kola::testiso::ALL.iter().map(|s| s.name).collect();
    assert_eq!(names.len(), all.len(), "{names:?}");
    for want in all {
        assert!(names.contains(&want), "{want} did not run: {names:?}");
    }
    for t in tests {
        assert_eq!(t["result"], "PASS", "{t}");
    }
    assert_eq!(v["result"], "PASS");
}

#[test]
fn live_media_boot_and_install_under_bios_and_uefi() {
    let (b, t) = live_build();
    // The scenarios kola runs (the agent transport; tests/systemd.rs runs them over SSH).
    kola_testiso(&b);

    // What kola's scenarios do not cover: media customized by coreos-installer
    // (an install under UEFI, a PXE live config) and cosa's live kernel arguments.
    let iso = b.image("live-iso");
    let ign = t.path().join("day0.ign");
    let ci_custom = t.path().join("ci-install.iso");
    ci_ok(&[
        "iso",
        "customize",
        "--dest-device",
        "/dev/vda",
        "--dest-ignition",
        s(&ign),
        "--dest-ignition",
        s(&t.path().join("extra.ign")),
        "--dest-karg-append",
        "cosa.test=day0",
        "--dest-karg-delete",
        "no_timer_check",
        "-o",
        s(&ci_custom),
        s(&iso),
    ]);
    let live_custom = t.path().join("live.iso");
    b.cosa(&[
        "iso",
        "customize",
        s(&iso),
        "-o",
        s(&live_custom),
        "--live-ignition",
        s(&ign),
        "--live-karg-append",
        "cosa.test=live",
    ])
    .ok();
    let initramfs = b.image("live-initramfs");
    let rootfs = b.image("live-rootfs");
    let ci_live_initramfs = t.path().join("ci-live-initramfs.img");
    ci_ok(&[
        "pxe",
        "customize",
        "--live-ignition",
        s(&ign),
        "-o",
        s(&ci_live_initramfs),
        s(&initramfs),
    ]);
    let ci_live_initrd = t.path().join("ci-live-initrd.img");
    cosa::live::pxe_initrd(&ci_live_initramfs, &rootfs, &ci_live_initrd).unwrap();
    let kernel = b.image("live-kernel");
    let vms = t.path().join("vms");

    // Two VMs at a time: the install beside the two live boots.
    std::thread::scope(|s| {
        let a = s.spawn(|| iso_offline_install(&ci_custom, &vms.join("install-uefi"), true));
        iso_live_ignition(&live_custom, &vms.join("live-ignition"));
        pxe_live_ignition(&kernel, &ci_live_initrd, &vms.join("pxe-live-ignition"));
        a.join().unwrap();
    });
}
