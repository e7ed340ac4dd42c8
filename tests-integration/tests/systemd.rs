//! The systemd variant (`cosa init --variant systemd`): Debian 12's packages,
//! repackaged by packages/debrepo, composed like any stream; checked with rpm,
//! ostree and the initramfs's own cpio listing.

use tests_integration as common;

use std::path::{Path, PathBuf};

use cmdext::CommandRunExt;
use common::vm::{overlay, Vm};
use common::{cosa_in, path_exists, repo_root, require_root};
use cosa::image::disk::{BOOT_SIZE, BOOT_START, ROOT_START};
use cosa::kola::qemu::UserNet;

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

/// One partition of a raw disk, copied out to `out` (debugfs reads a file).
fn partition(disk: &Path, start: u64, size: Option<u64>, out: &Path) {
    let mib = 1024 * 1024;
    let mut cmd = cmdext::command("dd");
    cmd.arg(format!("if={}", disk.display()))
        .arg(format!("of={}", out.display()))
        .arg("bs=1M")
        .arg(format!("skip={}", start / mib))
        .arg("conv=sparse")
        .arg("status=none");
    if let Some(s) = size {
        cmd.arg(format!("count={}", s / mib));
    }
    cmd.run().unwrap();
}

/// `debugfs -R REQUEST` on an ext4 image.
fn debugfs(fs: &Path, request: &str) -> String {
    let o = cmdext::command("debugfs")
        .arg("-R")
        .arg(request)
        .arg(fs)
        .run_get_output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Boot the variant's qemu image with an Ignition config on fw_cfg until the
/// login prompt, then read what the first boot left on the disk.
fn first_boot_provisions_the_deployment(wd: &Path, t: &Path) {
    cosa_in(wd, &["buildextend-qemu"]).ok();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("builds/latest/x86_64/meta.json")).unwrap())
            .unwrap();
    let qcow2 = wd
        .join("builds/latest/x86_64")
        .join(meta["images"]["qemu"]["path"].as_str().unwrap());
    let dir = t.join("vm");
    std::fs::create_dir_all(&dir).unwrap();
    let ign = dir.join("config.ign");
    std::fs::write(
        &ign,
        r#"{"ignition":{"version":"3.3.0"},
            "passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcosaTestKeyNotForLoginXXXXXXXXXXXXXXXXXXXX cosa-test"]}]},
            "storage":{"files":[{"path":"/etc/cosa-hello","mode":420,"contents":{"source":"data:,hello%20from%20ignition%0A"}}]}}"#,
    )
    .unwrap();
    let disk = overlay(&qcow2, "qcow2", &dir);
    let mut spec = Vm::spec(&dir, false);
    spec.memory_mib = 1536;
    spec.drives = vec![cosa::kola::qemu::Drive::disk(&disk, "qcow2")];
    spec.ignition = Some(ign);
    spec.network = Some(UserNet::default());
    spec.qmp_socket = Some(dir.join("qmp.sock"));
    let mut vm = Vm::start(&dir, &spec);
    vm.wait_console("login:", std::time::Duration::from_secs(420));
    vm.powerdown(std::time::Duration::from_secs(120));
    let console = vm.console();
    drop(vm);
    assert!(
        console.contains("Ignition Complete"),
        "no Ignition Complete"
    );

    let raw = dir.join("disk.raw");
    cmdext::command("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&disk)
        .arg(&raw)
        .run()
        .unwrap();
    let boot = dir.join("boot.ext4");
    partition(&raw, BOOT_START, Some(BOOT_SIZE), &boot);
    let root = dir.join("root.ext4");
    partition(&raw, ROOT_START, None, &root);
    // The stamp is gone: the next boot is not a first boot.
    let ls = debugfs(&boot, "ls -l /");
    assert!(!ls.contains("ignition.firstboot"), "{ls}");
    // What Ignition wrote is in the deployment's /etc.
    let deploys = debugfs(&root, "ls /ostree/deploy/demo/deploy");
    let dep = deploys
        .split_whitespace()
        .find(|n| n.ends_with(".0"))
        .unwrap_or_else(|| panic!("no deployment in {deploys}"));
    let etc = format!("/ostree/deploy/demo/deploy/{dep}/etc");
    assert_eq!(
        debugfs(&root, &format!("cat {etc}/cosa-hello")),
        "hello from ignition\n"
    );
    let passwd = debugfs(&root, &format!("cat {etc}/passwd"));
    assert!(passwd.contains("\ncore:"), "{passwd}");
}

#[test]
fn the_variant_composes_with_dracut_ignition_and_ostree() {
    require_root();
    systemd_repo();
    let t = tempfile::tempdir().unwrap();
    let wd = t.path().join("work");
    let config = repo_root().join("stream");
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

    first_boot_provisions_the_deployment(&wd, t.path());
}
