//! Package signature checks: `rpmkeys --checksig` against a keyring built from the
//! repo's own `gpgkey`, in a temporary rpmdb.

use super::*;

impl Dnf {
    /// Where the repo has `gpgcheck=1`, check the signatures of `files` (path, NEVRA)
    /// against its `gpgkey`s.
    pub(super) fn check_signatures(
        &mut self,
        repo_id: &str,
        files: &[(PathBuf, String)],
    ) -> Result<()> {
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
            let out = cmdext::command("rpmkeys")
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
        let section = self
            .section(repo_id)
            .with_context(|| format!("repo '{repo_id}' is not loaded"))?;
        let keys = section.list("gpgkey");
        ensure!(
            !keys.is_empty(),
            "repo '{repo_id}' has gpgcheck=1 but no gpgkey to check signatures with"
        );
        let db = tempfile::Builder::new()
            .prefix("keyring-")
            .tempdir_in(self.tmp.path())?;
        // libdnf fetched remote keys into the repo's cache dir, named by basename.
        // SAFETY: `dnf_repo` returns a live repo of our context; the call returns a new
        // NULL-terminated vector of new strings (transfer full).
        let fetched = unsafe { sys::dnf_repo_get_public_keys(self.dnf_repo(repo_id)?) };
        // SAFETY: exactly what take_strv requires; `fetched` is not used again.
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
            let out = cmdext::command("rpmkeys")
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
