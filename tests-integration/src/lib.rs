//! cosa's integration tests: they run as root and build real RPM repos, ostree
//! commits, disk images, containers and VMs (`cargo test -p tests-integration`).
//! The fast unprivileged tests stay beside the code (`cargo test`).
//!
//! This library holds what the tests share: a throwaway rpm-md repo of small but
//! real packages (a static busybox shell, a passwd, dependencies, scriptlets, a
//! kernel-like package and an initramfs generator), a stream config composing it,
//! and the demo stream's build.

use std::path::{Path, PathBuf};
use std::process::Output;

use cmdext::CommandRunExt;
use testrepo::Package;

pub mod vm;

/// The repository's root (the workspace), where `stream/` and `packages/` are.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests-integration sits in the workspace")
        .to_path_buf()
}

/// The `cosa` binary under test: `$COSA_BIN`, or the one cargo built beside this
/// test binary (`target/<profile>/cosa`; `./ci/test` builds it first).
pub fn cosa_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("COSA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("locating the test binary");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/cosa
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("cosa"))
        .expect("test binary under target/<profile>/deps");
    assert!(
        bin.exists(),
        "the cosa binary is missing at {}: run `cargo build -p cosa` first or set COSA_BIN",
        bin.display()
    );
    bin
}

/// The integration tests mount, loop-attach and boot VMs: they need root.
/// Called by the fixtures so that a run without root fails with this message.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the integration tests need root (they mount, use loop devices and run bwrap/podman); run them as root"
    );
}

/// `podman run` as these machines allow it: runc (crun is not installed), and
/// ulimits at or below the sandbox's hard limits (podman's default nofile of
/// 1048576 is above them, and runc then fails with "error setting rlimits").
pub const PODMAN_RUN: &[&str] = &[
    "run",
    "--rm",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1000:1000",
    "--ulimit",
    "nproc=1000:1000",
];

/// Run `cmd` and return its stdout, or panic quoting the command and its output.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub const KVER: &str = "6.0.0-test";

/// Busybox applets the test scripts use.
const APPLETS: &[&str] = &[
    "sh", "mkdir", "cat", "cp", "ln", "rm", "touch", "ls", "chmod", "echo", "sed", "grep", "true",
    "false", "printf", "head",
];

pub fn base_packages() -> Vec<Package> {
    let mut shell = Package::new("shell", "1.36", "1")
        .arch("x86_64")
        .requires("filesystem")
        .provides("/bin/sh")
        .copy("/usr/bin/busybox", "/bin/busybox", 0o755);
    for a in APPLETS {
        shell = shell.symlink(format!("/usr/bin/{a}"), "busybox");
    }
    vec![
        Package::new("filesystem", "1", "1")
            .dir("/usr/bin")
            .dir("/usr/lib")
            .dir("/etc")
            .dir("/var")
            .dir("/boot")
            .symlink("/bin", "usr/bin")
            .symlink("/sbin", "usr/bin")
            .symlink("/lib", "usr/lib")
            .file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
            .file("/etc/group", "root:x:0:\nwheel:x:10:\n"),
        shell,
        Package::new("libfoo", "1.0", "1").provides("libfoo.so.1").file("/usr/lib/libfoo.so.1", "foo v1\n"),
        Package::new("app", "2.0", "1")
            .requires("libfoo.so.1")
            .requires("/bin/sh")
            .exec("/usr/bin/app", "#!/bin/sh\necho app\n")
            .exec("/usr/bin/app-ping", "#!/bin/sh\necho ping\n")
            .caps("/usr/bin/app-ping", "cap_net_raw=ep")
            .file("/usr/lib/systemd/system/app.service", "[Service]\nExecStart=/usr/bin/app\n[Install]\nWantedBy=multi-user.target\n")
            .file("/usr/share/doc/app/README", "docs\n")
            .pre("echo 'appuser:x:990:990::/:/bin/sh' >> /etc/passwd\n")
            .post("mkdir -p /var/lib/app\necho state > /var/lib/app/state\necho \"configured $1\" > /etc/app.conf\n")
            .posttrans("touch /etc/app.posttrans\n"),
        kernel("6.0", "1"),
        Package::new("mkinitramfs", "1", "1")
            .requires("/bin/sh")
            .exec("/usr/libexec/test-mkinitramfs", MKINITRAMFS),
    ]
}

/// The fixture's initramfs generator, called as dracut is: an uncompressed newc
/// archive of a marker naming its arguments and of /usr/lib/libfoo.so.1 from the tree.
const MKINITRAMFS: &str = r#"#!/bin/sh
# dracut-compatible: [args] OUTPUT KVER
set -e
for a; do out=$kver; kver=$a; done
mkdir -p /tmp/i/usr/lib
cd /tmp/i
echo "initramfs for $kver args: $*" > marker
cp /usr/lib/libfoo.so.1 usr/lib/
printf 'marker\nusr/lib/libfoo.so.1\n' | busybox cpio -o -H newc > "$out"
"#;

/// A kernel-like package: /usr/lib/modules/KVER/vmlinuz and a file naming its release.
pub fn kernel(version: &str, release: &str) -> Package {
    Package::new("kernel", version, release)
        .arch("x86_64")
        .file(
            format!("/usr/lib/modules/{KVER}/vmlinuz"),
            format!("not really a kernel {version}-{release}\n"),
        )
        .file(
            format!("/usr/lib/modules/{KVER}/kernel-release"),
            format!("{version}-{release}\n"),
        )
}

pub const MANIFEST: &str = r#"
ref: test/x86_64/stable
repos: [test]
automatic-version-prefix: "1.<date:%Y%m%d>"
include: manifests/base.yaml
packages:
  - app
initramfs-generator: /usr/libexec/test-mkinitramfs
initramfs-args: [--test-arg]
units: [app.service]
documentation: false
ostree-layers:
  - overlay/10test
add-files:
  - [added.txt, /usr/share/added.txt]
postprocess:
  - |
    #!/bin/sh
    echo postprocessed > /usr/share/postprocessed
"#;

pub const BASE_MANIFEST: &str = "packages: [filesystem, shell, kernel, mkinitramfs]\n";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: testrepo::Repo,
}

#[allow(clippy::new_without_default)] // builds real repos: no cheap default
impl Fixture {
    pub fn new() -> Self {
        require_root();
        Self::with_packages(&base_packages())
    }

    pub fn with_packages(pkgs: &[Package]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = testrepo::build_repo(&dir.path().join("repo"), pkgs).unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir_all(config.join("manifests")).unwrap();
        std::fs::create_dir_all(config.join("overlays/10test/usr/lib")).unwrap();
        std::fs::write(
            config.join("overlays/10test/usr/lib/test-overlay"),
            "from the overlay\n",
        )
        .unwrap();
        std::fs::write(config.join("manifest.yaml"), MANIFEST).unwrap();
        std::fs::write(config.join("manifests/base.yaml"), BASE_MANIFEST).unwrap();
        std::fs::write(config.join("added.txt"), "added\n").unwrap();
        repo.write_repo_file(&config.join("test.repo"), "test")
            .unwrap();
        let f = Fixture { dir, repo };
        f.cosa(&[
            "init",
            f.config().to_str().unwrap(),
            "-C",
            f.workdir().to_str().unwrap(),
        ])
        .ok();
        f
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn cosa(&self, args: &[&str]) -> Run {
        cosa_in(&self.workdir(), args)
    }

    /// `ostree --repo=<workdir repo> ARGS`.
    pub fn ostree(&self, args: &[&str]) -> String {
        let out = cmdext::command("ostree")
            .arg(format!(
                "--repo={}",
                self.workdir().join("cache/repo").display()
            ))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ostree {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn builds_json(&self) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.workdir().join("builds/builds.json"))
                .unwrap_or_else(|_| b"{}".to_vec()),
        )
        .unwrap()
    }

    pub fn latest_meta(&self) -> serde_json::Value {
        let id = self.builds_json()["builds"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_slice(
            &std::fs::read(self.workdir().join(format!("builds/{id}/x86_64/meta.json"))).unwrap(),
        )
        .unwrap()
    }

    /// Check out a commit (hardlinks) into a fresh directory.
    pub fn checkout(&self, commit: &str) -> PathBuf {
        let dest = self.dir.path().join(format!("co-{}", &commit[..12]));
        if !dest.exists() {
            self.ostree(&["checkout", "-H", commit, dest.to_str().unwrap()]);
        }
        dest
    }

    pub fn build_count(&self) -> usize {
        self.builds_json()["builds"]
            .as_array()
            .map_or(0, |a| a.len())
    }
}

/// Run the cosa binary under test with `workdir` as its workdir.
pub fn cosa_in(workdir: &Path, args: &[&str]) -> Run {
    let out = cmdext::command(cosa_bin())
        .args(args)
        .env("COSA_DIR", workdir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    Run(out)
}

pub struct Run(pub Output);

impl Run {
    pub fn ok(self) -> String {
        assert!(
            self.0.status.success(),
            "cosa failed: {}\nstdout: {}",
            String::from_utf8_lossy(&self.0.stderr),
            String::from_utf8_lossy(&self.0.stdout)
        );
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn err(self) -> String {
        assert!(
            !self.0.status.success(),
            "cosa unexpectedly succeeded: {}",
            String::from_utf8_lossy(&self.0.stdout)
        );
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

pub fn path_exists(root: &Path, p: &str) -> bool {
    root.join(p.trim_start_matches('/'))
        .symlink_metadata()
        .is_ok()
}

/// The repo's demo stream RPMs (made by `packages/build-repo`), or a panic saying so:
/// tests that boot the OS need them and must not pass without them.
pub fn demo_repo() -> PathBuf {
    built_repo(
        "packages/out/repo",
        "the demo stream's",
        "packages/build-repo",
    )
}

/// The rpm-md repo at `rel` (below the repository root), or a panic naming
/// `what` it is and the command that makes it.
pub fn built_repo(rel: &str, what: &str, how: &str) -> PathBuf {
    let repo = repo_root().join(rel);
    assert!(
        repo.join("repodata/repomd.xml").exists(),
        "{what} RPM repo is missing at {}: run {how} first",
        repo.display()
    );
    repo
}

/// A workdir for the repo's demo stream (the repository's root), with one build.
pub struct DemoBuild {
    pub dir: tempfile::TempDir,
}

#[allow(clippy::new_without_default)] // composes the demo stream: no cheap default
impl DemoBuild {
    pub fn new() -> Self {
        require_root();
        demo_repo();
        let dir = tempfile::tempdir().unwrap();
        let b = DemoBuild { dir };
        // With no config argument, `cosa init` links this repository's root.
        b.cosa(&["init", "-C", b.workdir().to_str().unwrap()]).ok();
        let linked = std::fs::read_link(b.workdir().join("src/config")).unwrap();
        assert_eq!(linked, repo_root().canonicalize().unwrap());
        b.cosa(&["build"]).ok();
        b
    }

    pub fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn cosa(&self, args: &[&str]) -> Run {
        cosa_in(&self.workdir(), args)
    }

    pub fn build_dir(&self) -> PathBuf {
        self.workdir().join("builds/latest/x86_64")
    }

    pub fn meta(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.build_dir().join("meta.json")).unwrap()).unwrap()
    }

    /// The path of an image the build's meta.json records.
    pub fn image(&self, platform: &str) -> PathBuf {
        let m = self.meta();
        let p = m["images"][platform]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no images.{platform} in meta.json"));
        self.build_dir().join(p)
    }
}

/// Check a meta.json against the project's contract: it deserializes into
/// `cosa::builds::Meta` with no key the struct does not know (cosa writes only
/// typed keys), and validates, with Python's jsonschema, against the project's schema
/// derived from that struct (`docs/meta.schema.json`). `ci/check-upstream-meta-schema`
/// checks a meta.json against coreos-assembler's own schema, by hand.
pub fn assert_meta_schema_valid(meta_json: &Path) {
    let meta = cosa::builds::Meta::load(meta_json)
        .unwrap_or_else(|e| panic!("{} is not a cosa meta.json: {e:#}", meta_json.display()));
    assert!(
        meta.extra.is_empty(),
        "{} has keys cosa does not type: {:?}",
        meta_json.display(),
        meta.extra.keys().collect::<Vec<_>>()
    );
    let schema = repo_root().join(cosa::builds::meta::schema::SCHEMA_FILE);
    let out = cmdext::command("python3")
        .args([
            "-c",
            "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])))",
        ])
        .arg(&schema)
        .arg(meta_json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not validate against {}: {}",
        meta_json.display(),
        schema.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Add an uncompressed layer (given as tar entries) on top of the image in OCI dir `dir`.
pub fn append_oci_layer(dir: &Path, entries: &[(&str, tar::EntryType, &[u8], u32)]) {
    use sha2::Digest;
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, *data).unwrap();
    }
    let layer = b.into_inner().unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&d), bytes).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let blob = |digest: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(
                dir.join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .unwrap(),
        )
        .unwrap()
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    let mut config = blob(manifest["config"]["digest"].as_str().unwrap());
    let (ld, ls) = put(&layer);
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(ld.clone().into());
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls
        }));
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = ms.into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// An HTTP server (python3 -m http.server) for `dir` on a free port, killed on drop.
pub struct Http(std::process::Child, pub u16);

impl Http {
    pub fn serve(dir: &Path) -> Http {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = cmdext::command("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the HTTP server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Http(child, port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throwaway GnuPG home with one passphrase-less signing key.
pub fn gpg_home(dir: &Path, name: &str) -> (PathBuf, String) {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir(&home).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let uid = format!("{name} <{name}@cosa.invalid>");
    cmdext::command("gpg")
        .arg("--homedir")
        .arg(&home)
        .args(["--batch", "--passphrase", "", "--quick-gen-key", &uid])
        .args(["ed25519", "sign", "never"])
        .run()
        .unwrap();
    (home, uid)
}

/// A GnuPG home holding the demo stream's test signing key (its secret half is
/// published in testdata/keys/; the systemd variant's images trust its public half),
/// and the key's fingerprint.
pub fn demo_stream_key_home(dir: &Path) -> (PathBuf, String) {
    let home = dir.join("gnupg-demo-stream");
    std::fs::create_dir(&home).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    cmdext::command("gpg")
        .arg("--homedir")
        .arg(&home)
        .args(["--batch", "--import"])
        .arg(repo_root().join("testdata/keys/demo-stream.secret.asc"))
        .run()
        .unwrap();
    let list = cmdext::command("gpg")
        .arg("--homedir")
        .arg(&home)
        .args(["--batch", "--with-colons", "--list-secret-keys"])
        .run_get_string()
        .unwrap();
    let fpr = list
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| !f.is_empty()))
        .expect("a fingerprint")
        .to_string();
    (home, fpr)
}

pub fn gpg_export(home: &Path, out: &Path) {
    cmdext::command("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--yes", "--output"])
        .arg(out)
        .arg("--export")
        .run()
        .unwrap();
}

/// A tool `ci/install-deps.sh` installs outside the system's packages: `rel`
/// under `$ENV` or `default`; a panic saying what to run when it is missing.
pub fn installed_tool(env: &str, default: &str, rel: &str, what: &str) -> PathBuf {
    let dir = std::env::var(env).unwrap_or_else(|_| default.into());
    let bin = Path::new(&dir).join(rel);
    assert!(
        bin.exists(),
        "{} is missing: run ci/install-deps.sh (it installs {what})",
        bin.display()
    );
    bin
}

/// The real coreos-installer (crates.io, built by ci/install-deps.sh; COSA_TOOLS
/// moves it).
pub fn coreos_installer() -> PathBuf {
    installed_tool(
        "COSA_TOOLS",
        "/opt/cosa/tools",
        "bin/coreos-installer",
        "coreos-installer from crates.io",
    )
}

/// `./ci/test --long`: the longest suites run too.
pub fn long() -> bool {
    std::env::var_os("COSA_TEST_LONG").is_some_and(|v| v == "1")
}

/// Run coreos-installer with `args`: (success, stdout, stderr).
pub fn run_coreos_installer(args: &[&str]) -> (bool, String, String) {
    let out = cmdext::command(coreos_installer())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Install hooks for `iso customize --pre-install/--post-install` that report on
/// the serial console whether the target disk (/dev/vda, empty before the
/// install) has the installed image's partitions yet.
pub const HOOKS: [(&str, &str); 2] = [
    (
        "pre",
        "#!/bin/sh\nif [ -b /dev/vda3 ]; then w=after; else w=before; fi\necho \"cosa-hook: pre-install ran $w the install\" >/dev/ttyS0\n",
    ),
    (
        "post",
        "#!/bin/sh\nif [ -b /dev/vda3 ]; then w=after; else w=before; fi\necho \"cosa-hook: post-install ran $w the install\" >/dev/ttyS0\n",
    ),
];

/// The [`HOOKS`] ran, each on its side of the install.
pub fn assert_hooks_ran(console: &str) {
    for want in [
        "cosa-hook: pre-install ran before the install",
        "cosa-hook: post-install ran after the install",
    ] {
        assert!(
            console.contains(want),
            "no {want:?} on the console: the install hooks did not run in order"
        );
    }
}
