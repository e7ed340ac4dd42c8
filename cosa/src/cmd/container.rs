//! `cosa build-container`, `cosa push-container`, `cosa import`.

use std::collections::HashMap;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::basearch;
use crate::builds::{History, Meta, Workdir};
use crate::cli::{BuildContainerOpts, GlobalOpts, ImportOpts, PushContainerOpts};
use crate::cmdext::CommandRunExt;
use crate::compose::pkgcache::open_repo;
use crate::oci::{encapsulate, import};

/// `<name>-<id>-ostree.<arch>.ociarchive` and its manifest's file name.
fn artifact_names(meta: &Meta, id: &str, arch: &str) -> (String, String) {
    let name = meta.get_str("name").unwrap_or("cosa");
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
        for d in meta
            .get_path("pkgdiff")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(name) = d.get(0).and_then(|n| n.as_str()) {
                *changes.entry(name.to_string()).or_insert(0) += 1;
            }
        }
    }
    Ok(changes)
}

pub fn build(g: &GlobalOpts, o: &BuildContainerOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let _lock = wd.lock("build-container", o.wait)?;
    let history = History::new(wd.builds_dir());
    let id = history.resolve_id(o.build.as_deref())?;
    let arch = basearch();
    let dir = history.build_dir(&id, arch);
    let mut meta = history.load_meta(&id, arch)?;
    if let Some(p) = meta.get_path("images.ostree.path").and_then(|v| v.as_str()) {
        if !o.force && dir.join(p).exists() {
            println!("Build {id} already has {p} (--force to rebuild it)");
            return Ok(());
        }
    }
    let commit = meta
        .ostree_commit()
        .with_context(|| format!("build {id} has no ostree-commit in its meta.json"))?
        .to_string();
    let (archive_name, manifest_name) = artifact_names(&meta, &id, arch);
    let repo = open_repo(&wd.repo_path())?;
    let scratch = tempfile::Builder::new()
        .prefix("build-container-")
        .tempdir_in(wd.tmp_dir())?;
    // Written beside its final name; dropped (removed) if anything fails.
    let tmp = tempfile::Builder::new()
        .prefix(".ociarchive-")
        .tempfile_in(&dir)?;
    let opts = encapsulate::EncapsulateOpts {
        max_layers: o.max_layers,
        compression: o.compression,
        changes: package_changes(&history, arch)?,
    };
    let t0 = std::time::Instant::now();
    let enc = encapsulate::encapsulate(
        &repo,
        &wd.repo_path(),
        &commit,
        arch,
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
    let images = meta
        .0
        .entry("images")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .context("meta.json: images is not an object")?;
    images.insert(
        "ostree".into(),
        json!({"path": archive_name, "sha256": enc.sha256, "size": enc.size}),
    );
    images.insert(
        "oci-manifest".into(),
        json!({"path": manifest_name, "sha256": manifest_sha, "size": enc.manifest.len()}),
    );
    meta.save(&dir.join("meta.json"))?;
    println!(
        "Wrote {archive_name}: {} layers, {} bytes, manifest {} ({:.1} s)",
        enc.layers,
        enc.size,
        enc.manifest_digest,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn push(g: &GlobalOpts, o: &PushContainerOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let history = History::new(wd.builds_dir());
    let id = history.resolve_id(o.build.as_deref())?;
    let arch = basearch();
    let meta = history.load_meta(&id, arch)?;
    let Some(p) = meta.get_path("images.ostree.path").and_then(|v| v.as_str()) else {
        bail!("build {id} has no container image; run `cosa build-container` first");
    };
    let src = history.build_dir(&id, arch).join(p);
    let digestfile = tempfile::NamedTempFile::new_in(wd.tmp_dir())?;
    Command::new("skopeo")
        .arg("copy")
        .arg("--digestfile")
        .arg(digestfile.path())
        .arg(format!("oci-archive:{}", src.display()))
        .arg(&o.dest)
        .run()
        .with_context(|| format!("pushing build {id} to {}", o.dest))?;
    let digest = std::fs::read_to_string(digestfile.path())
        .unwrap_or_default()
        .trim()
        .to_string();
    // Record where the image went, as coreos-assembler does (`base-oscontainer`).
    {
        let _lock = wd.lock("push-container", true)?;
        let mut meta = history.load_meta(&id, arch)?;
        let image = o.dest.strip_prefix("docker://").unwrap_or(&o.dest);
        let mut entry = json!({ "image": image });
        if !digest.is_empty() {
            entry["digest"] = json!(digest);
        }
        meta.set("base-oscontainer", entry);
        meta.save(&history.build_dir(&id, arch).join("meta.json"))?;
    }
    println!("Pushed {p} to {} ({digest})", o.dest);
    Ok(())
}

/// `cosa import`: nothing is written to builds/ unless the whole import succeeds
/// (the new build is staged inside builds/ and renamed into place at the end).
pub fn import(g: &GlobalOpts, o: &ImportOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let _lock = wd.lock("import", o.wait)?;
    let history = History::new(wd.builds_dir());
    history.clean_staging()?;
    let arch = basearch();
    let repo = open_repo(&wd.repo_path())?;
    let scratch = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(wd.tmp_dir())?;
    let img = import::fetch_image(&o.image, &scratch.path().join("image"))?;

    let builds = history.load()?;
    let base_commit = img.labels().get(crate::oci::labels::COMMIT).cloned();
    let base = builds.builds.iter().find_map(|b| {
        let m = history.load_meta(&b.id, arch).ok()?;
        (m.ostree_commit().is_some() && m.ostree_commit() == base_commit.as_deref())
            .then_some((b.id.clone(), m))
    });
    let ids: Vec<String> = builds.builds.iter().map(|b| b.id.clone()).collect();
    let version = match (&o.version, &base) {
        (Some(v), _) => v.clone(),
        (None, Some((id, _))) => {
            crate::builds::history::next_version(Some(id), &ids, chrono::Utc::now())?
        }
        (None, None) => crate::builds::history::next_version(None, &ids, chrono::Utc::now())?,
    };
    if ids.contains(&version) {
        bail!("a build with version {version} already exists");
    }
    let timestamp = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp() as u64);
    let imported = import::import_image(
        &repo,
        &img,
        scratch.path(),
        &version,
        timestamp,
        &super::build::build_ref(&version),
    )
    .with_context(|| format!("importing {}", o.image))?;

    let staging = history.staging_dir()?;
    let mut meta = Meta::default();
    let name = base
        .as_ref()
        .and_then(|(_, m)| m.get_str("name").map(str::to_string))
        .unwrap_or_else(|| "cosa".into());
    meta.set("buildid", version.clone());
    meta.set("name", name.clone());
    meta.set(
        "summary",
        format!("{name} {version} (imported from {})", o.image),
    );
    if let Some(r) = base.as_ref().and_then(|(_, m)| m.get_str("ref")) {
        meta.set("ref", r.to_string());
    }
    meta.set("ostree-commit", imported.commit.clone());
    meta.set("ostree-version", version.clone());
    meta.set(
        "ostree-timestamp",
        chrono::DateTime::from_timestamp(timestamp as i64, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    );
    meta.set("coreos-assembler.basearch", arch.to_string());
    meta.set(
        "coreos-assembler.build-timestamp",
        crate::builds::history::now_rfc3339(),
    );
    meta.set("coreos-assembler.oci-imported", true);
    meta.set(
        "coreos-assembler.oci-imported-labels",
        json!(imported.labels),
    );
    meta.set("fedora-coreos.parent-commit", imported.base_commit.clone());
    meta.save(&staging.path().join("meta.json"))?;
    let cm = crate::compose::commit::commit_metadata_json(&repo, &imported.commit)?;
    std::fs::write(
        staging.path().join("commitmeta.json"),
        serde_json::to_vec_pretty(&cm)?,
    )?;
    let staging_path = staging.keep();
    history
        .commit_build(&staging_path, &version, arch)
        .with_context(|| format!("recording build {version}"))?;
    println!(
        "Imported {}: build {version}, commit {} ({} layer(s) on {}{})",
        o.image,
        imported.commit,
        imported.derived_layers,
        base.map_or(imported.base_commit.clone(), |(id, _)| format!(
            "build {id}"
        )),
        if imported.tmpfiles_lines > 0 {
            format!(
                "; {} /var entries as tmpfiles.d lines",
                imported.tmpfiles_lines
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
