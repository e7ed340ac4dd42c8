//! Resolving and fetching RPMs from rpm-md repos with libdnf: the one safe wrapper
//! over `libdnf-sys`.
//!
//! Hermetic by construction: libdnf sees only a private copy of the selected `.repo`
//! sections, an empty install root, no dnf.conf, no vars dirs, no plugins and no
//! rpmdb. Package signatures are checked with `rpmkeys` against a keyring built from
//! the repo's own `gpgkey`, in a temporary rpmdb.

// The FFI boundary lives here and only here: every libdnf pointer is owned by a
// small RAII type below, and no raw pointer leaves this module.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::raw::c_char;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::ptr::{self, NonNull};

use anyhow::{anyhow, bail, ensure, Context, Result};
use libdnf_sys as sys;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The repo id libdnf gives to RPM files added by path.
pub const CMDLINE_REPO: &str = "@commandline";

/// Which repos to load, and from where.
#[derive(Clone, Debug)]
pub struct RepoSetup {
    /// `.repo` files to load; the host's /etc/yum.repos.d is never read.
    pub repo_files: Vec<PathBuf>,
    /// Repo ids to enable (treefile `repos:`); all others are disabled.
    pub enabled: Vec<String>,
    pub releasever: Option<String>,
    /// e.g. "x86_64"
    pub basearch: String,
    /// libdnf/librepo metadata cache.
    pub cache_dir: PathBuf,
}

/// What to depsolve.
#[derive(Clone, Debug, Default)]
pub struct PackageRequest {
    /// Package names or provides.
    pub install: Vec<String>,
    /// `exclude-packages`: names never installed.
    pub exclude: Vec<String>,
    /// Local RPMs (overrides/rpm): each replaces the repo packages of the same name,
    /// older or newer. They are candidates, not requests: one is installed when its
    /// name is requested or required. They win over `locked`.
    pub local_rpms: Vec<PathBuf>,
    /// name -> "EVR.ARCH" (rpm-ostree lockfile `evra`, epoch "N:" when nonzero).
    pub locked: Option<BTreeMap<String, String>>,
    /// With `locked`: any package not in the lock is an error.
    pub strict: bool,
    /// Install weak dependencies (Recommends/Supplements)?
    pub recommends: bool,
}

/// One resolved package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// Repo id, or "@commandline" for local RPMs.
    pub repo: String,
    /// "sha256:<hex>" from the repo metadata; computed for local RPMs.
    pub checksum: String,
    pub size: u64,
    /// The .rpm file on disk: set by `download` (local RPMs: their own path).
    pub location: PathBuf,
}

impl Package {
    /// `name-[epoch:]version-release.arch`
    pub fn nevra(&self) -> String {
        format!("{}-{}", self.name, self.evra())
    }

    /// `[epoch:]version-release.arch`, the form rpm-ostree lockfiles use.
    pub fn evra(&self) -> String {
        if self.epoch == 0 {
            format!("{}-{}.{}", self.version, self.release, self.arch)
        } else {
            format!(
                "{}:{}-{}.{}",
                self.epoch, self.version, self.release, self.arch
            )
        }
    }

    /// The conventional file name of this package's RPM.
    pub fn filename(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }
}

/// What `Dnf::download` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadStats {
    /// Files fetched from a repo.
    pub downloaded: usize,
    /// Files already in the cache with the right checksum.
    pub reused: usize,
    /// Bytes fetched.
    pub bytes: u64,
}

/// A loaded set of repos, ready to depsolve.
///
/// libdnf keeps some state process-wide (main config, rpm macros): use one `Dnf`
/// at a time in a process. It is neither `Send` nor `Sync`.
pub struct Dnf {
    ctx: GObject<sys::DnfContext>,
    repos: Vec<RepoSection>,
    /// Local RPMs already added to the sack, by canonical path.
    cmdline: BTreeSet<PathBuf>,
    /// Per-repo rpmdb holding the repo's public keys, built on first use.
    keyrings: HashMap<String, tempfile::TempDir>,
    /// Private repos dir, install root, lock dir: libdnf reads nothing else.
    tmp: tempfile::TempDir,
}

impl Dnf {
    /// Load the enabled repos' metadata (librepo), into `setup.cache_dir`.
    pub fn new(setup: &RepoSetup) -> Result<Dnf> {
        let repos = select_repos(setup)?;
        let tmp = tempfile::Builder::new()
            .prefix("cosa-dnf-")
            .tempdir()
            .context("creating libdnf's private directory")?;
        let reposd = tmp.path().join("repos.d");
        let root = tmp.path().join("root");
        for d in [&reposd, &root, &setup.cache_dir] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let repofile = reposd.join("cosa.repo");
        std::fs::write(&repofile, render_repos(&repos))
            .with_context(|| format!("writing {}", repofile.display()))?;

        let ctx = unsafe {
            // Process-wide settings: no dnf.conf (an empty path means "do not read one"), no plugins.
            sys::dnf_context_set_config_file_path(c"".as_ptr());
            sys::dnf_context_set_plugins_all_disabled(1);
            GObject::new(sys::dnf_context_new()).context("dnf_context_new failed")?
        };
        let c = ctx.as_ptr();
        let path = |p: &Path| cstring(p.as_os_str().as_encoded_bytes());
        let no_vars: [*const c_char; 1] = [ptr::null()];
        // Without a releasever libdnf would read the host's os-release.
        let releasever = cstring(
            setup
                .releasever
                .as_deref()
                .unwrap_or("cosa-unset-releasever")
                .as_bytes(),
        )?;
        unsafe {
            sys::dnf_context_set_repo_dir(c, path(&reposd)?.as_ptr());
            sys::dnf_context_set_cache_dir(c, path(&setup.cache_dir)?.as_ptr());
            sys::dnf_context_set_solv_dir(c, path(&setup.cache_dir.join("solv"))?.as_ptr());
            sys::dnf_context_set_lock_dir(c, path(&tmp.path().join("lock"))?.as_ptr());
            sys::dnf_context_set_install_root(c, path(&root)?.as_ptr());
            sys::dnf_context_set_source_root(c, path(&root)?.as_ptr());
            sys::dnf_context_set_vars_dir(c, no_vars.as_ptr());
            sys::dnf_context_set_release_ver(c, releasever.as_ptr());
            sys::dnf_context_set_arch(c, cstring(setup.basearch.as_bytes())?.as_ptr());
            sys::dnf_context_set_rpm_macro(
                c,
                c"_dbpath".as_ptr(),
                path(&root.join("usr/share/rpm"))?.as_ptr(),
            );
            sys::dnf_context_set_plugins_dir(c, ptr::null());
            sys::dnf_context_set_check_disk_space(c, 0);
            sys::dnf_context_set_check_transaction(c, 0);
            sys::dnf_context_set_write_history(c, 0);
            sys::dnf_context_set_zchunk(c, 0);
            sys::dnf_context_set_user_agent(c, c"cosa".as_ptr());
        }
        gcall(|e| unsafe { sys::dnf_context_setup(c, ptr::null_mut(), e) })
            .context("setting up libdnf")?;
        let state = unsafe { sys::dnf_context_get_state(c) };
        gcall(|e| unsafe {
            sys::dnf_context_setup_sack_with_flags(
                c,
                state,
                sys::DNF_CONTEXT_SETUP_SACK_FLAG_SKIP_RPMDB,
                e,
            )
        })
        .with_context(|| {
            let urls: Vec<String> = repos
                .iter()
                .map(|r| format!("{} ({})", r.id, r.urls().join(" ")))
                .collect();
            format!("loading repo metadata of {}", urls.join(", "))
        })?;
        Ok(Dnf {
            ctx,
            repos,
            cmdline: BTreeSet::new(),
            keyrings: HashMap::new(),
            tmp,
        })
    }

    fn sack(&self) -> *mut sys::DnfSack {
        unsafe { sys::dnf_context_get_sack(self.ctx.as_ptr()) }
    }

    /// Depsolve `req`; the result is sorted by name.
    pub fn resolve(&mut self, req: &PackageRequest) -> Result<Vec<Package>> {
        let local = self.add_local_rpms(&req.local_rpms)?;
        match self.resolve_with(req, &local) {
            Err(e) if req.strict && req.locked.is_some() => {
                // Say which packages the lock lacks rather than "nothing provides X".
                let relaxed = PackageRequest {
                    strict: false,
                    ..req.clone()
                };
                let lock = req.locked.as_ref().expect("checked above");
                match self.resolve_with(&relaxed, &local) {
                    Ok(pkgs) => {
                        let unlocked: Vec<String> = pkgs
                            .iter()
                            .filter(|p| !lock.contains_key(&p.name) && p.repo != CMDLINE_REPO)
                            .map(|p| p.nevra())
                            .collect();
                        if unlocked.is_empty() {
                            Err(e)
                        } else {
                            Err(e.context(format!(
                                "strict lockfile: not in the lockfile: {}",
                                unlocked.join(", ")
                            )))
                        }
                    }
                    Err(_) => Err(e),
                }
            }
            r => r,
        }
    }

    /// Add local RPMs to the sack (once per path); returns their names by path.
    fn add_local_rpms(&mut self, rpms: &[PathBuf]) -> Result<BTreeMap<PathBuf, String>> {
        let mut local = BTreeMap::new();
        for p in rpms {
            let path = p
                .canonicalize()
                .with_context(|| format!("local RPM {}", p.display()))?;
            if !self.cmdline.contains(&path) {
                let c = cstring(path.as_os_str().as_encoded_bytes())?;
                let pkg = unsafe { sys::dnf_sack_add_cmdline_package(self.sack(), c.as_ptr()) };
                let pkg = GObject::new(pkg)
                    .ok_or_else(|| anyhow!("libdnf could not read local RPM {}", path.display()))?;
                drop(pkg);
                self.cmdline.insert(path.clone());
            }
            let q = Query::new(self.sack(), true);
            q.filter(sys::HY_PKG_REPONAME, sys::HY_EQ, CMDLINE_REPO)?;
            q.filter(sys::HY_PKG_LOCATION, sys::HY_EQ, &path.to_string_lossy())?;
            let name = q
                .run()
                .iter()
                .next()
                .map(|p| pkg_str(p, sys::dnf_package_get_name))
                .ok_or_else(|| anyhow!("local RPM {} not in the sack", path.display()))?;
            local.insert(path, name);
        }
        Ok(local)
    }

    fn resolve_with(
        &mut self,
        req: &PackageRequest,
        local: &BTreeMap<PathBuf, String>,
    ) -> Result<Vec<Package>> {
        let sack = self.sack();
        unsafe { sys::dnf_sack_reset_excludes(sack) };
        let local_names: BTreeSet<&str> = local.values().map(String::as_str).collect();

        // Local RPMs of earlier requests are out; those of this one replace their name.
        let stale = Query::new(sack, true);
        stale.filter(sys::HY_PKG_REPONAME, sys::HY_EQ, CMDLINE_REPO)?;
        for path in local.keys() {
            let this = Query::new(sack, true);
            this.filter(sys::HY_PKG_LOCATION, sys::HY_EQ, &path.to_string_lossy())?;
            stale.difference(&this);
        }
        stale.exclude()?;
        for name in &local_names {
            let q = Query::new(sack, true);
            q.filter(sys::HY_PKG_NAME, sys::HY_EQ, name)?;
            q.filter(sys::HY_PKG_REPONAME, sys::HY_NEQ, CMDLINE_REPO)?;
            q.exclude()?;
        }
        for name in &req.exclude {
            let q = Query::new(sack, true);
            q.filter(sys::HY_PKG_NAME, sys::HY_EQ, name)?;
            q.exclude()?;
        }

        // Locks: a locked name may only be its locked NEVRA.
        let mut missing_locked = Vec::new();
        if let Some(lock) = &req.locked {
            let locked_all = Query::new(sack, true);
            locked_all.clear();
            for (name, evra) in lock {
                if local_names.contains(name.as_str()) {
                    continue;
                }
                let evra = evra.strip_prefix("0:").unwrap_or(evra);
                let nevra = format!("{name}-{evra}");
                let exact = Query::new(sack, true);
                exact.filter(sys::HY_PKG_NEVRA_STRICT, sys::HY_EQ, &nevra)?;
                let others = Query::new(sack, true);
                others.filter(sys::HY_PKG_NAME, sys::HY_EQ, name)?;
                if exact.is_empty() {
                    missing_locked.push(nevra);
                }
                others.difference(&exact);
                others.exclude()?;
                locked_all.union(&exact);
            }
            if req.strict {
                let unlocked = Query::new(sack, true);
                unlocked.filter(sys::HY_PKG_REPONAME, sys::HY_NEQ, CMDLINE_REPO)?;
                unlocked.difference(&locked_all);
                unlocked.exclude()?;
            }
        }
        let lock_hint = || {
            if missing_locked.is_empty() {
                String::new()
            } else {
                format!(
                    " (locked versions not in the enabled repos: {})",
                    missing_locked.join(", ")
                )
            }
        };

        if req.install.is_empty() {
            // libdnf calls an empty goal an error ("The transaction was empty").
            return Ok(Vec::new());
        }
        let goal = Goal::new(sack)?;
        for spec in &req.install {
            goal.install(sack, spec).with_context(|| {
                let mut why = String::new();
                if req.exclude.contains(spec) {
                    why.push_str(" (it is in exclude-packages)");
                } else if req.strict && req.locked.as_ref().is_some_and(|l| !l.contains_key(spec)) {
                    why.push_str(" (strict lockfile: it is not in the lockfile)");
                }
                format!(
                    "package '{spec}' not found in the enabled repos{why}{}",
                    lock_hint()
                )
            })?;
        }
        let mut flags = sys::DNF_INSTALL;
        if !req.recommends {
            flags |= sys::DNF_IGNORE_WEAK_DEPS;
        }
        gcall(|e| unsafe { sys::dnf_goal_depsolve(goal.0.as_ptr(), flags, e) })
            .with_context(|| format!("depsolving {}{}", req.install.join(" "), lock_hint()))?;
        let installs = PtrArray::new(gcall_ptr(|e| unsafe {
            sys::hy_goal_list_installs(goal.0.as_ptr(), e)
        })?);

        let mut pkgs = installs
            .iter()
            .map(package_from_dnf)
            .collect::<Result<Vec<_>>>()?;
        for p in pkgs.iter_mut().filter(|p| p.repo == CMDLINE_REPO) {
            let (checksum, size) = file_sha256(&p.location)?;
            p.checksum = format!("sha256:{checksum}");
            p.size = size;
        }
        pkgs.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        if let (Some(lock), true) = (&req.locked, req.strict) {
            let unlocked: Vec<String> = pkgs
                .iter()
                .filter(|p| p.repo != CMDLINE_REPO && !lock.contains_key(&p.name))
                .map(Package::nevra)
                .collect();
            ensure!(
                unlocked.is_empty(),
                "strict lockfile: not in the lockfile: {}",
                unlocked.join(", ")
            );
        }
        Ok(pkgs)
    }

    /// Fetch `pkgs` into `dest` (reusing files already there with the right checksum),
    /// verify checksums and, where the repo asks for it, signatures; set each
    /// package's `location`.
    pub fn download(&mut self, pkgs: &mut [Package], dest: &Path) -> Result<DownloadStats> {
        std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        let mut stats = DownloadStats::default();
        let mut cached: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut wanted: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            if p.repo == CMDLINE_REPO {
                ensure!(
                    p.location.is_file(),
                    "local RPM {} of {} is gone",
                    p.location.display(),
                    p.nevra()
                );
                continue;
            }
            let target = dest.join(p.filename());
            let list = if target.is_file() && checksum_matches(&target, &p.checksum)? {
                &mut cached
            } else {
                &mut wanted
            };
            list.entry(p.repo.clone()).or_default().push(i);
        }
        // Cached files are checked again: the repo may have turned gpgcheck on since.
        for (repo_id, idxs) in cached {
            let files: Vec<_> = idxs
                .iter()
                .map(|&i| (dest.join(pkgs[i].filename()), pkgs[i].nevra()))
                .collect();
            self.check_signatures(&repo_id, &files)?;
            for (i, (file, _)) in idxs.into_iter().zip(files) {
                pkgs[i].location = file;
                stats.reused += 1;
            }
        }
        for (repo_id, idxs) in wanted {
            let (_tmp, fetched) =
                self.fetch_from_repo(&repo_id, idxs.iter().map(|&i| &pkgs[i]), dest)?;
            let mut files = Vec::new();
            for (&i, file) in idxs.iter().zip(fetched) {
                let p = &pkgs[i];
                ensure!(
                    checksum_matches(&file, &p.checksum)?,
                    "{} from repo '{repo_id}': checksum mismatch (repo metadata says {})",
                    p.nevra(),
                    p.checksum
                );
                files.push((file, p.nevra()));
            }
            self.check_signatures(&repo_id, &files)?;
            for (i, (file, _)) in idxs.into_iter().zip(files) {
                let target = dest.join(pkgs[i].filename());
                std::fs::rename(&file, &target)
                    .with_context(|| format!("renaming into {}", target.display()))?;
                stats.downloaded += 1;
                stats.bytes += std::fs::metadata(&target)?.len();
                pkgs[i].location = target;
            }
        }
        tracing::info!(
            "packages: {} downloaded ({} bytes), {} reused",
            stats.downloaded,
            stats.bytes,
            stats.reused
        );
        Ok(stats)
    }

    /// Download `pkgs` of one repo with librepo into a temp dir under `dest` (so an
    /// interrupted fetch leaves no file under a final name); the returned files are
    /// in the same order.
    fn fetch_from_repo<'a>(
        &self,
        repo_id: &str,
        pkgs: impl Iterator<Item = &'a Package>,
        dest: &Path,
    ) -> Result<(tempfile::TempDir, Vec<PathBuf>)> {
        let repo = self.dnf_repo(repo_id)?;
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(dest)
            .with_context(|| format!("creating a temp dir in {}", dest.display()))?;
        // Keep the query results alive: the array below borrows their packages.
        let mut results = Vec::new();
        let mut names = Vec::new();
        let batch = PtrArray::new(unsafe { sys::g_ptr_array_new() });
        for p in pkgs {
            let q = Query::new(self.sack(), true);
            q.filter(sys::HY_PKG_NEVRA_STRICT, sys::HY_EQ, &p.nevra())?;
            q.filter(sys::HY_PKG_REPONAME, sys::HY_EQ, repo_id)?;
            let found = q.run();
            let dp = found
                .iter()
                .next()
                .ok_or_else(|| anyhow!("{} is not in repo '{repo_id}'", p.nevra()))?;
            let loc = pkg_str(dp, sys::dnf_package_get_location);
            let base = Path::new(&loc)
                .file_name()
                .ok_or_else(|| anyhow!("{}: bad location '{loc}'", p.nevra()))?;
            names.push(tmp.path().join(base));
            unsafe { sys::g_ptr_array_add(batch.0.as_ptr(), dp.cast()) };
            results.push(found);
        }
        tracing::info!("downloading {} packages from repo '{repo_id}'", names.len());
        let dir = cstring(tmp.path().as_os_str().as_encoded_bytes())?;
        let state = GObject::new(unsafe { sys::dnf_state_new() }).context("dnf_state_new")?;
        gcall(|e| unsafe {
            sys::dnf_repo_download_packages(repo, batch.0.as_ptr(), dir.as_ptr(), state.as_ptr(), e)
        })
        .with_context(|| {
            let url = self.section(repo_id).map(|r| r.urls().join(" "));
            format!(
                "downloading packages from repo '{repo_id}' ({})",
                url.unwrap_or_default()
            )
        })?;
        for f in &names {
            ensure!(f.is_file(), "librepo did not produce {}", f.display());
        }
        Ok((tmp, names))
    }

    fn dnf_repo(&self, id: &str) -> Result<*mut sys::DnfRepo> {
        let repos = unsafe { sys::dnf_context_get_repos(self.ctx.as_ptr()) };
        ensure!(!repos.is_null(), "libdnf has no repos");
        let repos = unsafe { &*repos };
        for i in 0..repos.len as usize {
            let r = unsafe { *repos.pdata.add(i) } as *mut sys::DnfRepo;
            if unsafe { cstr(sys::dnf_repo_get_id(r)) } == id {
                return Ok(r);
            }
        }
        bail!("repo '{id}' is not loaded")
    }

    fn section(&self, id: &str) -> Option<&RepoSection> {
        self.repos.iter().find(|r| r.id == id)
    }

    /// Where the repo has `gpgcheck=1`, check the signatures of `files` (path, NEVRA)
    /// against its `gpgkey`s.
    fn check_signatures(&mut self, repo_id: &str, files: &[(PathBuf, String)]) -> Result<()> {
        let Some(section) = self.section(repo_id) else {
            return Ok(());
        };
        if !section.gpgcheck() || files.is_empty() {
            return Ok(());
        }
        if !self.keyrings.contains_key(repo_id) {
            let keyring = self.build_keyring(repo_id)?;
            self.keyrings.insert(repo_id.to_string(), keyring);
        }
        let db = self.keyrings[repo_id].path();
        for chunk in files.chunks(256) {
            let out = Command::new("rpmkeys")
                .arg("--dbpath")
                .arg(db)
                .args(["--define", "_pkgverify_level signature", "--checksig"])
                .args(chunk.iter().map(|(f, _)| f))
                .output()
                .context("running rpmkeys --checksig")?;
            if out.status.success() {
                continue;
            }
            // One line per file: "<path>: digests signatures OK" or "... NOT OK".
            let stdout = String::from_utf8_lossy(&out.stdout);
            let mut failed = Vec::new();
            for (file, nevra) in chunk {
                let prefix = format!("{}:", file.display());
                let verdict = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(&prefix))
                    .map(str::trim);
                match verdict {
                    Some(v) if v.ends_with("signatures OK") => {}
                    Some(v) => failed.push(format!("{nevra} ({v})")),
                    None => failed.push(nevra.clone()),
                }
            }
            let detail = format!(
                "{} {}",
                failed.join(", "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            bail!(
                "signature check (gpgcheck=1) failed for repo '{repo_id}': {}",
                detail.trim()
            );
        }
        Ok(())
    }

    fn build_keyring(&self, repo_id: &str) -> Result<tempfile::TempDir> {
        let section = self.section(repo_id).expect("caller checked");
        let keys = section.list("gpgkey");
        ensure!(
            !keys.is_empty(),
            "repo '{repo_id}' has gpgcheck=1 but no gpgkey to check signatures with"
        );
        let db = tempfile::Builder::new()
            .prefix("keyring-")
            .tempdir_in(self.tmp.path())?;
        // libdnf fetched remote keys into the repo's cache dir, named by basename.
        let fetched = unsafe { sys::dnf_repo_get_public_keys(self.dnf_repo(repo_id)?) };
        let fetched = unsafe { take_strv(fetched) };
        for key in keys {
            let path = match key.strip_prefix("file://") {
                Some(p) => PathBuf::from(p),
                None => {
                    let base = key.rsplit('/').next().unwrap_or_default();
                    fetched
                        .iter()
                        .map(PathBuf::from)
                        .find(|f| f.file_name().is_some_and(|n| n == base) && f.is_file())
                        .ok_or_else(|| {
                            anyhow!("gpgkey {key} of repo '{repo_id}' was not fetched by libdnf")
                        })?
                }
            };
            let out = Command::new("rpmkeys")
                .arg("--dbpath")
                .arg(db.path())
                .arg("--import")
                .arg(&path)
                .output()
                .context("running rpmkeys --import")?;
            ensure!(
                out.status.success(),
                "importing gpgkey {} of repo '{repo_id}': {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(db)
    }
}

fn package_from_dnf(p: *mut sys::DnfPackage) -> Result<Package> {
    let name = pkg_str(p, sys::dnf_package_get_name);
    let repo = pkg_str(p, sys::dnf_package_get_reponame);
    let mut kind = 0;
    let sum = unsafe { sys::dnf_package_get_chksum(p, &mut kind) };
    let checksum = if sum.is_null() || repo == CMDLINE_REPO {
        String::new()
    } else {
        let algo = unsafe { cstr(sys::hy_chksum_name(kind)) };
        let len = match algo.as_str() {
            "md5" => 16,
            "sha1" => 20,
            "sha224" => 28,
            "sha256" => 32,
            "sha384" => 48,
            "sha512" => 64,
            other => bail!("{name}: unknown checksum type '{other}' in repo '{repo}'"),
        };
        let bytes = unsafe { std::slice::from_raw_parts(sum, len) };
        format!("{algo}:{}", hex::encode(bytes))
    };
    let location = if repo == CMDLINE_REPO {
        PathBuf::from(pkg_str(p, sys::dnf_package_get_location))
    } else {
        PathBuf::new()
    };
    Ok(Package {
        name,
        epoch: unsafe { sys::dnf_package_get_epoch(p) },
        version: pkg_str(p, sys::dnf_package_get_version),
        release: pkg_str(p, sys::dnf_package_get_release),
        arch: pkg_str(p, sys::dnf_package_get_arch),
        repo,
        checksum,
        size: unsafe { sys::dnf_package_get_downloadsize(p) },
        location,
    })
}

/// Stream a file through `hasher`; returns the byte count.
fn hash_file(path: &Path, hasher: &mut dyn FnMut(&[u8])) -> Result<u64> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = match f.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        hasher(&buf[..k]);
        n += k as u64;
    }
}

fn file_sha256(path: &Path) -> Result<(String, u64)> {
    let mut h = sha2::Sha256::new();
    let n = hash_file(path, &mut |b| h.update(b))?;
    Ok((hex::encode(h.finalize()), n))
}

/// Does `path` hash to `expected` ("algo:hex")?
fn checksum_matches(path: &Path, expected: &str) -> Result<bool> {
    fn digest<D: Digest>(path: &Path) -> Result<String> {
        let mut h = D::new();
        hash_file(path, &mut |b| h.update(b))?;
        Ok(hex::encode(h.finalize()))
    }
    let (algo, want) = expected
        .split_once(':')
        .ok_or_else(|| anyhow!("malformed checksum '{expected}'"))?;
    let got = match algo {
        "sha224" => digest::<sha2::Sha224>(path)?,
        "sha256" => digest::<sha2::Sha256>(path)?,
        "sha384" => digest::<sha2::Sha384>(path)?,
        "sha512" => digest::<sha2::Sha512>(path)?,
        other => bail!(
            "cannot verify {}: checksum type '{other}' is not supported",
            path.display()
        ),
    };
    Ok(got.eq_ignore_ascii_case(want))
}

// ---- .repo files -------------------------------------------------------------

/// One `[id]` section of a .repo file, in order, values with continuation lines joined.
#[derive(Clone, Debug)]
struct RepoSection {
    id: String,
    file: PathBuf,
    entries: Vec<(String, String)>,
}

impl RepoSection {
    fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A list-valued key (baseurl, gpgkey): separated by commas or whitespace.
    fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn urls(&self) -> Vec<String> {
        let mut u = self.list("baseurl");
        u.extend(self.list("mirrorlist"));
        u.extend(self.list("metalink"));
        u
    }

    fn gpgcheck(&self) -> bool {
        self.get("gpgcheck")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "yes" | "true" | "on"))
    }
}

fn parse_repo_file(path: &Path) -> Result<Vec<RepoSection>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sections: Vec<RepoSection> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), lineno + 1);
        if let Some(id) = trimmed.strip_prefix('[') {
            let id = id
                .strip_suffix(']')
                .ok_or_else(|| anyhow!("{}: malformed section header", at()))?;
            sections.push(RepoSection {
                id: id.trim().to_string(),
                file: path.to_path_buf(),
                entries: Vec::new(),
            });
            continue;
        }
        let section = sections
            .last_mut()
            .ok_or_else(|| anyhow!("{}: key outside of a [repo] section", at()))?;
        if line.starts_with(char::is_whitespace) && !section.entries.is_empty() {
            let last = section.entries.last_mut().expect("not empty");
            last.1.push(' ');
            last.1.push_str(trimmed);
            continue;
        }
        let (k, v) = trimmed
            .split_once('=')
            .ok_or_else(|| anyhow!("{}: expected key=value", at()))?;
        section
            .entries
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(sections)
}

/// Lexically normalize `a/./b/../c` (the path need not exist).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// cosa extension: a location without `scheme://` is relative to the .repo file.
fn absolutize_url(url: &str, dir: &Path) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    format!("file://{}", normalize(&dir.join(url)).display())
}

/// The enabled sections of the setup's .repo files, URLs made absolute.
fn select_repos(setup: &RepoSetup) -> Result<Vec<RepoSection>> {
    let mut all: Vec<RepoSection> = Vec::new();
    for f in &setup.repo_files {
        let abs = std::path::absolute(f).with_context(|| format!("{}", f.display()))?;
        for s in parse_repo_file(&abs)? {
            if let Some(prev) = all.iter().find(|p| p.id == s.id) {
                bail!(
                    "repo '{}' is defined in both {} and {}",
                    s.id,
                    prev.file.display(),
                    s.file.display()
                );
            }
            all.push(s);
        }
    }
    let mut selected = Vec::new();
    for id in &setup.enabled {
        // libdnf reads a [main] section of a .repo file as global options, not a repo.
        ensure!(
            id != "main",
            "repo id 'main' is reserved by libdnf: rename the repo"
        );
        let mut s = all.iter().find(|s| &s.id == id).cloned().ok_or_else(|| {
            let files: Vec<String> = setup
                .repo_files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            anyhow!(
                "repo '{id}' not found in any repo file ({})",
                files.join(", ")
            )
        })?;
        let dir = s.file.parent().unwrap_or(Path::new("/")).to_path_buf();
        for (k, v) in s.entries.iter_mut() {
            if k == "baseurl" || k == "gpgkey" {
                let urls: Vec<String> = v
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|u| !u.is_empty())
                    .map(|u| absolutize_url(u, &dir))
                    .collect();
                *v = urls.join(" ");
            }
        }
        if setup.releasever.is_none() && s.entries.iter().any(|(_, v)| v.contains("$releasever")) {
            bail!(
                "repo '{id}' ({}) uses $releasever but no releasever is set",
                s.file.display()
            );
        }
        ensure!(
            !s.urls().is_empty(),
            "repo '{id}' ({}) has no baseurl, mirrorlist or metalink",
            s.file.display()
        );
        s.entries
            .retain(|(k, _)| k != "enabled" && k != "skip_if_unavailable");
        s.entries.push(("enabled".into(), "1".into()));
        s.entries.push(("skip_if_unavailable".into(), "0".into()));
        selected.push(s);
    }
    Ok(selected)
}

fn render_repos(repos: &[RepoSection]) -> String {
    let mut out = String::new();
    for r in repos {
        out.push_str(&format!("# from {}\n[{}]\n", r.file.display(), r.id));
        for (k, v) in &r.entries {
            out.push_str(&format!("{k}={v}\n"));
        }
        out.push('\n');
    }
    out
}

// ---- FFI plumbing --------------------------------------------------------------

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| anyhow!("string contains a NUL byte"))
}

/// # Safety
/// `p` is null or a valid NUL-terminated string.
unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn pkg_str(
    p: *mut sys::DnfPackage,
    get: unsafe extern "C" fn(*mut sys::DnfPackage) -> *const c_char,
) -> String {
    unsafe { cstr(get(p)) }
}

/// # Safety
/// `v` is null or a NULL-terminated array of g_malloc'd strings, which this frees.
unsafe fn take_strv(v: *mut *mut c_char) -> Vec<String> {
    let mut out = Vec::new();
    if v.is_null() {
        return out;
    }
    let mut i = 0;
    while !(*v.add(i)).is_null() {
        out.push(cstr(*v.add(i)));
        i += 1;
    }
    sys::g_strfreev(v);
    out
}

/// Turn a GError out-parameter into an error carrying libdnf's message.
fn take_gerror(e: *mut sys::GError) -> anyhow::Error {
    if e.is_null() {
        return anyhow!("libdnf failed without an error message");
    }
    let msg = unsafe { cstr((*e).message) };
    unsafe { sys::g_error_free(e) };
    anyhow!("{msg}")
}

/// Call a `gboolean f(..., GError **)` function.
fn gcall(f: impl FnOnce(*mut *mut sys::GError) -> sys::gboolean) -> Result<()> {
    let mut e = ptr::null_mut();
    if f(&mut e) != 0 {
        if !e.is_null() {
            unsafe { sys::g_error_free(e) };
        }
        Ok(())
    } else {
        Err(take_gerror(e))
    }
}

/// Call a `T *f(..., GError **)` function.
fn gcall_ptr<T>(f: impl FnOnce(*mut *mut sys::GError) -> *mut T) -> Result<*mut T> {
    let mut e = ptr::null_mut();
    let r = f(&mut e);
    if r.is_null() {
        Err(take_gerror(e))
    } else {
        Ok(r)
    }
}

/// An owned reference to a GObject.
struct GObject<T>(NonNull<T>);

impl<T> GObject<T> {
    /// Takes ownership of one reference (None for null).
    fn new(p: *mut T) -> Option<Self> {
        NonNull::new(p).map(GObject)
    }
    fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T> Drop for GObject<T> {
    fn drop(&mut self) {
        unsafe { sys::g_object_unref(self.0.as_ptr().cast()) }
    }
}

/// An owned GPtrArray (of DnfPackage, for our uses).
struct PtrArray(NonNull<sys::GPtrArray>);

impl PtrArray {
    fn new(p: *mut sys::GPtrArray) -> Self {
        PtrArray(NonNull::new(p).expect("libdnf returned a NULL array"))
    }
    fn iter(&self) -> impl Iterator<Item = *mut sys::DnfPackage> + '_ {
        let a = unsafe { self.0.as_ref() };
        (0..a.len as usize).map(move |i| unsafe { *a.pdata.add(i) }.cast())
    }
}

impl Drop for PtrArray {
    fn drop(&mut self) {
        unsafe { sys::g_ptr_array_unref(self.0.as_ptr()) }
    }
}

/// A package query over the sack.
struct Query(sys::HyQuery);

impl Query {
    fn new(sack: *mut sys::DnfSack, ignore_excludes: bool) -> Self {
        let flags = if ignore_excludes {
            sys::HY_IGNORE_EXCLUDES as i32
        } else {
            0
        };
        Query(unsafe { sys::hy_query_create_flags(sack, flags) })
    }

    fn filter(
        &self,
        key: sys::_hy_key_name_e,
        cmp: sys::_hy_comparison_type_e,
        v: &str,
    ) -> Result<()> {
        let c = cstring(v.as_bytes())?;
        let rc = unsafe { sys::hy_query_filter(self.0, key as i32, cmp as i32, c.as_ptr()) };
        ensure!(rc == 0, "libdnf rejected query filter {key}/{cmp} '{v}'");
        Ok(())
    }

    /// Make the query match nothing.
    fn clear(&self) {
        unsafe { sys::hy_query_filter_empty(self.0) };
    }

    fn union(&self, other: &Query) {
        unsafe { sys::hy_query_union(self.0, other.0) }
    }

    fn difference(&self, other: &Query) {
        unsafe { sys::hy_query_difference(self.0, other.0) }
    }

    fn is_empty(&self) -> bool {
        unsafe { sys::hy_query_is_empty(self.0) }
    }

    fn run(&self) -> PtrArray {
        PtrArray::new(unsafe { sys::hy_query_run(self.0) })
    }

    /// Add the matching packages to the sack's excludes.
    fn exclude(&self) -> Result<()> {
        let set = unsafe { sys::hy_query_run_set(self.0) };
        ensure!(!set.is_null(), "libdnf query failed");
        unsafe {
            sys::dnf_sack_add_excludes(sys::hy_query_get_sack(self.0), set);
            sys::dnf_packageset_free(set);
        }
        Ok(())
    }
}

impl Drop for Query {
    fn drop(&mut self) {
        unsafe { sys::hy_query_free(self.0) }
    }
}

/// A depsolver goal.
struct Goal(NonNull<sys::Goal>);

impl Goal {
    fn new(sack: *mut sys::DnfSack) -> Result<Self> {
        Ok(Goal(
            NonNull::new(unsafe { sys::hy_goal_create(sack) }).context("hy_goal_create")?,
        ))
    }

    /// Ask for `spec` (name, provide, NEVRA, glob); error if nothing matches.
    fn install(&self, sack: *mut sys::DnfSack, spec: &str) -> Result<()> {
        let c = cstring(spec.as_bytes())?;
        unsafe {
            let subject = sys::hy_subject_create(c.as_ptr());
            let selector = sys::hy_subject_get_best_selector(
                subject,
                sack,
                ptr::null_mut(),
                false,
                ptr::null(),
            );
            sys::hy_subject_free(subject);
            let matches = PtrArray::new(sys::hy_selector_matches(selector));
            let found = matches.iter().next().is_some();
            let r = if found {
                gcall(|e| sys::hy_goal_install_selector(self.0.as_ptr(), selector, e))
            } else {
                Err(anyhow!("no package matches '{spec}'"))
            };
            sys::hy_selector_free(selector);
            r
        }
    }
}

impl Drop for Goal {
    fn drop(&mut self) {
        unsafe { sys::hy_goal_free(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evra_and_nevra() {
        let mut p = Package {
            name: "foo".into(),
            epoch: 0,
            version: "1.2".into(),
            release: "3".into(),
            arch: "x86_64".into(),
            repo: "r".into(),
            checksum: String::new(),
            size: 0,
            location: PathBuf::new(),
        };
        assert_eq!(p.evra(), "1.2-3.x86_64");
        assert_eq!(p.nevra(), "foo-1.2-3.x86_64");
        p.epoch = 2;
        assert_eq!(p.nevra(), "foo-2:1.2-3.x86_64");
        assert_eq!(p.filename(), "foo-1.2-3.x86_64.rpm");
    }

    #[test]
    fn repo_file_relative_baseurl_and_continuations() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.repo");
        std::fs::write(
            &f,
            "# c\n[one]\nname=One\nbaseurl=../repo/$basearch\n  https://m/x\ngpgkey=key.asc\n\n[two]\nbaseurl=http://x/\nenabled=0\n",
        )
        .unwrap();
        let setup = RepoSetup {
            repo_files: vec![f.clone()],
            enabled: vec!["one".into()],
            releasever: None,
            basearch: "x86_64".into(),
            cache_dir: d.path().join("cache"),
        };
        let r = select_repos(&setup).unwrap();
        assert_eq!(r.len(), 1);
        let parent = d.path().parent().unwrap().display().to_string();
        assert_eq!(
            r[0].list("baseurl"),
            vec![
                format!("file://{parent}/repo/$basearch"),
                "https://m/x".into()
            ]
        );
        assert_eq!(
            r[0].list("gpgkey"),
            vec![format!("file://{}/key.asc", d.path().display())]
        );
        assert!(render_repos(&r).contains("enabled=1\n"));

        let missing = RepoSetup {
            enabled: vec!["nope".into()],
            ..setup
        };
        let e = format!("{:#}", select_repos(&missing).unwrap_err());
        assert!(e.contains("'nope'"), "{e}");
    }
}
