//! `cosa init/fetch/build` against a real rpm-md repo made at test time, checked with
//! the ostree and rpm command-line tools.

use tests_integration as common;

use std::path::Path;

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
    let mut names: Vec<String> = rpm_qa(&root, "%{NAME}");
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

    // %caps: the capability is in the commit (as an xattr of the file's object), not
    // in the package cache's object the tree was assembled from.
    let ls = f.ostree(&["ls", "-X", commit, "/usr/bin/app-ping"]);
    assert!(ls.contains("security.capability"), "{ls}");
    let getcap = cmdext::command("getcap")
        .arg(root.join("usr/bin/app-ping"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&getcap.stdout).contains("cap_net_raw=ep"),
        "getcap: {}",
        String::from_utf8_lossy(&getcap.stdout)
    );
    let cached = f.ostree(&["refs", "cosa/pkg"]);
    let app_ref = cached
        .lines()
        .find(|r| r.starts_with("app-2.0"))
        .unwrap_or_else(|| panic!("no cache ref for app in {cached}"));
    let ls = f.ostree(&[
        "ls",
        "-X",
        &format!("cosa/pkg/{app_ref}"),
        "/usr/bin/app-ping",
    ]);
    assert!(!ls.contains("security.capability"), "{ls}");

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

/// builds.json, the build dirs and the repo's refs, to prove a failure changed nothing.
fn history_state(f: &Fixture) -> (String, Vec<String>) {
    let json = std::fs::read_to_string(f.workdir().join("builds/builds.json")).unwrap_or_default();
    let mut entries: Vec<String> = std::fs::read_dir(f.workdir().join("builds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    (json, entries)
}

#[test]
fn meta_json_validates_against_the_schema_and_history_commands_work() {
    let f = Fixture::new();
    f.cosa(&["build"]).ok();
    // A second build with package updates records a pkgdiff against its parent; libfoo
    // is also in the initramfs.
    let libfoo = testrepo::Package::new("libfoo", "1.1", "1")
        .provides("libfoo.so.1")
        .file("/usr/lib/libfoo.so.1", "foo v1.1\n");
    f.repo.add(&[common::kernel("6.1", "1"), libfoo]).unwrap();
    f.cosa(&["build"]).ok();
    assert_eq!(f.build_count(), 2);
    let meta = f.latest_meta();
    let diff = meta["pkgdiff"].to_string();
    assert!(diff.contains("kernel") && diff.contains("6.1-1"), "{diff}");

    let id = meta["buildid"].as_str().unwrap();
    common::assert_meta_schema_valid(&f.workdir().join(format!("builds/{id}/x86_64/meta.json")));

    let listed: serde_json::Value =
        serde_json::from_str(&f.cosa(&["list", "--json"]).ok()).unwrap();
    assert_eq!(listed[0]["id"], id);
    assert_eq!(
        f.cosa(&["meta", "--get", "ostree-commit"]).ok().trim(),
        meta["ostree-commit"].as_str().unwrap()
    );
    let d = f.cosa(&["diff", "--rpms"]).ok();
    assert!(d.contains("[rpms]\n~ kernel 6.0-1 -> 6.1-1\n"), "{d}");
    let first = f.builds_json()["builds"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    diff_commands_compare_packages_paths_and_initramfs(&f, &first, id);

    // Tagged builds survive pruning; untagged old ones go, with their commits.
    f.cosa(&["tag", "add", "keep-me", &first]).ok();
    f.cosa(&["prune", "--keep", "1"]).ok();
    assert_eq!(f.build_count(), 2, "tagged build was pruned");
    f.cosa(&["tag", "delete", "keep-me"]).ok();
    f.cosa(&["prune", "--keep", "1"]).ok();
    assert_eq!(f.build_count(), 1);
    assert!(!f.workdir().join("builds").join(&first).exists());
    // The package cache follows: the old kernel's import and RPM go, the rest stay.
    let refs = f.ostree(&["refs"]);
    assert!(
        !refs.contains("cosa/pkg/kernel-6.0-1") && refs.contains("cosa/pkg/kernel-6.1-1"),
        "{refs}"
    );
    assert!(!refs.contains("cosa/pkg/libfoo-1.0-1"), "{refs}");
    assert!(refs.contains("cosa/pkg/app-2.0-1"), "{refs}");
    assert!(!f
        .workdir()
        .join("cache/rpms/kernel-6.0-1.x86_64.rpm")
        .exists());
    assert!(f
        .workdir()
        .join("cache/rpms/kernel-6.1-1.x86_64.rpm")
        .exists());
    f.ostree(&["fsck"]);
    // And the next build still composes from what is left.
    f.cosa(&["build", "--force"]).ok();
}

/// `cosa diff` between the fixture's two builds (kernel and libfoo updated).
fn diff_commands_compare_packages_paths_and_initramfs(f: &Fixture, first: &str, second: &str) {
    let j: serde_json::Value =
        serde_json::from_str(&f.cosa(&["diff", "--rpms-json", "--ostree", "--json"]).ok()).unwrap();
    assert_eq!(
        (j["from"].as_str(), j["to"].as_str()),
        (Some(first), Some(second))
    );
    assert!(j.get("initrd").is_none(), "only what was asked for: {j}");
    let upgraded: Vec<(&str, &str, &str)> = j["rpms"]["upgraded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |side: &str, k: &str| c[side][k].as_str().unwrap();
            (s("to", "name"), s("from", "evr"), s("to", "evr"))
        })
        .collect();
    assert_eq!(
        upgraded,
        [("kernel", "6.0-1", "6.1-1"), ("libfoo", "1.0-1", "1.1-1")],
        "{j}"
    );
    for k in ["added", "removed", "downgraded", "changed"] {
        assert_eq!(j["rpms"][k], serde_json::json!([]), "{k}: {j}");
    }
    let modified: Vec<&str> = j["ostree"]["modified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in [
        format!("/usr/lib/modules/{KVER}/vmlinuz"),
        format!("/usr/lib/modules/{KVER}/kernel-release"),
        format!("/usr/lib/modules/{KVER}/initramfs.img"),
        "/usr/lib/libfoo.so.1".to_string(),
    ] {
        assert!(modified.contains(&p.as_str()), "{p} not modified: {j}");
    }
    assert!(!modified.contains(&"/usr/bin/app"), "{j}");
    assert!(j["ostree"]["added"].is_array() && j["ostree"]["removed"].is_array());

    // The fixture's initramfs is a cpio archive holding libfoo.
    let t = f.cosa(&["diff", "--initrd"]).ok();
    assert!(t.contains("[initrd]\n"), "{t}");
    assert!(t.contains("~ /usr/lib/libfoo.so.1: size 7 -> 9\n"), "{t}");
    let j: serde_json::Value =
        serde_json::from_str(&f.cosa(&["diff", "--initrd", "--json", first, second]).ok()).unwrap();
    let image = format!("/usr/lib/modules/{KVER}/initramfs.img");
    assert_eq!(j["initrd"]["image"]["to"], image.as_str(), "{j}");
    let libfoo = j["initrd"]["modified"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["to"]["path"] == "/usr/lib/libfoo.so.1")
        .unwrap_or_else(|| panic!("libfoo not modified: {j}"));
    assert_eq!(libfoo["from"]["size"], 7);
    assert_eq!(libfoo["to"]["mode"], "100644");

    // Backwards is a downgrade; the same build has no differences.
    let t = f.cosa(&["diff", "--rpms", second, first]).ok();
    assert!(t.contains("~ kernel 6.1-1 -> 6.0-1 (downgrade)"), "{t}");
    let t = f.cosa(&["diff", "--rpms", "--ostree", second, second]).ok();
    assert_eq!(
        t,
        format!("From {second} to {second}\n[rpms]\nNo differences\n[ostree]\nNo differences\n")
    );

    // No images in these builds: the errors say which build and how to make them.
    let e = f.cosa(&["diff", "--metal-part-table"]).err();
    assert!(
        e.contains(&format!("build {first} has no metal image"))
            && e.contains("cosa osbuild metal"),
        "{e}"
    );
    let e = f.cosa(&["diff", "--live-iso-ls"]).err();
    assert!(
        e.contains("live ISO") && e.contains("cosa buildextend-live"),
        "{e}"
    );
    let e = f.cosa(&["diff"]).err();
    assert!(
        e.contains("--rpms-json") && e.contains("--metal-part-table") && e.contains("--initrd"),
        "{e}"
    );
}

#[test]
fn kernel_override_replaces_the_repo_package() {
    let f = Fixture::new();
    testrepo::build_rpm(
        &common::kernel("5.9", "7"),
        &f.workdir().join("overrides/rpm"),
    )
    .unwrap();
    f.cosa(&["build"]).ok();
    let meta = f.latest_meta();
    assert_eq!(meta["coreos-assembler.overrides-active"], true);
    let root = f.checkout(meta["ostree-commit"].as_str().unwrap());
    let rel = std::fs::read_to_string(root.join(format!("usr/lib/modules/{KVER}/kernel-release")))
        .unwrap();
    assert_eq!(rel, "5.9-7\n", "the older override kernel must win");

    // Without the override the repo's kernel comes back. This build's rpmdb starts
    // from the previous build's and swaps the kernel: it must list exactly what a
    // fresh one would.
    std::fs::remove_dir_all(f.workdir().join("overrides/rpm")).unwrap();
    std::fs::create_dir(f.workdir().join("overrides/rpm")).unwrap();
    f.cosa(&["build"]).ok();
    let meta = f.latest_meta();
    let root = f.checkout(meta["ostree-commit"].as_str().unwrap());
    let mut nevras = rpm_qa(&root, "%{NEVRA}");
    nevras.sort();
    let kernels: Vec<&String> = nevras.iter().filter(|n| n.starts_with("kernel-")).collect();
    assert_eq!(kernels, ["kernel-6.0-1.x86_64"], "{nevras:?}");
    assert_eq!(nevras.len(), 6, "{nevras:?}");
    let out = cmdext::command("rpm")
        .arg("--dbpath")
        .arg(root.join("usr/lib/sysimage/rpm"))
        .arg("--verifydb")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The initramfs is generated again only when something it was made from changed:
/// a package owning one of its files, or a file of the tree it holds.
#[test]
fn initramfs_is_reused_until_what_it_holds_changes() {
    let f = Fixture::new();
    let initramfs = |f: &Fixture| {
        let root = f.checkout(f.latest_meta()["ostree-commit"].as_str().unwrap());
        std::fs::read_to_string(root.join(format!("usr/lib/modules/{KVER}/initramfs.img"))).unwrap()
    };
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("initramfs generated"), "{out}");
    assert!(initramfs(&f).contains("foo v1\n"));

    // A package the image holds nothing of: reused, and the same bytes.
    let overrides = f.workdir().join("overrides/rpm");
    let mut app = common::base_packages()
        .into_iter()
        .find(|p| p.name == "app")
        .unwrap();
    app.version = "2.1".into();
    testrepo::build_rpm(&app, &overrides).unwrap();
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("initramfs reused"), "{out}");
    assert!(initramfs(&f).contains("foo v1\n"));

    // The package that owns a file in the image: generated again.
    let libfoo = testrepo::Package::new("libfoo", "1.1", "1")
        .provides("libfoo.so.1")
        .file("/usr/lib/libfoo.so.1", "foo v1.1\n");
    testrepo::build_rpm(&libfoo, &overrides).unwrap();
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("initramfs generated"), "{out}");
    assert!(initramfs(&f).contains("foo v1.1\n"));

    // A file of the tree the image holds, changed by a layer (no package changed).
    let local = f.workdir().join("overrides/rootfs/usr/lib");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("libfoo.so.1"), "foo local\n").unwrap();
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("initramfs generated"), "{out}");
    assert!(initramfs(&f).contains("foo local\n"));

    // A path added to the tree (a generator's checks test what exists): generated.
    std::fs::write(local.join("libbar.so.1"), "bar\n").unwrap();
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("initramfs generated"), "{out}");
}

/// `rpm -qa` of a checked-out tree's rpmdb, one `format` per package.
fn rpm_qa(root: &Path, format: &str) -> Vec<String> {
    let out = cmdext::command("rpm")
        .arg("--dbpath")
        .arg(root.join("usr/lib/sysimage/rpm"))
        .args(["-qa", "--qf", &format!("{format}\n")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn file_conflict_is_an_error_naming_both_packages_and_changes_nothing() {
    let mut pkgs = common::base_packages();
    pkgs.push(testrepo::Package::new("c1", "1", "1").file("/usr/share/clash", "one\n"));
    pkgs.push(testrepo::Package::new("c2", "1", "1").file("/usr/share/clash", "two\n"));
    let f = Fixture::with_packages(&pkgs);
    f.cosa(&["build"]).ok();
    let before = history_state(&f);
    let base = f.config().join("manifests/base.yaml");
    std::fs::write(
        &base,
        "packages: [filesystem, shell, kernel, mkinitramfs, c1, c2]\n",
    )
    .unwrap();
    let err = f.cosa(&["build"]).err();
    assert!(
        err.contains("/usr/share/clash")
            && err.contains("c1-1-1.noarch")
            && err.contains("c2-1-1.noarch"),
        "{err}"
    );
    assert_eq!(history_state(&f), before);
    // The caches are still good: the next build succeeds.
    std::fs::write(
        &base,
        "packages: [filesystem, shell, kernel, mkinitramfs, c1]\n",
    )
    .unwrap();
    f.cosa(&["build"]).ok();
    f.ostree(&["fsck"]);
}

#[test]
fn failing_scriptlet_names_the_package_and_changes_nothing() {
    let mut pkgs = common::base_packages();
    pkgs.push(
        testrepo::Package::new("badpost", "1", "1")
            .requires("/bin/sh")
            .post("echo 'cannot configure' >&2\nexit 3\n"),
    );
    let f = Fixture::with_packages(&pkgs);
    let base = f.config().join("manifests/base.yaml");
    std::fs::write(
        &base,
        "packages: [filesystem, shell, kernel, mkinitramfs, badpost]\n",
    )
    .unwrap();
    let err = f.cosa(&["build"]).err();
    assert!(
        err.contains("%post scriptlet of package badpost") && err.contains("cannot configure"),
        "{err}"
    );
    assert_eq!(f.build_count(), 0);
    assert!(!f.workdir().join("builds/latest").exists());
    std::fs::write(
        &base,
        "packages: [filesystem, shell, kernel, mkinitramfs]\n",
    )
    .unwrap();
    f.cosa(&["build"]).ok();
}

#[test]
fn bad_input_gives_clear_errors() {
    let f = Fixture::new();
    // Missing package.
    std::fs::write(
        f.config().join("manifests/base.yaml"),
        "packages: [filesystem, no-such-package]\n",
    )
    .unwrap();
    let err = f.cosa(&["build"]).err();
    assert!(err.contains("no-such-package"), "{err}");
    // Malformed treefile: unknown key, named with its file.
    std::fs::write(
        f.config().join("manifests/base.yaml"),
        "packages: [filesystem]\nbogus-key: 1\n",
    )
    .unwrap();
    let err = f.cosa(&["build"]).err();
    assert!(
        err.contains("bogus-key") && err.contains("base.yaml"),
        "{err}"
    );
    // Unreachable repo.
    std::fs::write(
        f.config().join("manifests/base.yaml"),
        "packages: [filesystem]\n",
    )
    .unwrap();
    std::fs::write(
        f.config().join("test.repo"),
        "[test]\nname=test\nbaseurl=file:///nonexistent/repo\ngpgcheck=0\n",
    )
    .unwrap();
    let err = f.cosa(&["build"]).err();
    assert!(err.contains("test"), "{err}");
    assert_eq!(f.build_count(), 0);
    // Not a workdir.
    let err = Fixture::new().cosa(&["-C", "/", "build"]).err();
    assert!(err.contains("not a cosa workdir"), "{err}");
}

#[test]
fn a_second_build_refuses_while_the_first_holds_the_lock() {
    let f = Fixture::new();
    // Hold the workdir lock the way a running build does.
    let lock = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(f.workdir().join("tmp/.cosa.lock"))
        .unwrap();
    lock.lock().unwrap();
    let err = f.cosa(&["build"]).err();
    assert!(err.contains("holds the lock"), "{err}");
    drop(lock);
    f.cosa(&["build"]).ok();
}

#[test]
fn interrupted_build_leaves_history_and_caches_valid() {
    let f = Fixture::new();
    f.cosa(&["build"]).ok();
    let before = history_state(&f);
    f.repo.add(&[common::kernel("6.2", "1")]).unwrap();
    // SIGINT while scriptlets run (the tree is mounted through rofiles-fuse), as Ctrl-C would.
    let mut child = cmdext::command(common::cosa_bin())
        .arg("build")
        .env("COSA_DIR", f.workdir())
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let scratch = f.workdir().join("tmp/compose");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mounted = || {
        std::fs::read_dir(&scratch).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("rofiles-"))
        })
    };
    while !mounted() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    interrupt(child.id());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "build finished before it could be interrupted"
    );
    assert_eq!(history_state(&f), before);
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("Built"), "{out}");
    f.ostree(&["fsck"]);
}

fn interrupt(pid: u32) {
    cmdext::command("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn refetch_downloads_nothing_and_strict_refuses_unpinned_packages() {
    let f = Fixture::new();
    let out = f.cosa(&["fetch"]).ok();
    assert!(out.contains("6 downloaded"), "{out}");
    let out = f.cosa(&["fetch"]).ok();
    assert!(
        out.contains("0 downloaded") && out.contains("6 already cached"),
        "{out}"
    );

    // No lockfile in the config: --strict has nothing to check against.
    let err = f.cosa(&["fetch", "--strict"]).err();
    assert!(err.contains("manifest-lock.x86_64.json"), "{err}");
    // Pin everything, then add a package the lock does not know.
    f.cosa(&["fetch", "--update-lockfile"]).ok();
    f.cosa(&["fetch", "--strict"]).ok();
    f.repo
        .add(&[testrepo::Package::new("extra", "1", "1")])
        .unwrap();
    std::fs::write(
        f.config().join("manifests/base.yaml"),
        "packages: [filesystem, shell, kernel, mkinitramfs, extra]\n",
    )
    .unwrap();
    let err = f.cosa(&["fetch", "--strict"]).err();
    assert!(err.contains("extra"), "{err}");
    // A pin holds the package at its locked version when a newer one appears.
    f.repo.add(&[common::kernel("6.5", "1")]).unwrap();
    std::fs::write(
        f.config().join("manifests/base.yaml"),
        "packages: [filesystem, shell, kernel, mkinitramfs]\n",
    )
    .unwrap();
    f.cosa(&["fetch"]).ok();
    let lock = std::fs::read_to_string(f.workdir().join("tmp/manifest-lock.generated.x86_64.json"))
        .unwrap();
    assert!(
        lock.contains("6.0-1.x86_64") && !lock.contains("6.5-1"),
        "{lock}"
    );
}

#[test]
fn full_disk_is_a_clear_error_and_the_next_build_succeeds() {
    let f = Fixture::new();
    f.cosa(&["fetch"]).ok();
    // Put the workdir's cache and scratch on a tiny filesystem.
    let small = f.dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let st = cmdext::command("mount")
        .args(["-t", "tmpfs", "-o", "size=1500k", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a tmpfs (the test needs root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = cmdext::command("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let wd = f.workdir();
    for d in ["cache", "tmp", "builds"] {
        let target = small.join(d);
        cmdext::command("cp")
            .arg("-a")
            .arg(wd.join(d))
            .arg(&target)
            .status()
            .unwrap();
        std::fs::remove_dir_all(wd.join(d)).unwrap();
        std::os::unix::fs::symlink(&target, wd.join(d)).unwrap();
    }
    let err = f.cosa(&["build"]).err();
    eprintln!("full disk: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(f.build_count(), 0);
    let st = cmdext::command("mount")
        .args(["-o", "remount,size=200m"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(st.success());
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("Built"), "{out}");
    f.ostree(&["fsck"]);
}

/// The validator the SBOM tests use: spdx-tools from PyPI, installed by
/// ci/install-deps.sh (COSA_PYTOOLS moves its virtualenv).
fn pyspdxtools() -> std::path::PathBuf {
    common::installed_tool(
        "COSA_PYTOOLS",
        "/opt/cosa/pytools",
        "bin/pyspdxtools",
        "spdx-tools from PyPI",
    )
}

#[test]
fn build_container_writes_an_spdx_sbom_that_an_independent_validator_accepts() {
    let f = Fixture::new();
    f.cosa(&["build"]).ok();
    f.cosa(&["build-container"]).ok();
    let meta = f.latest_meta();
    let id = meta["buildid"].as_str().unwrap();
    let dir = f.workdir().join(format!("builds/{id}/x86_64"));
    common::assert_meta_schema_valid(&dir.join("meta.json"));
    let os = meta["name"].as_str().unwrap().to_lowercase();
    let art = &meta["images"]["sbom"];
    let path = dir.join(art["path"].as_str().unwrap());
    assert!(
        path.to_string_lossy().ends_with("-sbom.x86_64.spdx.json"),
        "{path:?}"
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(art["size"], bytes.len() as u64);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");

    // Every package of the tree's rpmdb, with its version.
    let root = f.checkout(meta["ostree-commit"].as_str().unwrap());
    let installed = rpm_qa(&root, "%{NAME} %{VERSION}-%{RELEASE}");
    let pkgs = doc["packages"].as_array().unwrap();
    assert_eq!(pkgs.len(), installed.len() + 1, "the OS and each RPM");
    for line in &installed {
        let (name, vr) = line.split_once(' ').unwrap();
        let p = pkgs
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the SBOM"));
        assert_eq!(p["versionInfo"], vr, "{p:#}");
        let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        assert!(purl.starts_with(&format!("pkg:rpm/{os}/{name}@")), "{purl}");
        assert_eq!(p["checksums"][0]["algorithm"], "SHA256");
    }
    let rels = doc["relationships"].as_array().unwrap();
    assert!(rels.iter().any(|r| r["relationshipType"] == "DEPENDS_ON"));

    // spdx-tools parses and validates it (exit 0 and no validation messages).
    let out = cmdext::command(pyspdxtools())
        .arg("-i")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pyspdxtools refused the SBOM: {text}");
    assert!(!text.to_lowercase().contains("invalid"), "{text}");

    // A tampered document fails the same validator, so the check can fail.
    let mut bad = doc.clone();
    bad["packages"][1]["SPDXID"] = serde_json::json!("not an spdx id");
    let bad_path = f.workdir().join("bad.spdx.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let out = cmdext::command(pyspdxtools())
        .arg("-i")
        .arg(&bad_path)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "pyspdxtools accepted a broken document"
    );
}
