//! Discovery and selection of kola tests on real trees: the demo stream's
//! `kola-tests/`, the fixture config under `tests/fixtures/kola/` and the
//! distribution-shaped config in `testdata/fcos-like/`.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use cosa::kola::select::{select, DenyEntry, Denylist, Selection, TagFilter};
use cosa::kola::test::{all_tests, discover, KolaTest, TestBody};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kola/config")
}

/// The names, without the install-media scenarios (built-in, the same for every
/// config: `testiso_scenarios_are_listed` checks them).
fn names(tests: &[KolaTest]) -> Vec<&str> {
    tests
        .iter()
        .filter(|t| !t.meta.explicit_only)
        .map(|t| t.name.as_str())
        .collect()
}

#[test]
fn testiso_scenarios_are_listed() {
    let tests = all_tests(&distribution(), &[]).unwrap();
    let iso: Vec<&str> = tests
        .iter()
        .filter(|t| t.meta.explicit_only)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(iso.len(), 12, "{iso:?}");
    for want in [
        "iso-live-login.uefi",
        "iso-offline-install.4k.uefi",
        "pxe-offline-install.4k.uefi",
    ] {
        assert!(iso.contains(&want), "{iso:?}");
    }
}

fn qemu() -> Selection {
    Selection {
        platform: "qemu".into(),
        arch: "x86_64".into(),
        distro: "fcos".into(),
        ..Selection::default()
    }
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

/// The built-in tests a bare `kola run` considers, in order.
const BUILTIN: [&str; 6] = [
    "basic",
    "firstboot",
    "reboot",
    "kernel-override",
    "ostree-status",
    "ostree.upgrade",
];

/// The stream's own tests (kola-tests/), as a workdir names them.
const STREAM_TESTS: [&str; 6] = [
    "ext.config.basic",
    "ext.config.files",
    "ext.config.kernel",
    "ext.config.reboot",
    "ext.config.systemd.ignition",
    "ext.config.systemd.running",
];

#[test]
fn demo_stream_tests() {
    // As a workdir sees the config, through its `src/config` link: kola's
    // `ext.config.*` names, whatever the checkout's directory is called.
    let wd = tempfile::tempdir().unwrap();
    std::fs::create_dir(wd.path().join("src")).unwrap();
    std::os::unix::fs::symlink(repo(), wd.path().join("src/config")).unwrap();
    let tests = discover(&wd.path().join("src/config"), &[]).unwrap();
    assert_eq!(names(&tests), STREAM_TESTS);
    let files = tests.iter().find(|t| t.name == "ext.config.files").unwrap();
    let TestBody::External { config, .. } = &files.body else {
        panic!("external test");
    };
    assert!(config
        .as_ref()
        .unwrap()
        .ends_with("kola-tests/files/config.ign"));
    assert_eq!(files.meta.tags, ["external", "basic", "ignition"]);
    let reboot = tests
        .iter()
        .find(|t| t.name == "ext.config.reboot")
        .unwrap();
    assert_eq!(reboot.meta.platforms, ["qemu"]);
    assert_eq!(reboot.meta.timeout.as_secs(), 5 * 60);

    // With the built-in tests.
    let tests = all_tests(&wd.path().join("src/config"), &[]).unwrap();
    assert_eq!(names(&tests), [&BUILTIN[..], &STREAM_TESTS[..]].concat());
    // The stream's own denylist applies cleanly: the variant's tests are skipped.
    let sel = Selection {
        denylist: Some(Denylist::load(&repo().join("kola-denylist.yaml")).unwrap()),
        ..qemu()
    };
    assert_eq!(select(tests.clone(), &sel, today()).unwrap().run.len(), 10);
    // The systemd variant's skips the demo OS's own tests.
    let sel = Selection {
        denylist: Some(Denylist::load(&repo().join("kola-denylist-systemd.yaml")).unwrap()),
        ..qemu()
    };
    let selected = select(tests, &sel, today()).unwrap();
    let variant = [
        "ext.config.files",
        "ext.config.systemd.ignition",
        "ext.config.systemd.running",
    ];
    assert_eq!(names(&selected.run), [&BUILTIN[..], &variant[..]].concat());
}

#[test]
fn fixture_tree() {
    let tests = discover(&fixture(), &[]).unwrap();
    assert_eq!(
        names(&tests),
        [
            "ext.config.butane",
            "ext.config.ignition",
            "ext.config.json",
            "ext.config.multi.first",
            "ext.config.multi.second.sh",
            "ext.config.named.check-thing",
            "ext.config.nested.deeper",
            "ext.config.special",
            "ext.config.yaml",
        ]
    );
    let by = |n: &str| tests.iter().find(|t| t.name == n).unwrap();
    let yaml = &by("ext.config.yaml").meta;
    assert_eq!(yaml.exclude_architectures, ["s390x", "ppc64le"]);
    assert_eq!(yaml.additional_disks, ["5G", "1G:serial=disk1"]);
    assert_eq!(yaml.min_memory_mib, Some(1536));
    let json = &by("ext.config.json").meta;
    assert!(!json.exclusive);
    assert_eq!(json.exclude_distros, ["rhcos"]);
    assert_eq!(json.conflicts, ["ext.config.multi.first"]);
    let TestBody::External {
        data_dir, config, ..
    } = &by("ext.config.ignition").body
    else {
        panic!("external test");
    };
    assert!(data_dir.as_ref().unwrap().join("expected").is_file());
    assert!(config.as_ref().unwrap().ends_with("ignition/config.ign"));
    assert!(by("ext.config.butane").meta.butane_config.is_some());
    assert_eq!(by("ext.config.multi.second.sh").meta.description, None);
}

#[test]
fn fixture_selection_with_denylist() {
    let sel = Selection {
        denylist: Some(Denylist::load(&fixture().join("kola-denylist.yaml")).unwrap()),
        stream: Some("testing".into()),
        ..qemu()
    };
    let out = select(all_tests(&fixture(), &[]).unwrap(), &sel, today()).unwrap();
    let external = [
        "ext.config.ignition",
        "ext.config.json",
        "ext.config.multi.first",
        "ext.config.multi.second.sh",
        "ext.config.named.check-thing",
    ];
    assert_eq!(names(&out.run), [&BUILTIN[..], &external[..]].concat());
    let skipped: Vec<&str> = out.skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        skipped,
        [
            "ext.config.butane",
            "ext.config.nested.deeper",
            "ext.config.yaml"
        ]
    );
    assert_eq!(
        out.skipped[2].1,
        "denylisted, snoozed until 2099-01-01: https://example.com/issues/2"
    );
    assert!(out.warn_only.contains("ext.config.named.check-thing"));

    // The required tag brings in its test, within its creationDate grace period.
    let sel = Selection {
        tags: vec![TagFilter::parse("special").unwrap()],
        ..qemu()
    };
    let out = select(all_tests(&fixture(), &[]).unwrap(), &sel, today()).unwrap();
    assert_eq!(names(&out.run), ["ext.config.special"]);
    assert!(out.warn_only.contains("ext.config.special"));
}

/// The distribution-shaped config in `testdata/fcos-like` (fedora-coreos-config's layout).
fn distribution() -> PathBuf {
    repo().join("testdata/fcos-like")
}

/// A distribution config's `tests/kola/` lists, with its metadata, and its denylist
/// applies and names only tests that exist.
#[test]
fn distribution_config_lists() {
    let dir = distribution();
    let tests = all_tests(&dir, &[]).unwrap();
    assert_eq!(
        names(&tests),
        [
            "basic",
            "firstboot",
            "reboot",
            "kernel-override",
            "ostree-status",
            "ostree.upgrade",
            "ext.fcos-like.boot",
            "ext.fcos-like.files.ownership",
            "ext.fcos-like.ignition.resource",
            "ext.fcos-like.networking.dns",
            "ext.fcos-like.storage.luks.sh",
            "ext.fcos-like.storage.raid1",
            "ext.fcos-like.upgrade",
        ]
    );
    let by = |n: &str| tests.iter().find(|t| t.name == n).unwrap();
    let upgrade = &by("ext.fcos-like.upgrade").meta;
    assert_eq!(upgrade.timeout.as_secs(), 20 * 60);
    assert_eq!(upgrade.min_memory_mib, Some(2048));
    assert_eq!(upgrade.tags, ["external", "reboot"]);
    // The `# kola: {json}` form.
    let raid = &by("ext.fcos-like.storage.raid1").meta;
    assert_eq!(raid.additional_disks, ["5G", "5G"]);
    assert_eq!(raid.architectures, ["x86_64", "aarch64"]);
    assert_eq!(
        by("ext.fcos-like.ignition.resource").meta.exclude_platforms,
        ["aws", "azure"]
    );
    let TestBody::External {
        data_dir, config, ..
    } = &by("ext.fcos-like.ignition.resource").body
    else {
        panic!("external test");
    };
    assert!(data_dir.as_ref().unwrap().join("expected").is_file());
    assert!(config.as_ref().unwrap().ends_with("resource/config.ign"));

    let deny = Denylist::load(&dir.join("kola-denylist.yaml")).unwrap();
    deny.check_patterns(&tests)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let sel = Selection {
        denylist: Some(deny.clone()),
        stream: Some("next-devel".into()),
        ..qemu()
    };
    let out = select(tests.clone(), &sel, today()).unwrap();
    assert_eq!(
        names(&out.run),
        [
            "basic",
            "firstboot",
            "reboot",
            "kernel-override",
            "ostree-status",
            "ostree.upgrade",
            "ext.fcos-like.files.ownership",
            "ext.fcos-like.ignition.resource",
            "ext.fcos-like.storage.luks.sh",
            "ext.fcos-like.storage.raid1",
            "ext.fcos-like.upgrade",
        ]
    );
    assert_eq!(
        out.skipped,
        [
            (
                "ext.fcos-like.boot".to_string(),
                "architecture x86_64 is not one of: s390x".to_string()
            ),
            (
                "ext.fcos-like.networking.dns".to_string(),
                "denylisted, snoozed until 2099-01-01: https://issues.pebble.invalid/101"
                    .to_string()
            ),
        ]
    );
    assert_eq!(
        out.warn_only.iter().collect::<Vec<_>>(),
        ["ext.fcos-like.upgrade"]
    );
    assert!(!sel.skip_console_warnings());

    // Arch- and platform-scoped entries.
    let on_azure = Selection {
        platform: "azure".into(),
        ..sel.clone()
    };
    assert!(on_azure.skip_console_warnings());
    let sel = Selection {
        arch: "aarch64".into(),
        ..sel
    };
    let out = select(tests.clone(), &sel, today()).unwrap();
    assert!(out
        .skipped
        .iter()
        .any(|(n, why)| n == "kernel-override" && why.contains("issues.pebble.invalid/103")));

    // An entry naming a test cosa does not have (one of kola's Go tests) is an error.
    let mut stale = deny;
    stale.0.push(DenyEntry {
        pattern: "coreos.ignition.mount.*".into(),
        ..stale.0[0].clone()
    });
    let e = format!("{:#}", stale.check_patterns(&tests).unwrap_err());
    assert!(e.contains("coreos.ignition.mount.*"), "{e}");
}
