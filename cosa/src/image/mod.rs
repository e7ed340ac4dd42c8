//! Disk images for every platform (`cosa buildextend-*`, `cosa osbuild`): a sysroot
//! deployed from the build's commit, one base disk shared by the platforms (plus a
//! 4K-sector one for metal4k), then a boot filesystem and a format per platform.

pub mod disk;
pub mod gpt;
pub mod grub;
pub mod platform;
pub mod sysroot;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::builds::artifact::{self, Artifact, BuiltImage};
use crate::builds::{History, Meta, Workdir};
use crate::config::image::{platform_ext, ImageConfig, Platforms};

pub struct ImageRequest<'a> {
    pub build: Option<&'a str>,
    pub platforms: &'a [String],
    pub force: bool,
}

/// The kernel version the build's commit boots, or a clear error if it has none.
fn commit_kernel(repo: &Path, commit: &str) -> Result<String> {
    let repo = crate::compose::pkgcache::open_repo(repo)?;
    let meta = crate::compose::commit::commit_metadata_json(&repo, commit)?;
    match meta.get("ostree.linux").and_then(|v| v.as_str()) {
        Some(k) => Ok(k.to_string()),
        None => bail!("commit {commit} has no kernel (no /usr/lib/modules/*/vmlinuz): it cannot be made into a bootable image"),
    }
}

pub fn artifact_name(meta: &Meta, platform: &str, arch: &str) -> Result<String> {
    let (name, id) = (&meta.name, &meta.buildid);
    Ok(format!(
        "{name}-{id}-{platform}.{arch}.{}",
        platform_ext(platform)?
    ))
}

pub fn build_images(wd: &Workdir, req: &ImageRequest) -> Result<Vec<BuiltImage>> {
    if req.platforms.is_empty() {
        bail!("no platform given");
    }
    for p in req.platforms {
        platform_ext(p)?;
    }
    let _lock = wd.lock("image build", true)?;
    let history = History::new(wd.builds_dir());
    let arch = crate::arch::Arch::host()?.name();
    let id = history.resolve_id(req.build)?;
    let build_dir = history.build_dir(&id, arch);
    let meta_path = build_dir.join("meta.json");
    let meta = Meta::load(&meta_path)?;
    let commit = meta.ostree_commit.clone();

    let mut results = Vec::new();
    let mut todo = Vec::new();
    for p in req.platforms {
        match meta.images.get(p) {
            Some(v) if !req.force => {
                tracing::info!("{p}: already built for {id} (--force to rebuild)");
                results.push(BuiltImage {
                    name: p.clone(),
                    built: false,
                    image: v.clone(),
                });
            }
            _ => todo.push(p.clone()),
        }
    }
    if todo.is_empty() {
        return Ok(results);
    }
    commit_kernel(&wd.repo_path(), &commit)?;
    ensure_ostree_image(wd, &id)?;
    let mut meta = Meta::load(&meta_path)?;
    let config_dir = wd.config_dir();
    let img = ImageConfig::load(&config_dir)?;
    if !img.unsupported_keys().is_empty() {
        tracing::warn!(
            "image.yaml keys cosa does not act on: {}",
            img.unsupported_keys().join(", ")
        );
    }
    let platforms = Platforms::load(&config_dir)?;
    let timestamp = meta.ostree_timestamp_secs();

    let scratch = wd.tmp_dir().join(format!("images-{id}"));
    sysroot::remove_tree(&scratch)?;
    fs::create_dir_all(&scratch)?;

    tracing::info!("deploying {commit} into a sysroot");
    let stateroot = meta.name.clone();
    let refspec = format!(
        "{}:{}",
        img.ostree_remote.as_deref().unwrap_or(&stateroot),
        meta.ostree_ref.as_deref().unwrap_or("cosa")
    );
    let mut kargs = vec!["root=LABEL=root".to_string(), "rw".to_string()];
    kargs.extend(img.extra_kargs.iter().cloned());
    let sr = sysroot::deploy(
        &wd.repo_path(),
        &commit,
        &refspec,
        &stateroot,
        &kargs,
        &scratch.join("sysroot"),
    )?;
    let (bootdir, rootdir) = disk::split_sysroot(&sr.dir, &scratch)?;
    let deployment = sysroot::deployment_dir(&rootdir, &stateroot)?;
    let size = match img.size {
        Some(gb) => gb * 1024 * gpt::MIB,
        None => disk::default_size(disk::tree_bytes(&rootdir)?),
    };

    // One base disk per sector size the requested platforms need. The 4K one is
    // re-laid from the 512-byte one when both are needed: same filesystems.
    let spec_for = |sector| disk::DiskSpec {
        seed: &id,
        size,
        sector,
        rootfs: img.rootfs,
        timestamp,
    };
    let sector_of = |p: &str| if p == "metal4k" { 4096 } else { 512 };
    let mut bases: Vec<(u64, PathBuf)> = Vec::new();
    for sector in [512u64, 4096] {
        if !todo.iter().any(|p| sector_of(p) == sector) {
            continue;
        }
        let spec = spec_for(sector);
        let out = scratch.join(format!("base-{sector}.raw"));
        let t0 = Instant::now();
        match bases.first() {
            Some((512, base512)) if sector == 4096 => {
                disk::relayout_4k(&spec, base512, &out, &scratch)?;
            }
            _ => {
                tracing::info!(
                    "making the base disk ({} MiB, {sector}-byte sectors)",
                    size >> 20
                );
                disk::build(&spec, &bootdir, &rootdir, &deployment, &out, &scratch)?;
            }
        }
        tracing::info!(
            "base disk ({sector}-byte sectors) made in {:.2} s",
            t0.elapsed().as_secs_f64()
        );
        bases.push((sector, out));
    }

    tracing::info!(
        "making {} platform image(s): {}",
        todo.len(),
        todo.join(", ")
    );
    // Longest first, so that two cores are not left with one long job at the end.
    todo.sort_by_key(|p| std::cmp::Reverse(platform_cost(p)));
    let make = |p: &String| -> Result<(String, PathBuf, Artifact)> {
        let sector = sector_of(p);
        let base = &bases
            .iter()
            .find(|(s, _)| *s == sector)
            .context("base disk")?
            .1;
        let spec = spec_for(sector);
        let t0 = Instant::now();
        let raw =
            platform::platform_raw(&spec, base, &bootdir, p, &platforms.get(arch, p), &scratch)
                .with_context(|| format!("making the {p} image"))?;
        let t1 = Instant::now();
        let out = scratch.join(artifact_name(&meta, p, arch)?);
        platform::convert(p, &raw, &out)?;
        let _ = fs::remove_file(&raw);
        let t2 = Instant::now();
        let image = Artifact::of(&out)?;
        tracing::info!(
            "{p}: disk {:.2} s, {} {:.2} s, sha256 {:.2} s",
            (t1 - t0).as_secs_f64(),
            platform_ext(p)?,
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        );
        Ok((p.clone(), out, image))
    };
    // FIFO spawns start the jobs in that order (par_iter would split the list in halves).
    let slots: Vec<std::sync::Mutex<Option<Result<_>>>> =
        todo.iter().map(|_| std::sync::Mutex::new(None)).collect();
    rayon::scope_fifo(|s| {
        for (p, slot) in todo.iter().zip(&slots) {
            let make = &make;
            s.spawn_fifo(move |_| *slot.lock().unwrap() = Some(make(p)));
        }
    });
    let made = slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap()
                .context("an image job did not run")?
        })
        .collect::<Result<Vec<_>>>()?;

    // Move the finished artifacts in, then record them: meta.json is written last.
    results.extend(artifact::install(&build_dir, &mut meta, made)?);
    meta.save(&meta_path)?;
    sysroot::remove_tree(&scratch)?;
    Ok(results)
}

/// Relative cost of a platform's own work (its conversion, and the sha256 of what
/// it publishes: a raw disk is hashed whole), for scheduling.
fn platform_cost(platform: &str) -> u32 {
    match platform {
        "gcp" | "aws" => 3,                 // compression of the disk's data
        "azure" | "metal" | "metal4k" => 2, // sha256 of the whole virtual size
        _ => 1,
    }
}

/// meta.json's schema wants `images.ostree` wherever `images` exists: make the
/// build's OCI archive first if it has none. The caller holds the workdir lock.
pub fn ensure_ostree_image(wd: &Workdir, id: &str) -> Result<()> {
    let history = History::new(wd.builds_dir());
    let meta = history.load_meta(id, crate::arch::Arch::host()?.name())?;
    if !meta.images.contains_key("ostree") {
        tracing::info!("build {id} has no OCI archive (images.ostree) yet: making it first");
        let req = crate::oci::archive::ContainerRequest {
            max_layers: 64,
            compression: crate::oci::Compression::Gzip,
            force: false,
        };
        crate::oci::archive::build_container(wd, id, &req)?;
    }
    Ok(())
}
