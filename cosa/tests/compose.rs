//! `cosa init/fetch/build` against a real rpm-md repo made at test time, checked with
//! the ostree and rpm command-line tools.

mod common;

use std::process::Command;

use common::{path_exists, Fixture, KVER};

#[test]
fn build_composes_a_bootable_commit() {
    let f = Fixture::new();
    let out = f.cosa(&["fetch"]).ok();
    assert!(out.contains("Fetched 6 packages"), "{out}");
    assert!(f
        .workdir()
        .join("tmp/manifest-lock.generated.x86_64.json")
        .exists());
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("Built 1."), "{out}");

    let meta = f.latest_meta();
    let commit = meta["ostree-commit"].as_str().unwrap();
    f.ostree(&["fsck"]);
    let root = f.checkout(commit);

    // Kernel and the generated initramfs where ostree expects them.
    let modules = root.join(format!("usr/lib/modules/{KVER}"));
    assert!(modules.join("vmlinuz").exists());
    let initramfs = std::fs::read_to_string(modules.join("initramfs.img")).unwrap();
    assert!(
        initramfs.contains(&format!("initramfs for {KVER}")),
        "{initramfs}"
    );
    assert!(initramfs.contains("--test-arg"), "{initramfs}");

    // Scriptlets ran in dependency order, inside the tree; /etc moved; /var emptied.
    assert_eq!(
        std::fs::read_to_string(root.join("usr/etc/app.conf")).unwrap(),
        "configured 1\n"
    );
    assert!(path_exists(&root, "usr/etc/app.posttrans"));
    assert!(std::fs::read_to_string(root.join("usr/etc/passwd"))
        .unwrap()
        .contains("appuser"));
    assert!(!path_exists(&root, "etc"));
    assert_eq!(std::fs::read_dir(root.join("var")).unwrap().count(), 0);
    let tmpfiles = std::fs::read_to_string(root.join("usr/lib/tmpfiles.d/cosa-var.conf")).unwrap();
    assert!(tmpfiles.contains("d /var/lib/app"), "{tmpfiles}");

    // Treefile edits.
    assert!(path_exists(&root, "usr/lib/test-overlay"));
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/added.txt")).unwrap(),
        "added\n"
    );
    assert!(path_exists(&root, "usr/share/postprocessed"));
    assert!(
        !path_exists(&root, "usr/share/doc/app/README"),
        "documentation: false keeps docs"
    );
    assert!(path_exists(
        &root,
        "usr/etc/systemd/system/multi-user.target.wants/app.service"
    ));

    // The rpmdb in the tree lists exactly the composed packages.
    let out = Command::new("rpm")
        .arg("--dbpath")
        .arg(root.join("usr/lib/sysimage/rpm"))
        .args(["-qa", "--qf", "%{NAME}\n"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "app",
            "filesystem",
            "kernel",
            "libfoo",
            "mkinitramfs",
            "shell"
        ]
    );

    // Commit metadata.
    let show = f.ostree(&["show", "--print-metadata-key=ostree.linux", commit]);
    assert!(show.contains(KVER), "{show}");
    let show = f.ostree(&["show", "--print-metadata-key=ostree.bootable", commit]);
    assert!(show.contains("true"), "{show}");
    let show = f.ostree(&[
        "show",
        "--print-metadata-key=rpmostree.rpmdb.pkglist",
        commit,
    ]);
    assert!(
        show.contains("('libfoo', 0, '1.0', '1', 'noarch')"),
        "{show}"
    );
    let show = f.ostree(&["show", "--print-metadata-key=version", commit]);
    assert!(show.contains(meta["buildid"].as_str().unwrap()), "{show}");
    let show = f.ostree(&["show", "--print-metadata-key=rpmostree.inputhash", commit]);
    assert!(
        show.contains(meta["rpm-ostree-inputhash"].as_str().unwrap()),
        "{show}"
    );

    // Nothing changed: no new build.
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("No changes"), "{out}");
    assert_eq!(f.build_count(), 1);
}
