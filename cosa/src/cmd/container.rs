//! `cosa build-container`, `cosa push-container`, `cosa import`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::builds::meta::{ContainerImage, ImportedImage};
use crate::builds::{History, Meta, Workdir};
use crate::cli::{BuildContainerOpts, GlobalOpts, ImportOpts, PushContainerOpts};
use crate::compose::pkgcache::open_repo;
use crate::oci::archive::{build_container, ContainerRequest};
use crate::oci::import;
use cmdext::CommandRunExt;

pub fn build(g: &GlobalOpts, o: &BuildContainerOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let _lock = wd.lock("build-container", o.wait)?;
    let id = History::new(wd.builds_dir()).resolve_id(o.build.as_deref())?;
    let req = ContainerRequest {
        max_layers: o.max_layers,
        compression: o.compression,
        force: o.force,
    };
    if build_container(&wd, &id, &req)? {
        let meta = History::new(wd.builds_dir()).load_meta(&id, Arch::host()?.name())?;
        let p = meta.images.get("ostree").map_or("", |a| a.path.as_str());
        println!("Wrote {p}");
    } else {
        println!("Build {id} already has its container image (--force to rebuild it)");
    }
    Ok(())
}

pub fn push(g: &GlobalOpts, o: &PushContainerOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let history = History::new(wd.builds_dir());
    let id = history.resolve_id(o.build.as_deref())?;
    let arch = Arch::host()?.name();
    let meta = history.load_meta(&id, arch)?;
    let Some(p) = meta.images.get("ostree").map(|a| a.path.clone()) else {
        bail!("build {id} has no container image; run `cosa build-container` first");
    };
    let src = history.build_dir(&id, arch).join(&p);
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
        meta.base_oscontainer = Some(ContainerImage {
            image: image.to_string(),
            digest: (!digest.is_empty()).then(|| digest.clone()),
        });
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
    let arch = Arch::host()?.name();
    let repo = open_repo(&wd.repo_path())?;
    let scratch = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(wd.tmp_dir())?;
    let img = import::fetch_image(&o.image, &scratch.path().join("image"))?;

    let builds = history.load()?;
    let base_commit = img.labels().get(crate::oci::labels::COMMIT).cloned();
    let base = builds.builds.iter().find_map(|b| {
        let m = history.load_meta(&b.id, arch).ok()?;
        (Some(m.ostree_commit.as_str()) == base_commit.as_deref()).then_some((b.id.clone(), m))
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
    let meta = Meta::imported(
        base.as_ref().map(|(_, m)| m),
        &version,
        &ImportedImage {
            image: &o.image,
            commit: &imported.commit,
            base_commit: &imported.base_commit,
            labels: &imported.labels,
        },
        timestamp,
        arch,
    );
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
