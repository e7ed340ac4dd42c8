//! Live media (`cosa buildextend-live`): the PXE kernel, initramfs and rootfs (a cpio
//! holding a squashfs or erofs image of the deployed sysroot, appendable as a second
//! initrd), and a hybrid ISO booting that image with `coreos.liveiso=<label>`.
//!
//! The build's metal images ride inside the live image at `/cosa/metal.*` and
//! `/cosa/metal4k.*` (the live system sees them under `/sysroot/cosa/`), so ISO and
//! PXE both install offline, to 512-byte and to 4K-sector disks (the installer
//! picks by the target's logical sector size, as coreos-installer picks its osmet).
//! The media follow Fedora CoreOS's layout and contracts (see [`iso`]), so
//! coreos-installer customizes them; Day-0 customization by cosa is in [`customize`].

pub mod customize;
pub mod iso;

use fs_err as fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::builds::artifact::{self, Artifact, BuiltImage};
use crate::builds::{History, Meta, Workdir};
use crate::config::image::{ImageConfig, LiveRootFs, PlatformConfig, Platforms};
use crate::cpio;
use crate::image::sysroot::BlsEntry;
use crate::image::{disk, platform, sysroot, ImageOptions};
use crate::platform::Platform;
use cmdext::CommandRunExt;

/// meta.json names of the live artifacts, in the order they are made.
pub const ARTIFACTS: &[&str] = &["live-kernel", "live-initramfs", "live-rootfs", "live-iso"];

/// Where the metal image sits inside the live image (and, in the live system,
/// under `/sysroot`).
pub const METAL_DIR: &str = "cosa";

/// The ISO volume label for a build: it names the build (at most 32 bytes).
pub fn volume_label(name: &str, id: &str) -> String {
    let mut l = format!("{name}-{id}");
    l.truncate(32);
    l
}

fn artifact_file(name: &str, id: &str, what: &str, arch: &str) -> String {
    match what {
        "live-kernel" => format!("{name}-{id}-live-kernel-{arch}"),
        "live-initramfs" => format!("{name}-{id}-live-initramfs.{arch}.img"),
        "live-rootfs" => format!("{name}-{id}-live-rootfs.{arch}.img"),
        _ => format!("{name}-{id}-live.{arch}.iso"),
    }
}

fn existing(meta: &Meta) -> Option<Vec<BuiltImage>> {
    ARTIFACTS
        .iter()
        .map(|n| {
            Some(BuiltImage {
                name: n.to_string(),
                built: false,
                image: meta.images.get(*n)?.clone(),
            })
        })
        .collect()
}

/// Hardlink `src` to `dest`, or copy (sparse) when they are on different filesystems.
fn link_or_copy(src: &Path, dest: &Path) -> Result<()> {
    if fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    cmdext::command("cp")
        .arg("--sparse=always")
        .arg(src)
        .arg(dest)
        .run()
        .with_context(|| format!("copying {} to {}", src.display(), dest.display()))
}

/// The live root image of `tree` at `out`.
fn root_image(fstype: LiveRootFs, tree: &Path, out: &Path) -> Result<()> {
    let _ = fs::remove_file(out);
    match fstype {
        LiveRootFs::Squashfs => cmdext::command("mksquashfs")
            .arg(tree)
            .arg(out)
            .args(["-noappend", "-no-progress", "-quiet", "-comp", "zstd"])
            .run()
            .context("making the live root squashfs"),
        LiveRootFs::Erofs => cmdext::command("mkfs.erofs")
            .args(["-zlz4hc", "--quiet"])
            .arg(out)
            .arg(tree)
            .run()
            .context("making the live root erofs"),
    }
}

/// The PXE rootfs: a cpio with the root image as its one member.
pub fn write_rootfs_cpio(image: &Path, member: &str, out: &Path) -> Result<()> {
    let f = fs::File::open(image)?;
    let size = f.metadata()?.len();
    let w = std::io::BufWriter::new(
        fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let mut c = cpio::Writer::new(w);
    c.file_from(member, 0o644, size, f)?;
    c.finish()?;
    Ok(())
}

/// The initrd a PXE server hands out when it serves the rootfs with the
/// initramfs (coreos-installer's `--live-initramfs` + `--live-rootfs` in one):
/// `initramfs`, padded to 4 bytes, then `rootfs` (the kernel unpacks
/// concatenated cpio archives in order).
pub fn pxe_initrd(initramfs: &Path, rootfs: &Path, out: &Path) -> Result<()> {
    let what = || format!("appending {} to {}", rootfs.display(), initramfs.display());
    let mut b = fs::read(initramfs).with_context(what)?;
    b.resize(b.len().div_ceil(4) * 4, 0);
    b.extend(fs::read(rootfs).with_context(what)?);
    fs::write(out, b).with_context(what)?;
    Ok(())
}

/// Everything the live media of one build are made from, read before anything is written.
struct LiveInputs {
    id: String,
    arch: Arch,
    name: String,
    label: String,
    commit: String,
    /// `REMOTE:REF` the deployment's origin names.
    refspec: String,
    /// The build's metal images (512-byte and 4K sectors): each file and the
    /// name it has in the live tree (`metal.raw`, `metal4k.raw.xz`, …).
    metal: Vec<(PathBuf, String)>,
    img: ImageConfig,
    metal_cfg: PlatformConfig,
}

/// The files made in the scratch directory, before they move into the build.
struct LiveFiles {
    kernel: PathBuf,
    initramfs: PathBuf,
    rootfs: PathBuf,
    iso: PathBuf,
}

/// `cosa buildextend-live`: the live media of `build` (default: latest), made once
/// unless `force`. The build's metal image is made first when it is missing.
pub fn build_live(wd: &Workdir, build: Option<&str>, force: bool) -> Result<Vec<BuiltImage>> {
    let history = History::new(wd.builds_dir());
    let host = Arch::host()?;
    let arch = host.name();
    let id = history.resolve_id(build)?;
    let build_dir = history.build_dir(&id, arch);
    let meta_path = build_dir.join("meta.json");
    let meta = Meta::load(&meta_path)?;
    if !force {
        if let Some(r) = existing(&meta) {
            tracing::info!("live media already built for {id} (--force to rebuild)");
            return Ok(r);
        }
    }
    ensure_metal(wd, &id, host, &meta)?;
    let _lock = wd.lock("live media build", true)?;
    crate::image::ensure_ostree_image(wd, &id, host)?;
    let mut meta = Meta::load(&meta_path)?;
    let inputs = LiveInputs::read(wd, &meta, &build_dir, &id, host)?;

    let scratch = wd.tmp_dir().join(format!("live-{id}"));
    sysroot::remove_tree(&scratch)?;
    fs::create_dir_all(&scratch)?;
    let files = match make_live(wd, &inputs, &scratch) {
        Ok(f) => f,
        Err(e) => {
            let _ = sysroot::remove_tree(&scratch);
            return Err(e);
        }
    };

    // Move the finished artifacts in, then record them: meta.json is written last.
    let made = vec![
        ("live-kernel".into(), files.kernel),
        ("live-initramfs".into(), files.initramfs),
        ("live-rootfs".into(), files.rootfs),
        ("live-iso".into(), files.iso),
    ];
    let results = artifact::install(&build_dir, &mut meta, artifact::describe(made)?)?;
    meta.save(&meta_path)?;
    sysroot::remove_tree(&scratch)?;
    Ok(results)
}

/// The metal images the live media carry (what installs, one per sector size).
const METAL_PLATFORMS: [Platform; 2] = [Platform::Metal, Platform::Metal4k];

/// The live media carry the metal images: make those missing.
fn ensure_metal(wd: &Workdir, id: &str, arch: Arch, meta: &Meta) -> Result<()> {
    let missing: Vec<Platform> = METAL_PLATFORMS
        .into_iter()
        .filter(|p| !meta.images.contains_key(p.name()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name()).collect();
    tracing::info!(
        "{id} has no {} image: making it first (it is what installs)",
        names.join(" or ")
    );
    crate::image::build_images(
        wd,
        &ImageOptions {
            build: Some(id),
            platforms: &missing,
            force: false,
            arch,
        },
    )?;
    Ok(())
}

impl LiveInputs {
    fn read(wd: &Workdir, meta: &Meta, build_dir: &Path, id: &str, arch: Arch) -> Result<Self> {
        let mut metal = Vec::new();
        for p in METAL_PLATFORMS {
            let a: &Artifact = meta.images.get(p.name()).with_context(|| {
                format!(
                    "{}: meta.json has no images.{}",
                    build_dir.display(),
                    p.name()
                )
            })?;
            let ext = a.path.rsplit_once(".raw").map_or("", |(_, e)| e);
            if !matches!(ext, "" | ".gz" | ".xz") {
                bail!(
                    "the {} image {} is compressed in a way the live installer cannot read (raw, .gz or .xz); run `cosa decompress` first",
                    p.name(),
                    a.path
                );
            }
            metal.push((build_dir.join(&a.path), format!("{}.raw{ext}", p.name())));
        }
        let config_dir = wd.config_dir();
        let img = ImageConfig::load(&wd.config_file("image", "yaml")?)?;
        let metal_cfg = Platforms::load(&config_dir)?.get(arch, Platform::Metal);
        let name = meta.name.clone();
        let refspec = format!(
            "{}:{}",
            img.ostree_remote.as_deref().unwrap_or(&name),
            meta.ostree_ref.as_deref().unwrap_or("cosa")
        );
        Ok(LiveInputs {
            id: id.to_string(),
            arch,
            label: volume_label(&name, id),
            name,
            commit: meta.ostree_commit.clone(),
            refspec,
            metal,
            img,
            metal_cfg,
        })
    }

    /// Where artifact `what` is made in the scratch directory.
    fn scratch_file(&self, scratch: &Path, what: &str) -> PathBuf {
        scratch.join(artifact_file(&self.name, &self.id, what, self.arch.name()))
    }

    /// The live system's kernel arguments: its ISO label, first boot, the
    /// deployment (the live image holds a whole sysroot), then the image's and metal's.
    fn kargs(&self, bls: &BlsEntry) -> Vec<String> {
        let mut kargs = vec![
            format!("coreos.liveiso={}", self.label),
            "ignition.firstboot".to_string(),
        ];
        kargs.extend(
            bls.options
                .split_whitespace()
                .filter(|k| k.starts_with("ostree="))
                .map(String::from),
        );
        kargs.extend(self.img.extra_kargs.iter().cloned());
        kargs.extend(platform::platform_kargs(Platform::Metal, &self.metal_cfg));
        kargs
    }
}

/// Deploy the commit, then make the PXE artifacts and the ISO from it in `scratch`.
fn make_live(wd: &Workdir, inputs: &LiveInputs, scratch: &Path) -> Result<LiveFiles> {
    tracing::info!("deploying {} into a sysroot", inputs.commit);
    let sr = sysroot::deploy(
        &wd.repo_path(),
        &inputs.commit,
        &inputs.refspec,
        &inputs.name,
        &inputs.img.extra_kargs,
        &scratch.join("sysroot"),
    )?;
    let bls = sr
        .bls
        .first()
        .context("the deployed sysroot has no boot entry")?
        .clone();
    let (bootdir, tree) = disk::split_sysroot(&sr.dir, scratch)?;
    let deployment = sysroot::deployment_dir(&tree, &inputs.name)?;

    let kernel = inputs.scratch_file(scratch, "live-kernel");
    let initramfs = inputs.scratch_file(scratch, "live-initramfs");
    fs::copy(bootdir.join(bls.linux.trim_start_matches('/')), &kernel)?;
    live_initramfs(
        &bootdir.join(bls.initrd.trim_start_matches('/')),
        &initramfs,
    )?;
    embed_metal(inputs, &tree)?;

    let isodir = scratch.join("iso");
    let pxeboot = isodir.join("images/pxeboot");
    fs::create_dir_all(&pxeboot)?;
    let rootfs = inputs.scratch_file(scratch, "live-rootfs");
    make_rootfs(inputs.img.live_rootfs_fstype, &tree, scratch, &rootfs)?;
    link_or_copy(&kernel, &pxeboot.join("vmlinuz"))?;
    link_or_copy(&initramfs, &pxeboot.join("initrd.img"))?;
    link_or_copy(&rootfs, &pxeboot.join("rootfs.img"))?;

    let iso = inputs.scratch_file(scratch, "live-iso");
    tracing::info!("writing the ISO (volume {})", inputs.label);
    iso::build(
        &iso::IsoSpec {
            label: &inputs.label,
            title: &format!("{} {}", os_name(&deployment), inputs.id),
            kargs: &inputs.kargs(&bls),
            grub_commands: &inputs.metal_cfg.grub_commands,
            deployment: &deployment,
            arch: inputs.arch,
        },
        &isodir,
        &iso,
        scratch,
    )?;
    Ok(LiveFiles {
        kernel,
        initramfs,
        rootfs,
        iso,
    })
}

/// The metal images ride in the live tree at `/cosa/metal.raw[.gz|.xz]` and
/// `/cosa/metal4k.raw[.gz|.xz]`.
fn embed_metal(inputs: &LiveInputs, tree: &Path) -> Result<()> {
    fs::create_dir_all(tree.join(METAL_DIR))?;
    for (file, name) in &inputs.metal {
        link_or_copy(file, &tree.join(METAL_DIR).join(name))?;
    }
    Ok(())
}

/// The PXE rootfs (also the ISO's `images/pxeboot/rootfs.img`): a cpio whose first
/// member is the live root image, stored uncompressed, so that the live initramfs
/// can loop-mount it in place at [`ROOTFS_DATA_OFFSET`].
fn make_rootfs(fstype: LiveRootFs, tree: &Path, scratch: &Path, rootfs: &Path) -> Result<()> {
    let member = match fstype {
        LiveRootFs::Squashfs => "root.squashfs",
        LiveRootFs::Erofs => "root.erofs",
    };
    tracing::info!("making the live root image ({member})");
    let rootimg = scratch.join(member);
    root_image(fstype, tree, &rootimg)?;
    write_rootfs_cpio(&rootimg, member, rootfs)?;
    fs::remove_file(&rootimg)?;
    Ok(())
}

/// Where the root image's data starts in the rootfs cpio: the 110-byte newc header
/// and the member's name (`root.squashfs` or `root.erofs`, NUL included), padded to
/// 4 bytes. The live initramfs of both streams mounts it there.
pub const ROOTFS_DATA_OFFSET: u64 = 124;

/// The live initramfs: the deployment's, then a cpio marking it live and stating the
/// live media's features (what coreos-installer's `pxe customize` looks for).
fn live_initramfs(deployed: &Path, out: &Path) -> Result<()> {
    let mut data = fs::read(deployed)
        .with_context(|| format!("reading the initramfs {}", deployed.display()))?;
    // The kernel reads a following cpio only from a 4-byte boundary; zeros between are skipped.
    data.resize(data.len().div_ceil(4) * 4, 0);
    let mut c = cpio::Writer::new(data);
    c.dir("etc")?;
    c.file(iso::INITRD_LIVE_STAMP, 0o644, b"")?;
    c.dir("etc/coreos")?;
    let mut features = serde_json::to_vec_pretty(&iso::Features::ours())?;
    features.push(b'\n');
    c.file(iso::INITRD_FEATURES, 0o644, &features)?;
    fs::write(out, c.finish()?).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// NAME from the deployment's os-release, for the boot menu.
fn os_name(deployment: &Path) -> String {
    let text = fs::read_to_string(deployment.join("usr/lib/os-release")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_the_build_and_fits_iso9660() {
        assert_eq!(volume_label("demo", "1.20261120.0"), "demo-1.20261120.0");
        assert_eq!(volume_label("x", &"9".repeat(40)).len(), 32);
    }

    #[test]
    fn the_root_image_sits_where_the_live_initramfs_mounts_it() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("root.squashfs");
        fs::write(&img, b"hsqs and the rest").unwrap();
        for member in ["root.squashfs", "root.erofs"] {
            let out = t.path().join(format!("{member}.cpio"));
            write_rootfs_cpio(&img, member, &out).unwrap();
            let data = fs::read(&out).unwrap();
            let at = ROOTFS_DATA_OFFSET as usize;
            assert_eq!(&data[110..110 + member.len()], member.as_bytes());
            assert_eq!(&data[at..at + 17], b"hsqs and the rest", "{member}");
        }
    }

    #[test]
    fn artifact_names_follow_coreos_assembler() {
        assert_eq!(
            artifact_file("demo", "1", "live-iso", "x86_64"),
            "demo-1-live.x86_64.iso"
        );
        assert_eq!(
            artifact_file("demo", "1", "live-kernel", "x86_64"),
            "demo-1-live-kernel-x86_64"
        );
    }
}
