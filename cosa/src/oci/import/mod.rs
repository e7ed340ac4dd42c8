//! A derived image (FROM one of our ostree-native images, plus layers a container
//! build added) back into an ostree commit: the base commit is checked out, the
//! derived layers are applied on top with whiteouts honoured, and the result is
//! normalized to ostree's conventions and committed with the base as parent.
//!
//! Normalization: `/etc` goes to `/usr/etc`. `/var` stays empty in the commit (ostree
//! leaves /var to the machine, and podman cannot run an image whose commit has /var
//! content): directories and symlinks a layer makes under /var become tmpfiles.d
//! lines (systemd-tmpfiles recreates them at boot, which is all they declare), but
//! regular files under /var are refused with their paths named. A file there is state
//! (caches, logs, databases) that would be frozen into every machine's first boot and
//! then silently diverge; the image should install it under /usr and declare it with
//! tmpfiles.d itself. `/run`, `/tmp`, `/proc`, `/sys`, `/dev` and `/sysroot` are not
//! part of an ostree tree; what a layer puts there is dropped with a warning.

mod image;
mod layers;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::arch::Arch;
use crate::builds::meta::ImportedImage;
use crate::builds::{History, Meta, Workdir};
use crate::compose::pkgcache::open_repo;
use image::{fetch_image, import_image, CommitSpec};

/// What `cosa import` is asked for.
pub struct ImportOptions {
    /// The image, as `transport:reference`.
    pub image: String,
    /// The new build's version (default: the base build's ID plus `.N`).
    pub version: Option<String>,
    /// Wait for the workdir lock instead of failing.
    pub wait: bool,
}

/// The build an import made.
pub struct ImportedBuild {
    pub version: String,
    pub commit: String,
    /// `build ID` when the base commit is one of the workdir's builds, else the commit.
    pub base: String,
    pub derived_layers: usize,
    pub tmpfiles_lines: usize,
}

/// The base's build (ID and meta), if the base commit is one of the workdir's builds.
fn base_build(
    history: &History,
    ids: &[String],
    arch: &str,
    base_commit: Option<&str>,
) -> Option<(String, Meta)> {
    ids.iter().find_map(|id| {
        let m = history.load_meta(id, arch).ok()?;
        (Some(m.ostree_commit.as_str()) == base_commit).then_some((id.clone(), m))
    })
}

/// The new build's version: the one asked for, or the next after the base build's
/// ID (or after today's date when the base is not a build here).
fn new_version(ids: &[String], asked: Option<&str>, base_id: Option<&str>) -> Result<String> {
    let version = match asked {
        Some(v) => v.to_string(),
        None => crate::builds::history::next_version(base_id, ids, chrono::Utc::now())?,
    };
    if ids.contains(&version) {
        bail!("a build with version {version} already exists");
    }
    Ok(version)
}

/// The new commit's timestamp: `SOURCE_DATE_EPOCH` if set, for reproducible imports.
fn commit_timestamp() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp() as u64)
}

/// Write the build's meta.json and commitmeta.json in a staging directory, then move
/// it into place and list the build in builds.json.
fn record_build(history: &History, repo: &ostree::Repo, meta: &Meta, arch: &str) -> Result<()> {
    let staging = history.staging_dir()?;
    meta.save(&staging.path().join("meta.json"))?;
    let cm = crate::compose::commit::commit_metadata_json(repo, &meta.ostree_commit)?;
    fs::write(
        staging.path().join("commitmeta.json"),
        serde_json::to_vec_pretty(&cm)?,
    )?;
    let staging_path = staging.keep();
    history.commit_build(&staging_path, &meta.buildid, arch)
}

/// `cosa import`: turn a derived image into a new build. Nothing is written to
/// builds/ unless the whole import succeeds (the new build is staged inside builds/
/// and renamed into place at the end).
pub fn import(wd: &Workdir, o: &ImportOptions) -> Result<ImportedBuild> {
    let _lock = wd.lock("import", o.wait)?;
    let history = History::new(wd.builds_dir());
    history.clean_staging()?;
    let arch = Arch::host()?.name();
    let repo = open_repo(&wd.repo_path())?;
    let scratch = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(wd.tmp_dir())?;
    let img = fetch_image(&o.image, &scratch.path().join("image"))?;
    let base_label = img.labels().get(crate::oci::labels::COMMIT).cloned();
    let ids: Vec<String> = history.load()?.builds.into_iter().map(|b| b.id).collect();
    let base = base_build(&history, &ids, arch, base_label.as_deref());
    let version = new_version(
        &ids,
        o.version.as_deref(),
        base.as_ref().map(|(id, _)| id.as_str()),
    )?;
    let spec = CommitSpec {
        name: base.as_ref().map_or("cosa", |(_, m)| m.name.as_str()),
        arch,
        version: &version,
        timestamp: commit_timestamp(),
        refname: &crate::builds::history::build_ref(&version),
    };
    let imported = import_image(&repo, &img, scratch.path(), &spec)
        .with_context(|| format!("importing {}", o.image))?;

    let meta = Meta::imported(
        base.as_ref().map(|(_, m)| m),
        &version,
        &ImportedImage {
            image: &o.image,
            commit: &imported.commit,
            base_commit: &imported.base_commit,
            labels: &imported.labels,
        },
        spec.timestamp,
        arch,
    );
    record_build(&history, &repo, &meta, arch)
        .with_context(|| format!("recording build {version}"))?;
    Ok(ImportedBuild {
        version,
        commit: imported.commit,
        base: base.map_or(imported.base_commit, |(id, _)| format!("build {id}")),
        derived_layers: imported.derived_layers,
        tmpfiles_lines: imported.tmpfiles_lines,
    })
}
