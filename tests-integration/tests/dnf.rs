//! The libdnf wrapper against real rpm-md repos built at test time with rpmbuild,
//! createrepo_c and (for signatures) a throwaway gpg key and rpmsign.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{ensure, Context, Result};
use cosa::compose::dnf::{Dnf, Package, PackageRequest, RepoSetup};
use testrepo::Package as Spec;

/// Repos and RPMs shared by all tests, built once per run.
struct Fixture {
    root: PathBuf,
    /// `base` (in main/), `signed`, `broken` (unreachable baseurl) repo definitions.
    repo_file: PathBuf,
    /// bar-0.5-1, older than the repo's bar: an overrides/rpm candidate.
    local_bar: PathBuf,
}

/// libdnf keeps process-wide state (config, rpm macros): one `Dnf` at a time.
fn fixture() -> (MutexGuard<'static, ()>, &'static Fixture) {
    static LOCK: Mutex<()> = Mutex::new(());
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let f = FIXTURE.get_or_init(|| build_fixture().expect("building the test repos"));
    (guard, f)
}

fn noarch(name: &str, version: &str) -> Spec {
    Spec::new(name, version, "1")
        .arch("noarch")
        .file(format!("/usr/share/{name}/version"), version)
}

fn build_fixture() -> Result<Fixture> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dnf-fixture");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;

    // Relative baseurls below exercise cosa's "relative to the .repo file" rule.
    testrepo::build_repo(
        &root.join("main"),
        &[
            noarch("foo", "1.0").requires("bar"),
            noarch("foo", "2.0").requires("bar"),
            noarch("bar", "1.0"),
            noarch("app", "1.0")
                .requires("libqux >= 1")
                .recommends("extra"),
            noarch("qux", "1.0").provides("libqux = 1.0"),
            noarch("extra", "1.0"),
            noarch("needs-excluded", "1.0").requires("extra"),
        ],
    )?;
    let local = root.join("local");
    let local_bar = testrepo::build_rpm(&noarch("bar", "0.5"), &local)?;

    // Signed repo: good (key A), wrongkey (key B), unsigned; the repo trusts key A only.
    let gnupg = root.join("gnupg");
    std::fs::create_dir_all(&gnupg)?;
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    for who in ["a", "b"] {
        let params = root.join(format!("key-{who}.params"));
        std::fs::write(
            &params,
            format!(
                "%no-protection\nKey-Type: RSA\nKey-Length: 2048\nName-Real: cosa test {who}\n\
                 Name-Email: {who}@cosa.invalid\nExpire-Date: 0\n%commit\n"
            ),
        )?;
        run(cmdext::command("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--gen-key"])
            .arg(&params))?;
    }
    let signed = root.join("signed");
    let rpms = testrepo::build_rpms(
        &[
            noarch("good", "1.0"),
            noarch("wrongkey", "1.0"),
            noarch("unsigned", "1.0"),
        ],
        &signed,
    )?;
    for (rpm, key) in rpms.iter().zip(["a", "b"]) {
        run(cmdext::command("rpmsign")
            .env("GNUPGHOME", &gnupg)
            .args(["--define", "__gpg /usr/bin/gpg"])
            .arg("--define")
            .arg(format!("_gpg_name {key}@cosa.invalid"))
            .arg("--addsign")
            .arg(rpm))?;
    }
    testrepo::Repo {
        dir: signed.canonicalize()?,
    }
    .refresh()?;
    let key = run(cmdext::command("gpg").env("GNUPGHOME", &gnupg).args([
        "--armor",
        "--export",
        "a@cosa.invalid",
    ]))?;
    std::fs::write(root.join("key-a.asc"), key)?;

    let repo_file = root.join("test.repo");
    std::fs::write(
        &repo_file,
        "[base]\nname=base\nbaseurl=main\ngpgcheck=0\nmetadata_expire=0\n\n\
         [signed]\nname=signed\nbaseurl=signed/\ngpgcheck=1\ngpgkey=key-a.asc\nmetadata_expire=0\n\n\
         [broken]\nname=broken\nbaseurl=file:///nonexistent/cosa-repo/$basearch\ngpgcheck=0\n",
    )?;
    Ok(Fixture {
        root,
        repo_file,
        local_bar,
    })
}

fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

fn dnf(f: &Fixture, repos: &[&str], cache: &str) -> Result<Dnf> {
    Dnf::new(&RepoSetup {
        repo_files: vec![f.repo_file.clone()],
        enabled: repos.iter().map(|s| s.to_string()).collect(),
        releasever: Some("1".into()),
        basearch: "x86_64".into(),
        cache_dir: f.root.join(cache),
    })
}

fn install(names: &[&str]) -> PackageRequest {
    PackageRequest {
        install: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn nevras(pkgs: &[Package]) -> Vec<String> {
    pkgs.iter().map(Package::nevra).collect()
}

#[test]
fn resolve_pulls_in_dependencies() -> Result<()> {
    let (_g, f) = fixture();
    let mut d = dnf(f, &["base"], "cache-deps")?;
    let pkgs = d.resolve(&install(&["foo", "app"]))?;
    assert_eq!(
        nevras(&pkgs),
        [
            "app-1.0-1.noarch",
            "bar-1.0-1.noarch",
            "foo-2.0-1.noarch",
            "qux-1.0-1.noarch"
        ]
    );
    let foo = &pkgs[2];
    assert_eq!(foo.repo, "base");
    assert!(foo.checksum.starts_with("sha256:"), "{}", foo.checksum);
    assert_eq!(foo.checksum.len(), "sha256:".len() + 64);
    assert!(foo.size > 0);

    // Weak deps only on request; a provide resolves to its package.
    let with_recommends = PackageRequest {
        recommends: true,
        ..install(&["app"])
    };
    let pkgs = d.resolve(&with_recommends)?;
    assert!(nevras(&pkgs).contains(&"extra-1.0-1.noarch".to_string()));
    let pkgs = d.resolve(&install(&["libqux"]))?;
    assert_eq!(nevras(&pkgs), ["qux-1.0-1.noarch"]);
    assert!(d.resolve(&install(&[]))?.is_empty());
    Ok(())
}

#[test]
fn exclude_packages() -> Result<()> {
    let (_g, f) = fixture();
    let mut d = dnf(f, &["base"], "cache-exclude")?;
    let req = PackageRequest {
        exclude: vec!["extra".into()],
        recommends: true,
        ..install(&["app"])
    };
    // A weak dep that is excluded is simply left out.
    let pkgs = d.resolve(&req)?;
    assert!(!nevras(&pkgs).iter().any(|n| n.starts_with("extra-")));
    // A hard dep on an excluded package fails, naming it.
    let req = PackageRequest {
        exclude: vec!["extra".into()],
        ..install(&["needs-excluded"])
    };
    let e = format!("{:#}", d.resolve(&req).unwrap_err());
    assert!(e.contains("extra"), "{e}");
    // Asking for an excluded package says so.
    let req = PackageRequest {
        exclude: vec!["foo".into()],
        ..install(&["foo"])
    };
    let e = format!("{:#}", d.resolve(&req).unwrap_err());
    assert!(e.contains("'foo'") && e.contains("exclude-packages"), "{e}");
    Ok(())
}

#[test]
fn lock_pins_older_version_and_strict_refuses_unlocked() -> Result<()> {
    let (_g, f) = fixture();
    let mut d = dnf(f, &["base"], "cache-lock")?;
    let lock: BTreeMap<String, String> = [
        ("foo".to_string(), "1.0-1.noarch".to_string()),
        ("bar".to_string(), "0:1.0-1.noarch".to_string()),
    ]
    .into();
    let req = PackageRequest {
        locked: Some(lock.clone()),
        ..install(&["foo"])
    };
    assert_eq!(
        nevras(&d.resolve(&req)?),
        ["bar-1.0-1.noarch", "foo-1.0-1.noarch"]
    );

    // Strict: everything locked passes...
    let strict = PackageRequest {
        strict: true,
        ..req.clone()
    };
    assert_eq!(d.resolve(&strict)?.len(), 2);
    // ...a requested package not in the lock fails, naming it...
    let e = format!(
        "{:#}",
        d.resolve(&PackageRequest {
            install: vec!["foo".into(), "qux".into()],
            ..strict.clone()
        })
        .unwrap_err()
    );
    assert!(e.contains("qux") && e.contains("lockfile"), "{e}");
    // ...and so does an unlocked dependency.
    let mut partial = lock.clone();
    partial.remove("bar");
    let e = format!(
        "{:#}",
        d.resolve(&PackageRequest {
            locked: Some(partial),
            ..strict
        })
        .unwrap_err()
    );
    assert!(
        e.contains("bar-1.0-1.noarch") && e.contains("not in the lockfile"),
        "{e}"
    );

    // A locked version missing from the repos is named.
    let gone: BTreeMap<String, String> = [("foo".to_string(), "9.9-1.noarch".to_string())].into();
    let e = format!(
        "{:#}",
        d.resolve(&PackageRequest {
            locked: Some(gone),
            ..install(&["foo"])
        })
        .unwrap_err()
    );
    assert!(e.contains("foo-9.9-1.noarch"), "{e}");
    Ok(())
}

#[test]
fn local_rpm_replaces_repo_package() -> Result<()> {
    let (_g, f) = fixture();
    let mut d = dnf(f, &["base"], "cache-local")?;
    let req = PackageRequest {
        local_rpms: vec![f.local_bar.clone()],
        // The override wins over the lock for its name.
        locked: Some([("bar".to_string(), "1.0-1.noarch".to_string())].into()),
        ..install(&["foo"])
    };
    let pkgs = d.resolve(&req)?;
    assert_eq!(nevras(&pkgs), ["bar-0.5-1.noarch", "foo-2.0-1.noarch"]);
    let bar = &pkgs[0];
    assert_eq!(bar.repo, "@commandline");
    assert_eq!(bar.location, f.local_bar.canonicalize()?);
    assert!(bar.checksum.starts_with("sha256:"));
    // Without the override, the repo's bar is back.
    let pkgs = d.resolve(&install(&["foo"]))?;
    assert_eq!(nevras(&pkgs), ["bar-1.0-1.noarch", "foo-2.0-1.noarch"]);
    Ok(())
}

#[test]
fn download_verifies_and_reuses() -> Result<()> {
    let (_g, f) = fixture();
    let dest = f.root.join("pkgcache-download");
    let mut d = dnf(f, &["base"], "cache-download")?;
    let mut pkgs = d.resolve(&PackageRequest {
        local_rpms: vec![f.local_bar.clone()],
        ..install(&["foo"])
    })?;
    let stats = d.download(&mut pkgs, &dest)?;
    assert_eq!((stats.downloaded, stats.reused), (1, 0));
    assert!(stats.bytes > 0);
    let foo = pkgs.iter().find(|p| p.name == "foo").unwrap();
    assert_eq!(foo.location, dest.join("foo-2.0-1.noarch.rpm"));
    assert!(foo.location.is_file());
    // Nothing left behind but the RPM.
    let names: Vec<_> = std::fs::read_dir(&dest)?
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["foo-2.0-1.noarch.rpm"]);

    // Again, from a fresh context: nothing downloaded.
    let mut d = dnf(f, &["base"], "cache-download")?;
    let mut again = d.resolve(&install(&["foo", "bar"]))?;
    let stats = d.download(&mut again, &dest)?;
    assert_eq!((stats.downloaded, stats.reused), (1, 1)); // bar is new
    let stats = d.download(&mut again, &dest)?;
    assert_eq!((stats.downloaded, stats.reused, stats.bytes), (0, 2, 0));

    // A corrupted cache file is fetched again, not trusted.
    std::fs::write(dest.join("bar-1.0-1.noarch.rpm"), b"garbage")?;
    let stats = d.download(&mut again, &dest)?;
    assert_eq!((stats.downloaded, stats.reused), (1, 1));
    Ok(())
}

#[test]
fn missing_package_and_unknown_repo_are_named() -> Result<()> {
    let (_g, f) = fixture();
    let mut d = dnf(f, &["base"], "cache-missing")?;
    let e = format!("{:#}", d.resolve(&install(&["no-such-pkg"])).unwrap_err());
    assert!(e.contains("no-such-pkg"), "{e}");
    drop(d);
    let e = format!(
        "{:#}",
        dnf(f, &["base", "nope"], "cache-missing").err().unwrap()
    );
    assert!(e.contains("'nope'"), "{e}");
    Ok(())
}

#[test]
fn unreachable_baseurl_is_named() -> Result<()> {
    let (_g, f) = fixture();
    let e = format!("{:#}", dnf(f, &["broken"], "cache-broken").err().unwrap());
    assert!(e.contains("broken"), "{e}");
    assert!(e.contains("/nonexistent/cosa-repo/x86_64"), "{e}");
    Ok(())
}

#[test]
fn gpgcheck_verifies_signatures() -> Result<()> {
    let (_g, f) = fixture();
    let dest = f.root.join("pkgcache-signed");
    let mut d = dnf(f, &["signed"], "cache-signed")?;
    let mut good = d.resolve(&install(&["good"]))?;
    let stats = d.download(&mut good, &dest)?;
    assert_eq!(stats.downloaded, 1);
    // A cached file is checked again (the repo may have turned gpgcheck on since).
    let stats = d.download(&mut good, &dest)?;
    assert_eq!((stats.downloaded, stats.reused), (0, 1));
    for bad in ["wrongkey", "unsigned"] {
        let mut pkgs = d.resolve(&install(&[bad]))?;
        let e = format!("{:#}", d.download(&mut pkgs, &dest).unwrap_err());
        assert!(e.contains(&format!("{bad}-1.0-1.noarch")), "{e}");
        assert!(e.contains("signature"), "{e}");
        assert!(!dest.join(format!("{bad}-1.0-1.noarch.rpm")).exists());
    }
    Ok(())
}
