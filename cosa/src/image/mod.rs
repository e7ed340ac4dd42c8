//! Disk images for every platform (`cosa buildextend-*`, `cosa osbuild`): a sysroot
//! deployed from the build's commit, one base disk shared by the platforms (plus a
//! 4K-sector one for metal4k), then a boot filesystem and a format per platform.

pub mod compress;
pub mod disk;
pub mod gpt;
pub mod grub;
pub mod ova;
pub mod platform;
pub mod sysroot;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::arch::Arch;
use crate::builds::artifact::{self, Artifact, BuiltImage};
use crate::builds::{History, Meta, Workdir};
use crate::config::image::{ImageConfig, Platforms};
use crate::platform::Platform;
use disk::DiskSpec;
use grub::Firmware;

/// What the image stage makes.
pub struct ImageOptions<'a> {
    /// Build ID (default: the latest build).
    pub build: Option<&'a str>,
    pub platforms: &'a [Platform],
    /// Rebuild images the build already has.
    pub force: bool,
    pub arch: Arch,
}

/// A made image: its meta.json key, the file in the scratch dir, its description.
type Made = (String, PathBuf, Artifact);

/// Make the requested platforms' images for a build and record them in its meta.json.
pub fn build_images(wd: &Workdir, opts: &ImageOptions) -> Result<Vec<BuiltImage>> {
    if opts.platforms.is_empty() {
        bail!("no platform given");
    }
    let _lock = wd.lock("image build", true)?;
    let history = History::new(wd.builds_dir());
    let id = history.resolve_id(opts.build)?;
    let build_dir = history.build_dir(&id, opts.arch.name());
    let meta_path = build_dir.join("meta.json");

    let meta = Meta::load(&meta_path)?;
    let (mut results, todo) = already_built(&meta, opts);
    if todo.is_empty() {
        return Ok(results);
    }
    let firmware = Firmware::of(opts.arch)?;
    commit_kernel(&wd.repo_path(), &meta.ostree_commit)?;
    ensure_ostree_image(wd, &id, opts.arch)?;
    // Reloaded: making the OCI archive recorded it.
    let mut meta = Meta::load(&meta_path)?;
    let config_dir = wd.config_dir();
    let img = load_image_config(&wd.config_file("image", "yaml")?)?;
    let platforms = Platforms::load(&config_dir)?;

    let scratch = wd.tmp_dir().join(format!("images-{id}"));
    sysroot::remove_tree(&scratch)?;
    fs::create_dir_all(&scratch)?;
    let tree = deploy_tree(wd, &meta, &img, &scratch)?;
    let job = Job {
        meta: &meta,
        arch: opts.arch,
        firmware,
        size: match img.size {
            Some(gb) => gb * 1024 * gpt::MIB,
            None => disk::default_size(disk::tree_bytes(&tree.root)?),
        },
        img: &img,
        platforms: &platforms,
        tree: &tree,
        scratch: &scratch,
    };
    let bases = job.base_disks(&todo)?;
    let made = job.platform_images(todo, &bases)?;

    // Move the finished artifacts in, then record them: meta.json is written last.
    results.extend(artifact::install(&build_dir, &mut meta, made)?);
    meta.save(&meta_path)?;
    sysroot::remove_tree(&scratch)?;
    Ok(results)
}

/// Split the request into the images the build has (kept unless forced) and those to make.
fn already_built(meta: &Meta, opts: &ImageOptions) -> (Vec<BuiltImage>, Vec<Platform>) {
    let mut kept = Vec::new();
    let mut todo = Vec::new();
    for &p in opts.platforms {
        match meta.images.get(p.name()) {
            Some(image) if !opts.force => {
                tracing::info!(
                    "{p}: already built for {} (--force to rebuild)",
                    meta.buildid
                );
                kept.push(BuiltImage {
                    name: p.name().to_string(),
                    built: false,
                    image: image.clone(),
                });
            }
            _ => todo.push(p),
        }
    }
    (kept, todo)
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

/// meta.json's schema wants `images.ostree` wherever `images` exists: make the
/// build's OCI archive first if it has none. The caller holds the workdir lock.
pub fn ensure_ostree_image(wd: &Workdir, id: &str, arch: Arch) -> Result<()> {
    let history = History::new(wd.builds_dir());
    let meta = history.load_meta(id, arch.name())?;
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

/// `image.yaml`, with a warning naming the keys cosa does not act on.
fn load_image_config(path: &Path) -> Result<ImageConfig> {
    let img = ImageConfig::load(path)?;
    if !img.unsupported_keys().is_empty() {
        tracing::warn!(
            "{} keys cosa does not act on: {}",
            path.display(),
            img.unsupported_keys().join(", ")
        );
    }
    Ok(img)
}

/// The deployed tree, split into what goes on the boot and the root partitions.
struct Tree {
    boot: PathBuf,
    root: PathBuf,
    /// The deployment's root inside `root` (for its GRUB payload).
    deployment: PathBuf,
}

/// Deploy the build's commit into a sysroot in `scratch` and split it.
fn deploy_tree(wd: &Workdir, meta: &Meta, img: &ImageConfig, scratch: &Path) -> Result<Tree> {
    let commit = &meta.ostree_commit;
    tracing::info!("deploying {commit} into a sysroot");
    let stateroot = &meta.name;
    let refspec = format!(
        "{}:{}",
        img.ostree_remote.as_deref().unwrap_or(stateroot),
        meta.ostree_ref.as_deref().unwrap_or("cosa")
    );
    let mut kargs = vec!["root=LABEL=root".to_string(), "rw".to_string()];
    kargs.extend(img.extra_kargs.iter().cloned());
    let sr = sysroot::deploy(
        &wd.repo_path(),
        commit,
        &refspec,
        stateroot,
        &kargs,
        &scratch.join("sysroot"),
    )?;
    let (boot, root) = disk::split_sysroot(&sr.dir, scratch)?;
    let deployment = sysroot::deployment_dir(&root, stateroot)?;
    Ok(Tree {
        boot,
        root,
        deployment,
    })
}

/// What the disk steps share, once the tree is deployed.
struct Job<'a> {
    meta: &'a Meta,
    arch: Arch,
    firmware: Firmware,
    /// The disk size in bytes.
    size: u64,
    img: &'a ImageConfig,
    platforms: &'a Platforms,
    tree: &'a Tree,
    scratch: &'a Path,
}

impl Job<'_> {
    fn spec(&self, sector: u64) -> DiskSpec<'_> {
        DiskSpec {
            seed: &self.meta.buildid,
            size: self.size,
            sector,
            rootfs: self.img.rootfs,
            timestamp: self.meta.ostree_timestamp_secs(),
            firmware: self.firmware,
        }
    }

    /// One base disk per sector size the platforms need. The 4K one is re-laid from
    /// the 512-byte one when both are needed: same filesystems.
    fn base_disks(&self, todo: &[Platform]) -> Result<Vec<(u64, PathBuf)>> {
        let mut bases: Vec<(u64, PathBuf)> = Vec::new();
        for sector in [512u64, 4096] {
            if !todo.iter().any(|p| p.sector_size() == sector) {
                continue;
            }
            let spec = self.spec(sector);
            let out = self.scratch.join(format!("base-{sector}.raw"));
            let t0 = Instant::now();
            match bases.first() {
                Some((512, base512)) if sector == 4096 => {
                    disk::relayout_4k(&spec, base512, &out, self.scratch)?;
                }
                _ => {
                    tracing::info!(
                        "making the base disk ({} MiB, {sector}-byte sectors)",
                        self.size >> 20
                    );
                    let t = self.tree;
                    disk::build(&spec, &t.boot, &t.root, &t.deployment, &out, self.scratch)?;
                }
            }
            tracing::info!(
                "base disk ({sector}-byte sectors) made in {:.2} s",
                t0.elapsed().as_secs_f64()
            );
            bases.push((sector, out));
        }
        Ok(bases)
    }

    /// Every platform's image from its base disk, in parallel, longest first.
    fn platform_images(
        &self,
        mut todo: Vec<Platform>,
        bases: &[(u64, PathBuf)],
    ) -> Result<Vec<Made>> {
        let names: Vec<&str> = todo.iter().map(|p| p.name()).collect();
        tracing::info!(
            "making {} platform image(s): {}",
            todo.len(),
            names.join(", ")
        );
        // Longest first, so that two cores are not left with one long job at the end.
        todo.sort_by_key(|p| std::cmp::Reverse(p.cost()));
        // FIFO spawns start the jobs in that order (par_iter would split the list in halves).
        let slots: Vec<Mutex<Option<Result<Made>>>> =
            todo.iter().map(|_| Mutex::new(None)).collect();
        rayon::scope_fifo(|s| {
            for (&p, slot) in todo.iter().zip(&slots) {
                s.spawn_fifo(move |_| {
                    let made = self.platform_image(p, bases);
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(made);
                });
            }
        });
        slots
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .context("an image job did not run")?
            })
            .collect()
    }

    /// One platform's image: its raw disk, converted to its format and described.
    fn platform_image(&self, p: Platform, bases: &[(u64, PathBuf)]) -> Result<Made> {
        let sector = p.sector_size();
        let base = &bases
            .iter()
            .find(|(s, _)| *s == sector)
            .with_context(|| format!("no {sector}-byte base disk for {p}"))?
            .1;
        let spec = self.spec(sector);
        let cfg = self.platforms.get(self.arch, p);
        let t0 = Instant::now();
        let raw = platform::platform_raw(&spec, base, &self.tree.boot, p, &cfg, self.scratch)
            .with_context(|| format!("making the {p} image"))?;
        let t1 = Instant::now();
        let out =
            self.scratch
                .join(p.artifact_name(&self.meta.name, &self.meta.buildid, self.arch));
        let packaging = platform::Packaging {
            name: &self.meta.name,
            version: &self.meta.buildid,
            commit: &self.meta.ostree_commit,
            arch: self.arch,
            image: self.img,
            timestamp: &self.meta.ostree_timestamp,
            timestamp_secs: self.meta.ostree_timestamp_secs(),
        };
        platform::convert(p, &raw, &out, &packaging)?;
        let _ = fs::remove_file(&raw);
        let t2 = Instant::now();
        let image = Artifact::of(&out)?;
        tracing::info!(
            "{p}: disk {:.2} s, {} {:.2} s, sha256 {:.2} s",
            (t1 - t0).as_secs_f64(),
            p.extension(),
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        );
        Ok((p.name().to_string(), out, image))
    }
}
