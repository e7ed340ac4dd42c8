//! The package import cache: each RPM is unpacked once into the workdir's ostree repo
//! under its own ref (`cosa/pkg/<nevra>`), and later builds check it out from there.
//!
//! RPM payloads carry no usable ownership (that lives in the header) and no /var
//! conventions, so unpacking also turns /var content into tmpfiles.d entries, as
//! rpm-ostree's importer does; ownership is applied after assembly (see `assemble`).

use fs_err as fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use gio::prelude::*;

use super::dnf::Package;
use crate::cpio;

mod payload;

pub(crate) use payload::var_to_tmpfiles;
use payload::PayloadTree;

/// Commit metadata key holding the digest of the RPM a cache commit was made from.
const META_DIGEST: &str = "cosa.rpm.digest";

/// The ref of a package's cache commit (ostree refs allow `[\w.-]`; others are escaped).
pub fn cache_ref(nevra: &str) -> String {
    let mut r = String::from("cosa/pkg/");
    for c in nevra.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => r.push(c),
            other => r.push_str(&format!("_{:02X}", other as u32)),
        }
    }
    r
}

/// Open the workdir's repo, creating it (mode bare: hardlink checkouts keep ownership).
pub fn open_repo(path: &Path) -> Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    if !path.join("config").exists() {
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        repo.create(ostree::RepoMode::Bare, gio::Cancellable::NONE)
            .with_context(|| format!("creating ostree repo {}", path.display()))?;
    } else {
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("opening ostree repo {}", path.display()))?;
    }
    Ok(repo)
}

/// The cache commit of `pkg` if it exists and was made from the same RPM.
pub fn cached_commit(repo: &ostree::Repo, pkg: &Package) -> Result<Option<String>> {
    let r = cache_ref(&pkg.nevra());
    let Some(rev) = repo.resolve_rev(&r, true)? else {
        return Ok(None);
    };
    let (commit, _) = repo.load_commit(&rev)?;
    let meta = glib::VariantDict::new(Some(&commit.child_value(0)));
    let digest: Option<String> = meta.lookup(META_DIGEST).ok().flatten();
    Ok((digest.as_deref() == Some(pkg.checksum.as_str())).then(|| rev.to_string()))
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ImportStats {
    pub imported: usize,
    pub reused: usize,
}

/// Make sure every package has a cache commit; returns the commit of each, in order.
pub fn import_all(repo: &ostree::Repo, pkgs: &[Package]) -> Result<(Vec<String>, ImportStats)> {
    let mut commits: Vec<Option<String>> = Vec::with_capacity(pkgs.len());
    for p in pkgs {
        commits.push(cached_commit(repo, p)?);
    }
    let todo: Vec<usize> = (0..pkgs.len()).filter(|&i| commits[i].is_none()).collect();
    let stats = ImportStats {
        imported: todo.len(),
        reused: pkgs.len() - todo.len(),
    };
    if todo.is_empty() {
        return Ok((commits.into_iter().flatten().collect(), stats));
    }
    tracing::info!(
        "importing {} packages ({} cached)",
        stats.imported,
        stats.reused
    );
    // One worker per core, each with its own repo handle and transaction (an
    // OstreeRepo is not thread-safe), taking the largest packages first.
    let repo_path = repo
        .path()
        .path()
        .context("the package cache repo has no local path")?;
    let mut order = todo;
    order.sort_by_key(|&i| {
        std::cmp::Reverse(fs::metadata(&pkgs[i].location).map_or(0, |m| m.len()))
    });
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let workers = rayon::current_num_threads().clamp(1, order.len());
    let progress = crate::logging::Progress::new(order.len(), "packages imported", false);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let r =
                        import_worker(&repo_path, pkgs, &order, &next, &done, &failed, &progress);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an import worker panicked")))
            })
            .collect()
    });
    progress.finish();
    for r in results {
        r?;
    }
    for (i, c) in done.into_inner().unwrap() {
        commits[i] = Some(c);
    }
    if commits.iter().any(|c| c.is_none()) {
        bail!("the package import stopped before every package was imported");
    }
    Ok((commits.into_iter().flatten().collect(), stats))
}

fn import_worker(
    repo_path: &Path,
    pkgs: &[Package],
    order: &[usize],
    next: &AtomicUsize,
    done: &Mutex<Vec<(usize, String)>>,
    failed: &AtomicBool,
    progress: &crate::logging::Progress,
) -> Result<()> {
    let repo = open_repo(repo_path)?;
    let tx = repo.auto_transaction(gio::Cancellable::NONE)?;
    let mut mine = Vec::new();
    while !failed.load(Ordering::Relaxed) {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let Some(&i) = order.get(k) else { break };
        let p = &pkgs[i];
        let c = import_one(&repo, p)
            .with_context(|| format!("importing package {} into the cache", p.nevra()))?;
        repo.transaction_set_ref(None, &cache_ref(&p.nevra()), Some(&c));
        mine.push((i, c));
        progress.inc();
    }
    tx.commit(gio::Cancellable::NONE)
        .context("committing the package cache")?;
    done.lock().unwrap().extend(mine);
    Ok(())
}

/// Import one RPM: its payload, decompressed by rpm2cpio, is read as it streams and
/// each file is written straight into the repo (nothing is unpacked to disk).
fn import_one(repo: &ostree::Repo, pkg: &Package) -> Result<String> {
    let mut child = cmdext::command("rpm2cpio")
        .arg(&pkg.location)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting rpm2cpio")?;
    let stdout = child.stdout.take().context("rpm2cpio stdout")?;
    let mut reader = cpio::Reader::new(std::io::BufReader::with_capacity(1 << 20, stdout));
    let written = PayloadTree::new(repo, &pkg.name).and_then(|t| t.write_payload(&mut reader));
    if written.is_err() {
        let _ = child.kill();
    } else {
        // What follows the trailer (padding) must be read for rpm2cpio to exit cleanly.
        std::io::copy(&mut reader.into_inner()?, &mut std::io::sink())?;
    }
    let out = child.wait_with_output()?;
    let rpm = pkg.location.display();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let root = match written {
        Ok(_) if !out.status.success() => bail!("rpm2cpio {rpm} failed: {stderr}"),
        Ok(root) => root,
        // A payload cut short is usually rpm2cpio's failure: say what it said.
        Err(e) if !stderr.is_empty() => return Err(e.context(format!("rpm2cpio {rpm}: {stderr}"))),
        Err(e) => return Err(e.context(format!("reading the payload of {rpm}"))),
    };
    let meta = glib::VariantDict::new(None);
    meta.insert(META_DIGEST, pkg.checksum.as_str());
    meta.insert("cosa.rpm.nevra", pkg.nevra().as_str());
    let c = repo.write_commit_with_time(
        None,
        Some(&pkg.nevra()),
        None,
        Some(&meta.end()),
        &root,
        0,
        gio::Cancellable::NONE,
    )?;
    Ok(c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_escaped() {
        assert_eq!(
            cache_ref("foo-1:2.0-1.x86_64"),
            "cosa/pkg/foo-1_3A2.0-1.x86_64"
        );
        assert_eq!(cache_ref("g++-1-1.x86_64"), "cosa/pkg/g_2B_2B-1-1.x86_64");
    }

    #[test]
    fn var_becomes_tmpfiles() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("var/lib/foo")).unwrap();
        fs::write(r.join("var/lib/foo/state"), "x").unwrap();
        std::os::unix::fs::symlink("../run", r.join("var/run")).unwrap();
        var_to_tmpfiles(r, "pkg-foo.conf").unwrap();
        assert_eq!(fs::read_dir(r.join("var")).unwrap().count(), 0);
        let conf = fs::read_to_string(r.join("usr/lib/tmpfiles.d/pkg-foo.conf")).unwrap();
        assert!(conf.contains("d /var/lib/foo 0755 root root - -"), "{conf}");
        assert!(
            conf.contains("C /var/lib/foo/state - - - - /usr/share/factory/var/lib/foo/state"),
            "{conf}"
        );
        assert!(conf.contains("L /var/run - - - - ../run"), "{conf}");
        assert!(r.join("usr/share/factory/var/lib/foo/state").exists());
    }

    /// stdout of a command that must succeed.
    fn run_ok(cmd: &mut std::process::Command) -> Vec<u8> {
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd:?}: {err}");
        out.stdout
    }

    /// GNU cpio's newc archive of `root` (relative paths, `./`-prefixed as rpm's).
    fn cpio_of(root: &Path) -> Vec<u8> {
        run_ok(
            cmdext::command("sh")
                .arg("-c")
                .arg("find . -mindepth 1 | sort | cpio -o -H newc --quiet")
                .current_dir(root),
        )
    }

    fn import_archive(archive: &[u8]) -> Result<(tempfile::TempDir, String)> {
        let t = tempfile::tempdir().unwrap();
        let repo = open_repo(&t.path().join("repo")).unwrap();
        let tx = repo.auto_transaction(gio::Cancellable::NONE).unwrap();
        let mut r = cpio::Reader::new(archive);
        let root = PayloadTree::new(&repo, "foo")?.write_payload(&mut r)?;
        let c =
            repo.write_commit_with_time(None, None, None, None, &root, 0, gio::Cancellable::NONE)?;
        repo.transaction_set_ref(None, "t", Some(&c));
        tx.commit(gio::Cancellable::NONE)?;
        Ok((t, c.to_string()))
    }

    fn ostree_out(repo: &Path, args: &[&str]) -> String {
        let out = run_ok(
            cmdext::command("ostree")
                .arg(format!("--repo={}", repo.display()))
                .args(args),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn payload_streams_into_the_repo_with_hardlinks_var_and_big_files() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        fs::create_dir_all(r.join("var/lib/foo")).unwrap();
        fs::write(r.join("usr/bin/a"), "linked").unwrap();
        fs::hard_link(r.join("usr/bin/a"), r.join("usr/bin/b")).unwrap();
        fs::write(r.join("usr/bin/empty"), "").unwrap();
        let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
        fs::write(r.join("usr/bin/big"), &big).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(
            r.join("usr/bin/big"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::symlink("a", r.join("usr/bin/c")).unwrap();
        fs::write(r.join("var/lib/foo/state"), "x").unwrap();
        std::os::unix::fs::symlink("../run", r.join("var/run")).unwrap();

        let (repo_dir, _) = import_archive(&cpio_of(r)).unwrap();
        let repo = repo_dir.path().join("repo");
        assert_eq!(ostree_out(&repo, &["cat", "t", "/usr/bin/b"]), "linked");
        assert_eq!(ostree_out(&repo, &["cat", "t", "/usr/bin/empty"]), "");
        // (the big file's size is checked in the listing below)
        let ls = ostree_out(&repo, &["ls", "-R", "-C", "t"]);
        let line = |p: &str| {
            ls.lines()
                .find(|l| l.ends_with(p))
                .unwrap_or_else(|| panic!("{p} in {ls}"))
                .to_string()
        };
        let csum = |p: &str| line(p).split_whitespace().nth(4).unwrap().to_string();
        assert_eq!(
            csum("/usr/bin/a"),
            csum("/usr/bin/b"),
            "hardlinks share content"
        );
        let big_line = line("/usr/bin/big");
        assert!(big_line.starts_with("-04755 0 0"), "{big_line}");
        assert_eq!(
            big_line.split_whitespace().nth(3),
            Some(big.len().to_string().as_str()),
            "{big_line}"
        );
        assert!(line("/usr/bin/c -> a").starts_with('l'));
        // /var: empty in the commit, recreated by tmpfiles.d from /usr/share/factory.
        assert!(ls.lines().any(|l| l.ends_with(" /var")));
        assert!(!ls.lines().any(|l| l.contains(" /var/")), "{ls}");
        assert_eq!(
            ostree_out(&repo, &["cat", "t", "/usr/share/factory/var/lib/foo/state"]),
            "x"
        );
        let conf = ostree_out(&repo, &["cat", "t", "/usr/lib/tmpfiles.d/pkg-foo.conf"]);
        assert_eq!(
            conf,
            "d /var/lib 0755 root root - -\n\
             d /var/lib/foo 0755 root root - -\n\
             C /var/lib/foo/state - - - - /usr/share/factory/var/lib/foo/state\n\
             L /var/run - - - - ../run\n"
        );
        ostree_out(&repo, &["fsck"]);
    }

    #[test]
    fn device_nodes_in_a_payload_are_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("dev")).unwrap();
        let st = cmdext::command("mknod")
            .arg(r.join("dev/null"))
            .args(["c", "1", "3"])
            .status()
            .unwrap();
        assert!(st.success(), "mknod (the tests run as root)");
        let e = import_archive(&cpio_of(r)).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("/dev/null") && msg.contains("device node"),
            "{msg}"
        );
    }

    #[test]
    fn a_corrupt_rpm_is_an_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let rpm = t.path().join("broken-1-1.noarch.rpm");
        fs::write(&rpm, b"\xed\xab\xee\xdb not really an rpm").unwrap();
        let repo = open_repo(&t.path().join("repo")).unwrap();
        let pkg = Package {
            name: "broken".into(),
            epoch: 0,
            version: "1".into(),
            release: "1".into(),
            arch: "noarch".into(),
            repo: "test".into(),
            checksum: "sha256:00".into(),
            size: 0,
            location: rpm.clone(),
        };
        let tx = repo.auto_transaction(gio::Cancellable::NONE).unwrap();
        let e = import_one(&repo, &pkg).unwrap_err();
        drop(tx);
        let msg = format!("{e:#}");
        assert!(msg.contains(&rpm.display().to_string()), "{msg}");
    }
}
