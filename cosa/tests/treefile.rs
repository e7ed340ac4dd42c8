//! The treefile parser against a manifest tree laid out like a real stream's
//! config (fedora-coreos-config): `manifest.yaml` including `manifests/*`, in the
//! fixture under `tests/fixtures/treefile/` and in `testdata/fcos-like/`.

use std::path::{Path, PathBuf};

use cosa::config::lockfile::Lockfile;
use cosa::config::treefile::Treefile;
use serde_json::json;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/treefile/fcos-like")
        .canonicalize()
        .unwrap()
}

fn load(arch: &str) -> Treefile {
    Treefile::load(&fixture().join("manifest.yaml"), arch)
        .unwrap_or_else(|e| panic!("{arch}: {e:#}"))
}

#[test]
fn fcos_like_tree_resolves_for_x86_64() {
    let dir = fixture();
    let m = dir.join("manifests");
    let tf = load("x86_64");

    assert_eq!(tf.r#ref.as_deref(), Some("demo/x86_64/os/testing-devel"));
    assert_eq!(tf.basearch, "x86_64");
    assert_eq!(tf.releasever.as_deref(), Some("41"));
    assert_eq!(tf.repos, ["demo", "demo-updates"]);
    assert_eq!(tf.config_dir, dir);
    let loaded: Vec<_> = tf
        .source_files
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        loaded,
        [
            "manifest.yaml",
            "manifests/demo-os.yaml",
            "manifests/demo-os-base.yaml",
            "manifests/kernel.yaml",
            "manifests/system.yaml",
            "manifests/bootable.json",
            "manifests/arch/x86_64.yaml",
            "manifests/dev-tools.yaml",
            "manifests/bootloader-cleanup.yaml",
            "manifests/modern.yaml",
        ]
    );
    assert_eq!(
        tf.packages,
        [
            "catatonit",
            "chrony",
            "demo-debug-banner",
            "demo-release",
            "demo-repos-ostree",
            "dnf5",
            "grub2",
            "grub2-efi-x64",
            "irqbalance",
            "kernel",
            "linux-firmware",
            "microcode_ctl",
            "nano",
            "nano-default-editor",
            "nss-altfiles",
            "podman >= 5.0",
            "polkit",
            "rpm-ostree",
            "shim",
            "strace",
            "systemd",
            "systemd-container",
        ]
    );
    assert_eq!(
        tf.exclude_packages,
        ["kernel-debug-core", "python3", "perl-interpreter"]
    );
    assert_eq!(
        tf.ostree_layers,
        ["overlay/05core", "overlay/09misc", "overlay/15demo"]
    );
    assert_eq!(tf.etc_group_members, ["wheel", "adm", "docker"]);
    // Included files' scripts run first; among siblings, later ones first.
    assert_eq!(tf.postprocess.len(), 3);
    assert!(tf.postprocess[0].contains("90-dev.toml"));
    assert!(tf.postprocess[1].contains("demo-legacy.service"));
    assert!(tf.postprocess[2].contains("${HOME}"));
    let rfp: Vec<_> = tf
        .remove_from_packages
        .iter()
        .map(|r| r.package.as_str())
        .collect();
    assert_eq!(rfp, ["grub2-tools", "cracklib-dicts", "systemd"]);
    assert_eq!(tf.remove_from_packages[2].patterns.len(), 2);
    assert_eq!(
        tf.add_files,
        [(m.join("files/motd"), "/usr/lib/motd.d/10-demo".to_string())]
    );
    assert_eq!(tf.postprocess_script, Some(m.join("scripts/finalize.sh")));
    assert_eq!(tf.remove_files, ["usr/share/info", "usr/share/man"]);
    assert_eq!(tf.units, ["demo-firstboot.service"]);
    assert_eq!(tf.default_target.as_deref(), Some("multi-user.target"));
    assert_eq!(tf.initramfs_args, ["--no-hostonly"]);
    assert_eq!(
        tf.initramfs_generator.as_deref(),
        Some("/usr/libexec/demo/make-initramfs")
    );
    assert_eq!(tf.machineid_compat, Some(false));
    assert_eq!(tf.recommends, Some(false));
    assert_eq!(tf.documentation, Some(false));
    assert_eq!(
        tf.automatic_version_prefix.as_deref(),
        Some("41.<date:%Y%m%d>.dev")
    );
    assert_eq!(
        serde_json::to_value(&tf.add_commit_metadata).unwrap(),
        json!({"demo.official": false, "demo.stream": "testing-devel"})
    );
    assert_eq!(
        serde_json::to_value(&tf.variables).unwrap(),
        json!({"basearch": "x86_64", "prod": false, "releasever": 41, "stream": "testing-devel"})
    );
    assert_eq!(
        tf.unsupported_keys(),
        [
            "boot-location",
            "check-groups",
            "check-passwd",
            "ignore-removed-groups",
            "ignore-removed-users",
            "lockfile-repos",
            "metadata",
            "mutate-os-release",
            "rpmdb",
            "tmp-is-dir",
        ]
    );
    assert_eq!(
        tf.unsupported["check-passwd"]["filename"],
        json!(m.join("passwd").to_str().unwrap())
    );
    assert_eq!(
        tf.unsupported["metadata"]["summary"],
        json!("Demo OS testing-devel")
    );

    // `cosa manifest --json` output keeps the rpm-ostree shape.
    let out = serde_json::to_value(&tf).unwrap();
    assert_eq!(out["ref"], json!("demo/x86_64/os/testing-devel"));
    assert_eq!(out["mutate-os-release"], json!("41"));
    assert_eq!(
        out["remove-from-packages"][1],
        json!(["cracklib-dicts", ".*"])
    );
    assert!(out.get("source-files").is_none());
}

#[test]
fn fcos_like_tree_follows_basearch() {
    let a = load("aarch64");
    for p in [
        "demo-debug-banner-arm",
        "grub2-efi-aa64",
        "raspberry-pi-firmware",
        "qemu-user-static-x86",
    ] {
        assert!(a.packages.iter().any(|x| x == p), "aarch64 lacks {p}");
    }
    assert!(!a.packages.iter().any(|x| x == "microcode_ctl"));

    let s = load("s390x");
    // The `basearch != "s390x"` conditional include is skipped.
    assert!(!s
        .source_files
        .iter()
        .any(|p| p.ends_with("bootloader-cleanup.yaml")));
    assert_eq!(s.remove_from_packages.len(), 2);
    assert!(s.packages.iter().any(|x| x == "qemu-user-static-x86"));
    assert!(!s.packages.iter().any(|x| x == "irqbalance" || x == "grub2"));
}

fn distribution() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fcos-like")
        .canonicalize()
        .unwrap()
}

/// A distribution-shaped config (`testdata/fcos-like`): its manifest tree resolves
/// for each architecture, and what the treefile names exists in the config.
#[test]
fn distribution_tree_resolves() {
    let dir = distribution();
    let load = |arch: &str| {
        Treefile::load(&dir.join("manifest.yaml"), arch).unwrap_or_else(|e| panic!("{arch}: {e:#}"))
    };
    let tf = load("x86_64");
    assert_eq!(tf.r#ref.as_deref(), Some("pebble/x86_64/coreos/next-devel"));
    assert_eq!(tf.releasever.as_deref(), Some("7"));
    let loaded: Vec<_> = tf
        .source_files
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        loaded,
        [
            "manifest.yaml",
            "manifests/pebble-coreos.yaml",
            "manifests/pebble-base.yaml",
            "manifests/ignition-and-ostree.yaml",
            "manifests/arch/x86_64.yaml",
            "manifests/devel.yaml",
            "manifests/grub.yaml",
        ]
    );
    assert_eq!(
        tf.packages,
        [
            "chrony",
            "grub2-efi-x64",
            "grub2-tools-minimal",
            "ignition",
            "kernel",
            "microcode_ctl",
            "nss-altfiles",
            "openssh-server",
            "pebble-release",
            "podman",
            "rpm-ostree",
            "strace",
            "systemd",
        ]
    );
    assert_eq!(tf.unsupported_keys(), ["mutate-os-release", "rpmdb"]);
    assert_eq!(
        tf.postprocess_script,
        Some(dir.join("manifests/scripts/grub-cleanup.sh"))
    );
    assert_eq!(
        serde_json::to_value(&tf.add_commit_metadata).unwrap(),
        json!({"pebble.stream": "next-devel"})
    );

    // The layers and the unit the treefile names ship in overlay.d/.
    assert_eq!(tf.ostree_layers, ["overlay/05core", "overlay/15pebble"]);
    for l in &tf.ostree_layers {
        let d = dir
            .join("overlay.d")
            .join(l.strip_prefix("overlay/").unwrap());
        assert!(d.is_dir(), "{} is missing", d.display());
    }
    assert!(dir
        .join("overlay.d/05core/usr/lib/systemd/system")
        .join(&tf.units[0])
        .is_file());

    // The lockfile pins every package the x86_64 treefile names.
    let lock = Lockfile::for_config(&dir, "x86_64").unwrap().unwrap();
    let pins = lock.pins();
    for p in &tf.packages {
        assert!(pins.contains_key(p), "{p} is not pinned");
    }
    assert_eq!(pins["podman"], "5:5.2.5-1.pb7.x86_64");

    let a = load("aarch64");
    assert!(a.packages.iter().any(|p| p == "grub2-efi-aa64"));
    assert!(!a.packages.iter().any(|p| p == "microcode_ctl"));
    let s = load("s390x");
    assert!(!s.packages.iter().any(|p| p.starts_with("grub2")));
    assert_eq!(s.postprocess_script, None);
    assert_eq!(s.r#ref.as_deref(), Some("pebble/s390x/coreos/next-devel"));
}
