//! Depsolving: local RPMs into the sack, excludes and lockfile pins as sack excludes,
//! then a libdnf goal.

use super::*;

impl Dnf {
    /// Depsolve `req`; the result is sorted by name.
    pub fn resolve(&mut self, req: &PackageRequest) -> Result<Vec<Package>> {
        let local = self.add_local_rpms(&req.local_rpms)?;
        let e = match self.resolve_with(req, &local) {
            Ok(pkgs) => return Ok(pkgs),
            Err(e) => e,
        };
        let (Some(lock), true) = (&req.locked, req.strict) else {
            return Err(e);
        };
        // Say which packages the lock lacks rather than "nothing provides X".
        let relaxed = PackageRequest {
            strict: false,
            ..req.clone()
        };
        let unlocked = match self.resolve_with(&relaxed, &local) {
            Ok(pkgs) => not_locked(&pkgs, lock),
            Err(_) => Vec::new(),
        };
        if unlocked.is_empty() {
            Err(e)
        } else {
            Err(e.context(format!(
                "strict lockfile: not in the lockfile: {}",
                unlocked.join(", ")
            )))
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
                // SAFETY: the sack is live; `c` outlives the call; the package returned
                // carries a reference that `GObject::new` takes over.
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
                .run()?
                .iter()
                .next()
                .map(|p| pkg_str(p, sys::dnf_package_get_name))
                .ok_or_else(|| anyhow!("local RPM {} not in the sack", path.display()))?;
            local.insert(path, name);
        }
        Ok(local)
    }

    /// One depsolve: the excludes and locks of `req` on the sack, then the goal.
    fn resolve_with(
        &mut self,
        req: &PackageRequest,
        local: &BTreeMap<PathBuf, String>,
    ) -> Result<Vec<Package>> {
        let sack = self.sack();
        // SAFETY: `sack` is the live sack of `self`.
        unsafe { sys::dnf_sack_reset_excludes(sack) };
        let local_names: BTreeSet<&str> = local.values().map(String::as_str).collect();
        exclude_replaced(sack, local, &local_names, &req.exclude)?;
        let missing_locked = match &req.locked {
            Some(lock) => apply_locks(sack, lock, &local_names, req.strict)?,
            None => Vec::new(),
        };
        let lock_hint = if missing_locked.is_empty() {
            String::new()
        } else {
            format!(
                " (locked versions not in the enabled repos: {})",
                missing_locked.join(", ")
            )
        };
        if req.install.is_empty() {
            // libdnf calls an empty goal an error ("The transaction was empty").
            return Ok(Vec::new());
        }
        let mut pkgs = depsolve(sack, req, &lock_hint)?;
        for p in pkgs.iter_mut().filter(|p| p.repo == CMDLINE_REPO) {
            let (checksum, size) = file_sha256(&p.location)?;
            p.checksum = format!("sha256:{checksum}");
            p.size = size;
        }
        pkgs.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        if let (Some(lock), true) = (&req.locked, req.strict) {
            let unlocked = not_locked(&pkgs, lock);
            ensure!(
                unlocked.is_empty(),
                "strict lockfile: not in the lockfile: {}",
                unlocked.join(", ")
            );
        }
        Ok(pkgs)
    }
}

/// Repo packages not in `lock` (local RPMs need no pin).
fn not_locked(pkgs: &[Package], lock: &BTreeMap<String, String>) -> Vec<String> {
    pkgs.iter()
        .filter(|p| p.repo != CMDLINE_REPO && !lock.contains_key(&p.name))
        .map(Package::nevra)
        .collect()
}

/// Exclude the local RPMs of earlier requests, the repo packages this request's local
/// RPMs replace, and `exclude-packages`.
fn exclude_replaced(
    sack: *mut sys::DnfSack,
    local: &BTreeMap<PathBuf, String>,
    local_names: &BTreeSet<&str>,
    exclude: &[String],
) -> Result<()> {
    let stale = Query::new(sack, true);
    stale.filter(sys::HY_PKG_REPONAME, sys::HY_EQ, CMDLINE_REPO)?;
    for path in local.keys() {
        let this = Query::new(sack, true);
        this.filter(sys::HY_PKG_LOCATION, sys::HY_EQ, &path.to_string_lossy())?;
        stale.difference(&this);
    }
    stale.exclude()?;
    for name in local_names {
        let q = Query::new(sack, true);
        q.filter(sys::HY_PKG_NAME, sys::HY_EQ, name)?;
        q.filter(sys::HY_PKG_REPONAME, sys::HY_NEQ, CMDLINE_REPO)?;
        q.exclude()?;
    }
    for name in exclude {
        let q = Query::new(sack, true);
        q.filter(sys::HY_PKG_NAME, sys::HY_EQ, name)?;
        q.exclude()?;
    }
    Ok(())
}

/// A locked name may only be its locked NEVRA (local RPMs win over the lock); with
/// `strict`, unlocked repo packages are excluded too. Returns the locked NEVRAs that
/// no enabled repo has.
fn apply_locks(
    sack: *mut sys::DnfSack,
    lock: &BTreeMap<String, String>,
    local_names: &BTreeSet<&str>,
    strict: bool,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
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
            missing.push(nevra);
        }
        others.difference(&exact);
        others.exclude()?;
        locked_all.union(&exact);
    }
    if strict {
        let unlocked = Query::new(sack, true);
        unlocked.filter(sys::HY_PKG_REPONAME, sys::HY_NEQ, CMDLINE_REPO)?;
        unlocked.difference(&locked_all);
        unlocked.exclude()?;
    }
    Ok(missing)
}

/// Install `req.install` into an empty root: the packages of the solution.
fn depsolve(
    sack: *mut sys::DnfSack,
    req: &PackageRequest,
    lock_hint: &str,
) -> Result<Vec<Package>> {
    let goal = Goal::new(sack)?;
    for spec in &req.install {
        goal.install(sack, spec).with_context(|| {
            let mut why = String::new();
            if req.exclude.contains(spec) {
                why.push_str(" (it is in exclude-packages)");
            } else if req.strict && req.locked.as_ref().is_some_and(|l| !l.contains_key(spec)) {
                why.push_str(" (strict lockfile: it is not in the lockfile)");
            }
            format!("package '{spec}' not found in the enabled repos{why}{lock_hint}")
        })?;
    }
    let mut flags = sys::DNF_INSTALL;
    if !req.recommends {
        flags |= sys::DNF_IGNORE_WEAK_DEPS;
    }
    // SAFETY: the goal is live (owned by `goal`); `e` is gcall's GError out-parameter.
    gcall(|e| unsafe { sys::dnf_goal_depsolve(goal.0.as_ptr(), flags, e) })
        .with_context(|| format!("depsolving {}{lock_hint}", req.install.join(" ")))?;
    // SAFETY: the goal is live and solved; the array returned is new and ours.
    let installs = PtrArray::new(gcall_ptr(|e| unsafe {
        sys::hy_goal_list_installs(goal.0.as_ptr(), e)
    })?)?;
    installs.iter().map(package_from_dnf).collect()
}

fn package_from_dnf(p: *mut sys::DnfPackage) -> Result<Package> {
    let name = pkg_str(p, sys::dnf_package_get_name);
    let repo = pkg_str(p, sys::dnf_package_get_reponame);
    let mut kind = 0;
    // SAFETY: `p` is live (ffi module invariant); the checksum bytes belong to the
    // package, and `kind` is a valid out-parameter.
    let sum = unsafe { sys::dnf_package_get_chksum(p, &mut kind) };
    let checksum = if sum.is_null() || repo == CMDLINE_REPO {
        String::new()
    } else {
        // SAFETY: hy_chksum_name returns a static string (or null) for any type.
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
        // SAFETY: `sum` is non-null and holds the digest of type `kind`, whose length
        // `len` is; the package, and so the bytes, outlive this copy.
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
        // SAFETY: `p` is live (ffi module invariant).
        epoch: unsafe { sys::dnf_package_get_epoch(p) },
        version: pkg_str(p, sys::dnf_package_get_version),
        release: pkg_str(p, sys::dnf_package_get_release),
        arch: pkg_str(p, sys::dnf_package_get_arch),
        repo,
        checksum,
        // SAFETY: `p` is live (ffi module invariant).
        size: unsafe { sys::dnf_package_get_downloadsize(p) },
        location,
    })
}
