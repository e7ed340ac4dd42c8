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
// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::raw::c_char;
use std::path::{Component, Path, PathBuf};
use std::ptr::{self, NonNull};

use anyhow::{anyhow, bail, ensure, Context, Result};
use libdnf_sys as sys;
use serde::{Deserialize, Serialize};
use sha2::Digest;

mod ffi;
mod gpg;
mod repofile;
mod resolve;

use ffi::*;
use repofile::{render_repos, select_repos, RepoSection};

/// The resolver's output type lives below `compose` so `config` can name it too.
pub use crate::package::Package;

/// rpm's order of version strings: `rpmvercmp` from librpmio itself, so `~`, `^` and
/// digit/letter runs sort exactly as rpm and dnf sort them.
pub fn rpmvercmp(a: &str, b: &str) -> std::cmp::Ordering {
    // A NUL cannot be in a version rpm accepted; cut there rather than fail.
    let c = |s: &str| CString::new(s.split('\0').next().unwrap_or("")).unwrap_or_default();
    let (a, b) = (c(a), c(b));
    // SAFETY: both are valid NUL-terminated strings that outlive the call; rpmvercmp
    // only reads them and keeps no pointer.
    let r = unsafe { sys::rpmvercmp(a.as_ptr(), b.as_ptr()) };
    r.cmp(&0)
}

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
            fs_err::create_dir_all(d)?;
        }
        fs_err::write(reposd.join("cosa.repo"), render_repos(&repos))?;
        let ctx = new_context()?;
        configure(&ctx, setup, tmp.path(), &reposd, &root)?;
        load_metadata(&ctx).with_context(|| {
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
        // SAFETY: the context is live and set up (`new` loaded the sack); the sack is
        // borrowed from it and lives as long as `self`.
        unsafe { sys::dnf_context_get_sack(self.ctx.as_ptr()) }
    }

    /// Fetch `pkgs` into `dest` (reusing files already there with the right checksum),
    /// verify checksums and, where the repo asks for it, signatures; set each
    /// package's `location`.
    pub fn download(&mut self, pkgs: &mut [Package], dest: &Path) -> Result<DownloadStats> {
        fs_err::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
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
                fs_err::rename(&file, &target)
                    .with_context(|| format!("renaming into {}", target.display()))?;
                stats.downloaded += 1;
                stats.bytes += fs_err::metadata(&target)?.len();
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
        // SAFETY: a new, empty array without a free function: it borrows its packages.
        let batch = PtrArray::new(unsafe { sys::g_ptr_array_new() })?;
        for p in pkgs {
            let q = Query::new(self.sack(), true);
            q.filter(sys::HY_PKG_NEVRA_STRICT, sys::HY_EQ, &p.nevra())?;
            q.filter(sys::HY_PKG_REPONAME, sys::HY_EQ, repo_id)?;
            let found = q.run()?;
            let dp = found
                .iter()
                .next()
                .ok_or_else(|| anyhow!("{} is not in repo '{repo_id}'", p.nevra()))?;
            let loc = pkg_str(dp, sys::dnf_package_get_location);
            let base = Path::new(&loc)
                .file_name()
                .ok_or_else(|| anyhow!("{}: bad location '{loc}'", p.nevra()))?;
            names.push(tmp.path().join(base));
            // SAFETY: `batch` is live; `dp` stays alive in `found`, kept in `results`
            // until after the download, which outlives every use of `batch`.
            unsafe { sys::g_ptr_array_add(batch.0.as_ptr(), dp.cast()) };
            results.push(found);
        }
        tracing::info!("downloading {} packages from repo '{repo_id}'", names.len());
        let dir = cstring(tmp.path().as_os_str().as_encoded_bytes())?;
        // SAFETY: a new state object whose one reference `GObject::new` takes.
        let state = GObject::new(unsafe { sys::dnf_state_new() }).context("dnf_state_new")?;
        // SAFETY: `repo` belongs to the live context; `batch`, `dir` and `state` outlive
        // the call; `e` is gcall's GError out-parameter.
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
        // SAFETY: the context is live; the array it returns is borrowed from it.
        let repos = unsafe { sys::dnf_context_get_repos(self.ctx.as_ptr()) };
        ensure!(!repos.is_null(), "libdnf has no repos");
        // SAFETY: non-null and owned by the context, which `&self` keeps alive and
        // nothing mutates meanwhile.
        let repos = unsafe { &*repos };
        for i in 0..repos.len as usize {
            // SAFETY: `i < len`, so the read stays inside `pdata`.
            let r = unsafe { *repos.pdata.add(i) } as *mut sys::DnfRepo;
            // SAFETY: `r` is a live repo of the context; its id is a string it owns.
            if unsafe { cstr(sys::dnf_repo_get_id(r)) } == id {
                return Ok(r);
            }
        }
        bail!("repo '{id}' is not loaded")
    }

    fn section(&self, id: &str) -> Option<&RepoSection> {
        self.repos.iter().find(|r| r.id == id)
    }
}

/// A libdnf context that reads no dnf.conf and runs no plugins.
fn new_context() -> Result<GObject<sys::DnfContext>> {
    // SAFETY: the setters take static C strings (libdnf copies them); the context is
    // fresh, and `GObject::new` takes its one reference. The process-wide state
    // they touch is why `Dnf` is neither Send nor Sync.
    unsafe {
        // Process-wide settings: no dnf.conf (an empty path means "do not read one"), no plugins.
        sys::dnf_context_set_config_file_path(c"".as_ptr());
        sys::dnf_context_set_plugins_all_disabled(1);
        GObject::new(sys::dnf_context_new()).context("dnf_context_new failed")
    }
}

/// Point the context at our private repos dir, cache, lock dir and empty install
/// root, and at the setup's arch and releasever; turn off what a compose does not need.
fn configure(
    ctx: &GObject<sys::DnfContext>,
    setup: &RepoSetup,
    tmp: &Path,
    reposd: &Path,
    root: &Path,
) -> Result<()> {
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
    // SAFETY: `c` is the live context owned by `ctx`. Every string argument is a
    // CString that lives to the end of its statement and that libdnf copies
    // (g_strdup/g_strdupv); `no_vars` is a NULL-terminated (empty) vector.
    unsafe {
        sys::dnf_context_set_repo_dir(c, path(reposd)?.as_ptr());
        sys::dnf_context_set_cache_dir(c, path(&setup.cache_dir)?.as_ptr());
        sys::dnf_context_set_solv_dir(c, path(&setup.cache_dir.join("solv"))?.as_ptr());
        sys::dnf_context_set_lock_dir(c, path(&tmp.join("lock"))?.as_ptr());
        sys::dnf_context_set_install_root(c, path(root)?.as_ptr());
        sys::dnf_context_set_source_root(c, path(root)?.as_ptr());
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
    Ok(())
}

/// Set the context up and load the repos' metadata into its sack (no rpmdb).
fn load_metadata(ctx: &GObject<sys::DnfContext>) -> Result<()> {
    let c = ctx.as_ptr();
    // SAFETY: `c` is live; no cancellable; `e` is gcall's GError out-parameter.
    gcall(|e| unsafe { sys::dnf_context_setup(c, ptr::null_mut(), e) })
        .context("setting up libdnf")?;
    // SAFETY: `c` is live; the state it returns is borrowed from the context.
    let state = unsafe { sys::dnf_context_get_state(c) };
    // SAFETY: `c` and its `state` are live; `e` is gcall's GError out-parameter.
    gcall(|e| unsafe {
        sys::dnf_context_setup_sack_with_flags(
            c,
            state,
            sys::DNF_CONTEXT_SETUP_SACK_FLAG_SKIP_RPMDB,
            e,
        )
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
