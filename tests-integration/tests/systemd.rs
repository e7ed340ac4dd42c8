//! The systemd variant (`cosa init --variant systemd`): Debian 12's packages,
//! repackaged by packages/debrepo, composed like any stream; checked with rpm,
//! ostree and the initramfs's own cpio listing; then booted and tested by
//! `cosa kola run` over SSH.

use tests_integration as common;

use std::path::{Path, PathBuf};

use cmdext::CommandRunExt;
use common::{cosa_in, path_exists, repo_root, require_root};

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
    let broken = result("ext.broken.provisioning");
    assert_eq!(broken["result"], "FAIL", "{broken:#}");
    let why = broken["output"].as_str().unwrap();
    assert!(
        why.contains("the boot failed before SSH was ready: emergency shell")
            && why.contains("Ignition (fetch-offline)"),
        "{why}"
    );
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

    kola_over_ssh(&wd, t.path());
}
