//! Builds real RPMs and repositories: needs rpmbuild, rpm and createrepo_c.

use super::*;

fn scratch(name: &str) -> ScratchDir {
    ScratchDir::new(&std::env::temp_dir(), &format!("testrepo-test-{name}")).unwrap()
}

#[test]
fn two_package_repo() {
    let tmp = scratch("repo");
    let pkgs = [
        Package::new("foo", "1.0", "1")
            .requires("bar >= 2.0")
            .file("/etc/foo.conf", "x=1\n")
            .exec("/usr/bin/foo", "#!/bin/sh\necho foo\n")
            .symlink("/usr/bin/foo-link", "foo")
            .dir("/usr/share/foo")
            .post("echo 100% > /etc/foo-installed"),
        Package::new("bar", "2.1", "3")
            .epoch(1)
            .arch("x86_64")
            .provides("bar-cap")
            .file("/usr/share/bar/data", vec![0u8, 1, 2])
            .pre("mkdir -p /var/lib/bar")
            .posttrans("touch /var/lib/bar/done"),
    ];
    let repo = build_repo(&tmp.path().join("repo"), &pkgs).unwrap();
    assert!(repo.dir.is_absolute());
    assert!(repo.dir.join("repodata/repomd.xml").exists());

    let foo = repo.rpm_path(&pkgs[0]);
    let requires = rpm_query(&foo, &["--requires"]).unwrap();
    assert!(requires.lines().any(|l| l == "bar >= 2.0"), "{requires}");
    // The scriptlet's interpreter is required automatically.
    assert!(requires.lines().any(|l| l == "/bin/sh"), "{requires}");
    let scripts = rpm_query(&foo, &["--scripts"]).unwrap();
    assert!(
        scripts.contains("postinstall scriptlet (using /bin/sh):\necho 100% > /etc/foo-installed"),
        "{scripts}"
    );
    let files = rpm_query(
        &foo,
        &["--qf", "[%{FILEMODES:perms} %{FILENAMES} %{FILELINKTOS}\n]"],
    )
    .unwrap();
    assert!(files.contains("-rw-r--r-- /etc/foo.conf \n"), "{files}");
    assert!(files.contains("-rwxr-xr-x /usr/bin/foo \n"), "{files}");
    assert!(
        files.contains("lrwxrwxrwx /usr/bin/foo-link foo\n"),
        "{files}"
    );
    assert!(files.contains("drwxr-xr-x /usr/share/foo \n"), "{files}");

    let bar = repo.rpm_path(&pkgs[1]);
    let nevra = rpm_query(
        &bar,
        &[
            "--qf",
            "%{EPOCH}:%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH} %{PAYLOADCOMPRESSOR}",
        ],
    )
    .unwrap();
    assert_eq!(nevra, "1:bar-2.1-3.x86_64 zstd");
    let scripts = rpm_query(&bar, &["--scripts"]).unwrap();
    assert!(scripts.contains("preinstall scriptlet (using /bin/sh):\nmkdir -p /var/lib/bar"));
    assert!(scripts.contains("posttrans scriptlet (using /bin/sh):\ntouch /var/lib/bar/done"));

    // Metadata lists both; a bumped package shows up after refresh.
    let primary = primary_xml(&repo);
    assert!(primary.contains("<name>foo</name>") && primary.contains("<name>bar</name>"));
    let bumped = Package {
        version: "1.1".into(),
        ..pkgs[0].clone()
    };
    repo.add(std::slice::from_ref(&bumped)).unwrap();
    assert!(primary_xml(&repo).contains(r#"ver="1.1""#));

    let repo_file = tmp.path().join("test.repo");
    repo.write_repo_file(&repo_file, "test").unwrap();
    let text = std::fs::read_to_string(&repo_file).unwrap();
    assert!(text.starts_with("[test]\n"));
    assert!(text.contains(&format!("baseurl=file://{}\n", repo.dir.display())));
}

/// The uncompressed primary.xml of a repo built with createrepo_c's defaults (gzip).
fn primary_xml(repo: &Repo) -> String {
    let repodata = repo.dir.join("repodata");
    let primary = std::fs::read_dir(&repodata)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("primary.xml.gz"))
        .unwrap();
    let out = command("gzip")
        .arg("-dc")
        .arg(primary)
        .run_get_output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn build_errors_name_the_package_and_quote_rpmbuild() {
    let tmp = scratch("err");
    // Caught before rpmbuild runs.
    let pkg = Package::new("broken", "1.0", "1")
        .requires("")
        .arch("x86_64");
    let err = format!("{:#}", build_rpm(&pkg, tmp.path()).unwrap_err());
    assert!(err.contains("broken-1.0-1.x86_64"), "{err}");
    let pkg = Package::new("broken", "1.0", "1").requires("foo >>> 1");
    let err = format!("{:#}", build_rpm(&pkg, tmp.path()).unwrap_err());
    assert!(
        err.contains("building package broken-1.0-1.noarch"),
        "{err}"
    );
    assert!(err.contains("`rpmbuild -bb"), "{err}");
    assert!(err.contains("failed: exit status: 1"), "{err}");
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn synthetic_packages_build() {
    let tmp = scratch("synthetic");
    let pkgs = synthetic(4, 20, 1);
    let repo = build_repo(&tmp.path().join("repo"), &pkgs).unwrap();
    let base = repo.rpm_path(&pkgs[0]);
    let provides = rpm_query(&base, &["--provides"]).unwrap();
    assert!(provides.lines().any(|l| l == "/bin/sh"), "{provides}");
    // The small libmagic database still tells rpm that busybox is a 64-bit ELF (color 2).
    let classes = rpm_query(
        &base,
        &["--qf", "[%{FILECLASS} %{FILECOLORS} %{FILENAMES}\n]"],
    )
    .unwrap();
    let busybox = classes
        .lines()
        .find(|l| l.ends_with(" /usr/bin/busybox"))
        .unwrap_or_default();
    assert!(
        busybox.starts_with("ELF 64-bit LSB") && busybox.ends_with(" 2 /usr/bin/busybox"),
        "{classes}"
    );
    for pkg in &pkgs {
        assert!(repo.rpm_path(pkg).exists(), "{}", pkg.nevra());
    }
}
