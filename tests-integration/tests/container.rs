//! The toolkit's own container image (`container/`): `container/build` makes it
//! with the cosa under test, and the demo stream's `init`, `fetch`, `build` and
//! `osbuild qemu` run inside it with the workdir on a host volume, each with the
//! privileges the README says it needs and no more.

use tests_integration as common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{cosa_bin, cosa_in, demo_repo, repo_root, require_root, run_ok, PODMAN_RUN};

/// The image this test builds, removed when the test ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = cmdext::command("podman")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// `podman run` of `image` with the workdir at /srv and the repository mounted
/// read-only at its own path (so `src/config`, a symlink into it, resolves the
/// same inside and outside), `extra` podman options, then cosa's `args`.
fn cosa_in_container(image: &str, workdir: &Path, extra: &[&str], args: &[&str]) -> Command {
    let root = repo_root();
    let root = root.to_str().unwrap();
    let mut cmd = cmdext::command("podman");
    cmd.args(PODMAN_RUN)
        .args(["-v", &format!("{}:/srv", workdir.display())])
        .args(["-v", &format!("{root}:{root}:ro")])
        .args(extra)
        .arg(image)
        .args(args);
    cmd
}

/// Every file below `dir`, `dir` included.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(dir.to_path_buf());
    if dir.symlink_metadata().unwrap().is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            walk(&e.unwrap().path(), out);
        }
    }
}

#[test]
fn demo_stream_builds_in_the_toolkit_image() {
    require_root();
    demo_repo();
    let image = Image(format!("localhost/cosa-test:{}", std::process::id()));
    run_ok(
        cmdext::command(repo_root().join("container/build"))
            .args(["--tag", &image.0, "--cosa"])
            .arg(cosa_bin()),
    );

    // One source of truth: every runtime package of ci/install-deps.sh is in
    // the image, and the cosa in it is the one under test.
    let list =
        run_ok(cmdext::command(repo_root().join("ci/install-deps.sh")).args(["--list", "runtime"]));
    let packages: Vec<&str> = list.split_whitespace().collect();
    assert!(packages.len() > 20, "runtime list: {list}");
    let dpkg = run_ok(
        cmdext::command("podman")
            .args(PODMAN_RUN)
            .args(["--entrypoint", "dpkg-query", &image.0])
            .args(["-W", "-f", "${Package} ${db:Status-Status}\\n"])
            .args(&packages),
    );
    for p in &packages {
        assert!(
            dpkg.lines().any(|l| l == format!("{p} installed")),
            "{p} is not installed in the image: {dpkg}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let version = run_ok(&mut cosa_in_container(
        &image.0,
        dir.path(),
        &[],
        &["--version"],
    ));
    let host_version = cosa_in(dir.path(), &["--version"]).ok();
    assert_eq!(version, host_version);

    // The workdir is a host directory mounted at /srv.
    let w = dir.path().join("work");
    std::fs::create_dir(&w).unwrap();
    let config = repo_root();
    let init = run_ok(&mut cosa_in_container(
        &image.0,
        &w,
        &[],
        &["init", config.to_str().unwrap()],
    ));
    assert!(init.contains("Initialized workdir /srv"), "{init}");
    run_ok(&mut cosa_in_container(&image.0, &w, &[], &["fetch"]));

    // The compose runs scriptlets under bwrap through a rofiles-fuse view: without
    // /dev/fuse it fails, saying so, and leaves no build behind.
    let out = cosa_in_container(
        &image.0,
        &w,
        &["--cap-add", "SYS_ADMIN,NET_ADMIN"],
        &["build"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "build without /dev/fuse: {err}");
    assert!(err.contains("is /dev/fuse available"), "{err}");
    assert!(!w.join("builds/builds.json").exists());
    assert!(!w.join("builds/latest").exists());

    // With what the README names for it (no --privileged), the build lands.
    let built = run_ok(&mut cosa_in_container(
        &image.0,
        &w,
        &["--cap-add", "SYS_ADMIN,NET_ADMIN", "--device", "/dev/fuse"],
        &["build"],
    ));
    assert!(built.contains("Built "), "{built}");
    // Disk images need no extra privilege at all.
    let images = run_ok(&mut cosa_in_container(
        &image.0,
        &w,
        &[],
        &["osbuild", "qemu"],
    ));
    assert!(images.contains("qemu"), "{images}");

    // On the host: the build is there, the host's cosa reads it, the qcow2 is
    // sound, the ostree repo checks out, and everything is owned by whoever ran
    // podman (root here; with rootless podman the same files belong to the user,
    // since the container's root is that user).
    let listed = cosa_in(&w, &["list"]).ok();
    let builds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.join("builds/builds.json")).unwrap()).unwrap();
    let id = builds["builds"][0]["id"].as_str().unwrap().to_string();
    assert!(listed.contains(&id), "{listed}");
    let qcow2 = cosa_in(&w, &["meta", "--get", "images.qemu.path"]).ok();
    let qcow2 = w
        .join("builds/latest/x86_64")
        .join(qcow2.trim().trim_matches('"'));
    run_ok(
        cmdext::command("qemu-img")
            .args(["check", "-q"])
            .arg(&qcow2),
    );
    run_ok(
        cmdext::command("ostree")
            .arg(format!("--repo={}", w.join("cache/repo").display()))
            .arg("fsck"),
    );
    let me = rustix::process::geteuid().as_raw();
    let mut files = Vec::new();
    walk(&w.join("builds"), &mut files);
    for f in &files {
        let m = f.symlink_metadata().unwrap();
        assert_eq!(m.uid(), me, "{} is owned by uid {}", f.display(), m.uid());
    }
}
