//! `cosa build-container` as a library call: a build's commit as its ostree-native
//! OCI archive, recorded in meta.json. Image and live builds call it too, since
//! meta.json's schema wants `images.ostree` wherever `images` exists.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::encapsulate;
use crate::builds::artifact::Artifact;
use crate::builds::{History, Meta, Workdir};
use crate::compose::pkgcache::open_repo;
use crate::oci::Compression;

/// `<name>-<id>-ostree.<arch>.ociarchive` and its manifest's file name.
fn artifact_names(meta: &Meta, id: &str, arch: &str) -> (String, String) {
    let name = &meta.name;
    (
        format!("{name}-{id}-ostree.{arch}.ociarchive"),
        format!("{name}-{id}-ostree.{arch}-manifest.json"),
    )
}

/// How many builds of the history changed each package (from their `pkgdiff`).
fn package_changes(history: &History, arch: &str) -> Result<HashMap<String, u32>> {
    let mut changes = HashMap::new();
    for b in history.load()?.builds {
        let Ok(meta) = history.load_meta(&b.id, arch) else {
            continue;
        };
        for d in meta.pkgdiff.iter().flatten() {
            *changes.entry(d.0.clone()).or_insert(0) += 1;
        }
    }
    Ok(changes)
}

/// What `build_container` is asked for.
pub struct ContainerRequest {
    pub max_layers: usize,
    pub compression: Compression,
    /// Rebuild the archive even if the build has one.
    pub force: bool,
}

/// What `cosa build-container` is asked for.
pub struct BuildOptions {
    /// Build ID (default: the latest).
    pub build: Option<String>,
    /// Wait for the workdir lock instead of failing.
    pub wait: bool,
    pub request: ContainerRequest,
}

/// What `cosa build-container` did.
pub enum Built {
    /// The archive written (its file name in the build directory).
    Wrote(String),
    /// The build (this ID) already had its archive.
    AlreadyThere(String),
}

/// `cosa build-container`: lock the workdir, resolve the build, wrap its commit.
pub fn build(wd: &Workdir, o: &BuildOptions) -> Result<Built> {
    let _lock = wd.lock("build-container", o.wait)?;
    let id = History::new(wd.builds_dir()).resolve_id(o.build.as_deref())?;
    Ok(match build_container(wd, &id, &o.request)? {
        Some(name) => Built::Wrote(name),
        None => Built::AlreadyThere(id),
    })
}

/// Wrap build `id`'s commit as its ostree-native OCI archive and record it as
/// `images.ostree` (and `images.oci-manifest`). The caller holds the workdir lock.
/// Returns the archive's file name, or None when the build already had one and
/// `force` was not set.
pub fn build_container(wd: &Workdir, id: &str, o: &ContainerRequest) -> Result<Option<String>> {
    let history = History::new(wd.builds_dir());
    let host = crate::arch::Arch::host()?;
    let arch = host.name();
    let id = id.to_string();
    let dir = history.build_dir(&id, arch);
    let mut meta = history.load_meta(&id, arch)?;
    if let Some(p) = meta.images.get("ostree").map(|a| &a.path) {
        if !o.force && dir.join(p).exists() {
            tracing::info!("build {id} already has {p} (--force to rebuild it)");
            return Ok(None);
        }
    }
    let commit = meta.ostree_commit.clone();
    let (archive_name, manifest_name) = artifact_names(&meta, &id, arch);
    let repo = open_repo(&wd.repo_path())?;
    let scratch = tempfile::Builder::new()
        .prefix("build-container-")
        .tempdir_in(wd.tmp_dir())?;
    // Written beside its final name; dropped (removed) if anything fails.
    let tmp = tempfile::Builder::new()
        .prefix(".ociarchive-")
        .tempfile_in(&dir)?;
    let opts = encapsulate::EncapsulateOptions {
        arch: host,
        max_layers: o.max_layers,
        compression: o.compression,
        changes: package_changes(&history, arch)?,
    };
    let t0 = std::time::Instant::now();
    let enc = encapsulate::encapsulate(
        &repo,
        &wd.repo_path(),
        &commit,
        &opts,
        scratch.path(),
        tmp.path(),
    )
    .with_context(|| format!("encapsulating build {id} (commit {commit})"))?;
    let manifest_path = dir.join(&manifest_name);
    crate::builds::workdir::write_atomic(&manifest_path, &enc.manifest)?;
    tmp.persist(dir.join(&archive_name))
        .with_context(|| format!("writing {archive_name}"))?;
    let manifest_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&enc.manifest))
    };
    meta.images.insert(
        "ostree".into(),
        Artifact::new(&archive_name, &enc.sha256, enc.size),
    );
    meta.images.insert(
        "oci-manifest".into(),
        Artifact::new(&manifest_name, &manifest_sha, enc.manifest.len() as u64),
    );
    // The SBOM goes with the image: coreos-assembler's schema wants `ostree` in
    // `images` before any other artifact, and both describe the same commit.
    crate::sbom::record(&repo, &mut meta, &dir, scratch.path())?;
    meta.save(&dir.join("meta.json"))?;
    tracing::info!(
        "wrote {archive_name}: {} layers, {} bytes, manifest {} ({:.1} s)",
        enc.layers,
        enc.size,
        enc.manifest_digest,
        t0.elapsed().as_secs_f64()
    );
    Ok(Some(archive_name))
}
