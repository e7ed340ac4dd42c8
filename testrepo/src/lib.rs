//! Throwaway rpm-md repositories for tests and benchmarks, built with the real
//! `rpmbuild` and `createrepo_c`.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use testrepo::{build_repo, Package};
//! let dir = std::path::Path::new("/tmp/repo");
//! let repo = build_repo(
//!     dir,
//!     &[
//!         Package::new("foo", "1.0", "1").requires("bar >= 2").file("/etc/foo.conf", "x=1\n"),
//!         Package::new("bar", "2.0", "1").exec("/usr/bin/bar", "#!/bin/sh\n").post("touch /var/bar"),
//!     ],
//! )?;
//! repo.write_repo_file(&dir.join("test.repo"), "test")?;
//! # Ok(()) }
//! ```
//!
//! Nothing touches the user's home or rpmdb: every `rpmbuild` runs with its own
//! `_topdir`, `_dbpath` and `HOME` in a scratch directory. Payloads are zstd
//! level 2 (`w2.zstdio`), which Debian 12's rpm, rpm2cpio and libdnf all read.
//! Set `TESTREPO_KEEP=1` to keep the scratch directories (spec, staged tree).

mod cmd;
mod spec;
mod synthetic;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, ensure, Context, Result};

pub use synthetic::{synthetic, BASE_PACKAGE};

use cmd::ScratchDir;
use cmdext::{command, CommandRunExt};

/// How many `rpmbuild` processes [`build_repo`] runs at once.
const JOBS: usize = 2;

/// Build time and file mtimes of every package (makes rebuilt RPMs reproducible).
const SOURCE_DATE_EPOCH: &str = "1700000000";

/// One binary RPM to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    /// `x86_64` or `noarch`.
    pub arch: String,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub conflicts: Vec<String>,
    pub obsoletes: Vec<String>,
    /// Weak dependencies (`Recommends:`).
    pub recommends: Vec<String>,
    pub files: Vec<FileEntry>,
    /// File capabilities (`%caps`), by path, in libcap's text form (`cap_net_raw=ep`).
    pub caps: std::collections::BTreeMap<String, String>,
    /// Directories the package owns (`%dir`), mode 0755.
    pub dirs: Vec<String>,
    pub pre: Option<String>,
    pub post: Option<String>,
    pub posttrans: Option<String>,
    pub summary: String,
}

/// A file in a [`Package`]'s payload. Paths are absolute; parent directories that
/// are not in [`Package::dirs`] are created but not owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEntry {
    File {
        path: String,
        content: Vec<u8>,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// Content copied from a host file when the package is built (e.g. a static busybox).
    Copy {
        path: String,
        source: PathBuf,
        mode: u32,
    },
}

impl FileEntry {
    pub fn path(&self) -> &str {
        match self {
            FileEntry::File { path, .. }
            | FileEntry::Symlink { path, .. }
            | FileEntry::Copy { path, .. } => path,
        }
    }
}

impl Package {
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        release: impl Into<String>,
    ) -> Self {
        let name = name.into();
        Self {
            summary: format!("{name} test package"),
            name,
            epoch: None,
            version: version.into(),
            release: release.into(),
            arch: "noarch".into(),
            requires: Vec::new(),
            provides: Vec::new(),
            conflicts: Vec::new(),
            obsoletes: Vec::new(),
            recommends: Vec::new(),
            files: Vec::new(),
            caps: Default::default(),
            dirs: Vec::new(),
            pre: None,
            post: None,
            posttrans: None,
        }
    }

    pub fn epoch(mut self, epoch: u32) -> Self {
        self.epoch = Some(epoch);
        self
    }

    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = arch.into();
        self
    }

    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    /// Adds a `Requires:`, e.g. `"bar >= 1.2"` or `"/bin/sh"`.
    pub fn requires(mut self, dep: impl Into<String>) -> Self {
        self.requires.push(dep.into());
        self
    }

    pub fn provides(mut self, dep: impl Into<String>) -> Self {
        self.provides.push(dep.into());
        self
    }

    pub fn conflicts(mut self, dep: impl Into<String>) -> Self {
        self.conflicts.push(dep.into());
        self
    }

    pub fn obsoletes(mut self, dep: impl Into<String>) -> Self {
        self.obsoletes.push(dep.into());
        self
    }

    pub fn recommends(mut self, dep: impl Into<String>) -> Self {
        self.recommends.push(dep.into());
        self
    }

    /// A regular file, mode 0644.
    pub fn file(self, path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        self.file_mode(path, content, 0o644)
    }

    /// An executable file, mode 0755.
    pub fn exec(self, path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        self.file_mode(path, content, 0o755)
    }

    pub fn file_mode(
        mut self,
        path: impl Into<String>,
        content: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Self {
        self.files.push(FileEntry::File {
            path: path.into(),
            content: content.into(),
            mode,
        });
        self
    }

    /// A file whose content is read from `source` on the host at build time.
    pub fn copy(mut self, path: impl Into<String>, source: impl Into<PathBuf>, mode: u32) -> Self {
        self.files.push(FileEntry::Copy {
            path: path.into(),
            source: source.into(),
            mode,
        });
        self
    }

    pub fn symlink(mut self, path: impl Into<String>, target: impl Into<String>) -> Self {
        self.files.push(FileEntry::Symlink {
            path: path.into(),
            target: target.into(),
        });
        self
    }

    /// Give a file of the package capabilities (`%caps(…)`).
    pub fn caps(mut self, path: impl Into<String>, caps: impl Into<String>) -> Self {
        self.caps.insert(path.into(), caps.into());
        self
    }

    /// An owned directory (`%dir`).
    pub fn dir(mut self, path: impl Into<String>) -> Self {
        self.dirs.push(path.into());
        self
    }

    /// A `%pre` scriptlet (`/bin/sh`; the package then requires `/bin/sh`).
    pub fn pre(mut self, script: impl Into<String>) -> Self {
        self.pre = Some(script.into());
        self
    }

    pub fn post(mut self, script: impl Into<String>) -> Self {
        self.post = Some(script.into());
        self
    }

    pub fn posttrans(mut self, script: impl Into<String>) -> Self {
        self.posttrans = Some(script.into());
        self
    }

    /// `name-[epoch:]version-release.arch`.
    pub fn nevra(&self) -> String {
        let epoch = self.epoch.map(|e| format!("{e}:")).unwrap_or_default();
        format!(
            "{}-{epoch}{}-{}.{}",
            self.name, self.version, self.release, self.arch
        )
    }

    /// The file name rpmbuild gives the package: `name-version-release.arch.rpm`.
    pub fn rpm_file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }
}

/// Builds `pkg` with rpmbuild and puts the RPM into `out_dir` (created if missing).
pub fn build_rpm(pkg: &Package, out_dir: &Path) -> Result<PathBuf> {
    build_rpm_inner(pkg, out_dir).with_context(|| format!("building package {}", pkg.nevra()))
}

fn build_rpm_inner(pkg: &Package, out_dir: &Path) -> Result<PathBuf> {
    let scratch = ScratchDir::new(&std::env::temp_dir(), &format!("testrepo-{}", pkg.name))?;
    let stage = scratch.path().join("stage");
    stage_files(pkg, &stage)?;
    let spec_path = scratch.path().join(format!("{}.spec", pkg.name));
    fs_err::write(&spec_path, spec::render(pkg)?)
        .with_context(|| format!("writing {}", spec_path.display()))?;

    let magic = compile_magic(scratch.path())?;
    let topdir = scratch.path().join("top");
    let mut cmd = command("rpmbuild");
    // The staged tree is the buildroot: kept as is (no `rm -rf` before %install, no
    // %clean), not copied.
    cmd.args(["-bb", "--quiet", "--noclean", "--buildroot"])
        .arg(&stage);
    for (name, value) in [
        ("_topdir", topdir.to_str()),
        ("_dbpath", scratch.path().join("rpmdb").to_str()),
        ("_tmppath", scratch.path().join("tmp").to_str()),
        ("_binary_payload", Some("w2.zstdio")),
        // No debuginfo, stripping, build-id links or other brp scripts: the payload is
        // exactly the staged tree.
        ("__spec_install_pre", Some("%{___build_pre}")),
        ("__spec_install_post", Some("%{nil}")),
        // The buildroot holds exactly the listed files.
        ("__check_files", Some("%{nil}")),
        // Parallelism comes from running several rpmbuilds; one thread each.
        ("_smp_build_nthreads", Some("1")),
        ("__os_install_post", Some("%{nil}")),
        ("debug_package", Some("%{nil}")),
        ("_build_id_links", Some("none")),
        ("_buildhost", Some("testrepo")),
        ("use_source_date_epoch_as_buildtime", Some("1")),
        ("clamp_mtime_to_source_epoch", Some("1")),
    ] {
        let value = value.ok_or_else(|| anyhow!("non-UTF-8 temporary directory"))?;
        cmd.arg("--define").arg(format!("{name} {value}"));
    }
    cmd.arg(&spec_path)
        .env("HOME", scratch.path())
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .env("MAGIC", &magic)
        .env("LC_ALL", "C");
    fs_err::create_dir_all(scratch.path().join("tmp"))?;
    cmd.run()?;

    let built = topdir
        .join("RPMS")
        .join(&pkg.arch)
        .join(pkg.rpm_file_name());
    ensure!(built.exists(), "rpmbuild did not write {}", built.display());
    fs_err::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let dest = out_dir.join(pkg.rpm_file_name());
    if fs_err::rename(&built, &dest).is_err() {
        // Different filesystems: copy instead.
        fs_err::copy(&built, &dest)
            .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    }
    Ok(dest)
}

/// Just enough libmagic database for rpm's file classification to tell ELF classes
/// apart (file colors). The full database's text-language regexes cost about 80% of
/// rpmbuild's time on payloads of many small text files.
const MAGIC_SOURCE: &str = "0\tstring\t\\177ELF\tELF\n\
                            >4\tbyte\t1\t32-bit\n\
                            >4\tbyte\t2\t64-bit\n\
                            >5\tbyte\t1\tLSB\n\
                            >5\tbyte\t2\tMSB\n";

/// Compiles [`MAGIC_SOURCE`] with `file -C` in `dir`; returns the database to use.
fn compile_magic(dir: &Path) -> Result<PathBuf> {
    let source = dir.join("magic");
    fs_err::write(&source, MAGIC_SOURCE)?;
    command("file")
        .args(["-C", "-m", "magic"])
        .current_dir(dir)
        .run()
        .context("compiling the libmagic database for rpmbuild")?;
    Ok(dir.join("magic.mgc"))
}

/// Writes the package's payload under `stage`, which becomes the buildroot.
fn stage_files(pkg: &Package, stage: &Path) -> Result<()> {
    fs_err::create_dir_all(stage)?;
    for dir in &pkg.dirs {
        let dest = staged_path(stage, dir)?;
        fs_err::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    }
    for entry in &pkg.files {
        let dest = staged_path(stage, entry.path())?;
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match entry {
            FileEntry::File { content, .. } => fs_err::write(&dest, content)
                .with_context(|| format!("writing {}", dest.display()))?,
            FileEntry::Copy { source, .. } => {
                fs_err::copy(source, &dest)
                    .with_context(|| format!("copying {}", source.display()))?;
            }
            FileEntry::Symlink { target, .. } => std::os::unix::fs::symlink(target, &dest)
                .with_context(|| format!("creating symlink {}", dest.display()))?,
        }
    }
    Ok(())
}

fn staged_path(stage: &Path, path: &str) -> Result<PathBuf> {
    let rel = Path::new(path)
        .strip_prefix("/")
        .map_err(|_| anyhow!("path {path:?} is not absolute"))?;
    ensure!(
        rel.components().all(|c| matches!(c, Component::Normal(_))),
        "path {path:?} is not normalized"
    );
    ensure!(
        rel.components().next().is_some(),
        "path {path:?} is the root"
    );
    Ok(stage.join(rel))
}

/// An rpm-md repository in a directory.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Absolute path: holds the RPMs and `repodata/`.
    pub dir: PathBuf,
}

/// Builds every package (two `rpmbuild`s at a time) into `dir` and indexes it with
/// `createrepo_c`.
pub fn build_repo(dir: &Path, pkgs: &[Package]) -> Result<Repo> {
    fs_err::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    build_rpms(pkgs, &dir)?;
    let repo = Repo { dir };
    createrepo(&repo.dir, false)?;
    Ok(repo)
}

/// Builds `pkgs` into `out_dir`, [`JOBS`] at a time; stops at the first failure.
pub fn build_rpms(pkgs: &[Package], out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut names = std::collections::HashSet::new();
    for pkg in pkgs {
        ensure!(
            names.insert(pkg.rpm_file_name()),
            "package {} is listed twice",
            pkg.nevra()
        );
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<PathBuf>>>> =
        Mutex::new(pkgs.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..JOBS.min(pkgs.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(pkg) = pkgs.get(i) else { break };
                    let result = build_rpm(pkg, out_dir);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut results) = results.lock() {
                        results[i] = Some(result);
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow!("a build thread panicked"))?;
    let mut paths = Vec::with_capacity(pkgs.len());
    for result in results {
        match result {
            Some(Ok(path)) => paths.push(path),
            Some(Err(e)) => return Err(e),
            None if failed.load(Ordering::Relaxed) => {}
            None => bail!("a build thread panicked"),
        }
    }
    Ok(paths)
}

fn createrepo(dir: &Path, update: bool) -> Result<()> {
    let mut cmd = command("createrepo_c");
    cmd.args(["--quiet", "--no-database", "--workers", "2"]);
    if update {
        cmd.arg("--update");
    }
    cmd.arg(dir)
        .run()
        .with_context(|| format!("indexing {}", dir.display()))?;
    Ok(())
}

impl Repo {
    /// Writes a dnf `.repo` file for this repository: no gpg, metadata never cached stale.
    pub fn write_repo_file(&self, path: &Path, id: &str) -> Result<()> {
        let content = format!(
            "[{id}]\nname={id}\nbaseurl=file://{}\nenabled=1\ngpgcheck=0\nrepo_gpgcheck=0\nmetadata_expire=0\n",
            self.dir.display()
        );
        fs_err::write(path, content).with_context(|| format!("writing {}", path.display()))
    }

    /// Re-indexes after RPMs were added to or removed from [`Repo::dir`].
    pub fn refresh(&self) -> Result<()> {
        createrepo(&self.dir, true)
    }

    /// Builds `pkgs` into the repository and refreshes its metadata.
    pub fn add(&self, pkgs: &[Package]) -> Result<Vec<PathBuf>> {
        let paths = build_rpms(pkgs, &self.dir)?;
        self.refresh()?;
        Ok(paths)
    }

    /// Path of a package's RPM in this repository (whether or not it exists).
    pub fn rpm_path(&self, pkg: &Package) -> PathBuf {
        self.dir.join(pkg.rpm_file_name())
    }
}

/// Runs `rpm -qp ARGS RPM` against a throwaway rpmdb and returns stdout.
pub fn rpm_query(rpm: &Path, args: &[&str]) -> Result<String> {
    let scratch = ScratchDir::new(&std::env::temp_dir(), "testrepo-query")?;
    let out = command("rpm")
        .arg("--define")
        .arg(format!("_dbpath {}", scratch.path().display()))
        .arg("-qp")
        .args(args)
        .arg(rpm)
        .env("HOME", scratch.path())
        .run_get_output()
        .with_context(|| format!("querying {}", rpm.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests;
