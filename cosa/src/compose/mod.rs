//! Compose: packages into an ostree commit.
//!
//! `fetch` resolves and downloads; `pkgcache` imports each RPM once into the repo;
//! `assemble` unions them into a tree and runs scriptlets; `treepost` applies the
//! treefile's edits and ostree's conventions; `commit` writes the result; `record`
//! makes it a build. `build` and `prune` are the stage entries of `cosa build` and
//! `cosa prune`.

pub mod assemble;
pub mod build;
pub mod commit;
pub mod dnf;
pub mod fetch;
pub mod initramfs;
pub mod pkgcache;
pub mod prune;
pub mod record;
pub mod rpmhdr;
pub mod sandbox;
pub mod treepost;

use fs_err as fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::builds::Workdir;
use crate::config::treefile::Treefile;
use crate::package::Package;

/// A config layer (overlay directory or overrides/rootfs) committed to the repo.
pub struct Layer {
    pub name: String,
    pub commit: String,
    pub content: String,
}

/// Where an `ostree-layers` entry `overlay/NAME` lives in the config.
fn layer_dir(config_dir: &Path, name: &str) -> Result<PathBuf> {
    let short = name
        .strip_prefix("overlay/")
        .with_context(|| format!("ostree-layers: {name} is not of the form overlay/NAME"))?;
    for d in ["overlay.d", "overlays"] {
        let p = config_dir.join(d).join(short);
        if p.is_dir() {
            return Ok(p);
        }
    }
    bail!(
        "ostree-layers: no directory overlay.d/{short} or overlays/{short} in {}",
        config_dir.display()
    )
}

/// Commit the treefile's `ostree-layers` and a non-empty overrides/rootfs, in the order applied.
pub fn commit_layers(repo: &ostree::Repo, wd: &Workdir, tf: &Treefile) -> Result<Vec<Layer>> {
    let mut dirs = Vec::new();
    for name in &tf.ostree_layers {
        dirs.push((name.clone(), layer_dir(&tf.config_dir, name)?));
    }
    let ov = wd.overrides_rootfs_dir();
    if fs::read_dir(&ov).is_ok_and(|mut d| d.next().is_some()) {
        dirs.push(("cosa/overrides/rootfs".to_string(), ov));
    }
    dirs.into_iter()
        .map(|(name, dir)| {
            let (commit, content) = commit::commit_layer(repo, &dir, &name)?;
            Ok(Layer {
                name,
                commit,
                content,
            })
        })
        .collect()
}

/// The hash over everything that determines a build's content: if it matches the
/// previous build's, there is nothing to do.
pub fn input_hash(tf: &Treefile, pkgs: &[Package], layers: &[Layer]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("cosa {}\n", env!("CARGO_PKG_VERSION")));
    // The resolved treefile carries inline scripts and file paths; hash the files' content too.
    h.update(serde_json::to_vec(tf)?);
    for (src, _) in &tf.add_files {
        h.update(
            fs::read(src).with_context(|| format!("reading add-files source {}", src.display()))?,
        );
    }
    if let Some(p) = &tf.postprocess_script {
        h.update(
            fs::read(p).with_context(|| format!("reading postprocess-script {}", p.display()))?,
        );
    }
    for p in pkgs {
        h.update(format!("pkg {} {}\n", p.nevra(), p.checksum));
    }
    for l in layers {
        h.update(format!("layer {} {}\n", l.name, l.content));
    }
    Ok(hex::encode(h.finalize()))
}

pub struct ComposeRequest<'a> {
    pub tf: &'a Treefile,
    pub packages: &'a [Package],
    pub layers: &'a [Layer],
    pub version: &'a str,
    pub inputhash: &'a str,
    pub parent: Option<&'a str>,
    pub timestamp: u64,
}

pub struct Composed {
    pub commit: String,
    pub content_checksum: String,
    pub kernel: Option<String>,
    /// Whether the kernel's initramfs was generated or reused from the cache.
    pub initramfs: Option<initramfs::Made>,
    pub import: pkgcache::ImportStats,
}

/// Compose the packages and layers into a commit; `refs` are pointed at it.
pub fn compose(
    wd: &Workdir,
    repo: &ostree::Repo,
    req: &ComposeRequest,
    refs: &[String],
) -> Result<Composed> {
    let scratch = wd.tmp_dir().join("compose");
    let cleanup = prepare_scratch(wd, &scratch)?;
    let rootfs = scratch.join("rootfs");
    let mut phase = crate::logging::Phases::new("compose");
    let (commits, import) = pkgcache::import_all(repo, req.packages)?;
    phase.done("import");
    let rpms: Vec<PathBuf> = req.packages.iter().map(|p| p.location.clone()).collect();
    let hdrs = rpmhdr::query(&rpms)?;
    phase.done("headers");

    tracing::info!("assembling {} packages", req.packages.len());
    let devino = ostree::RepoDevInoCache::new();
    assemble::checkout_packages(repo, &rootfs, req.packages, &commits, &hdrs, &devino)?;
    for l in req.layers {
        assemble::checkout_layer(repo, &rootfs, &l.commit, &devino)?;
    }
    phase.done("checkout");
    assemble::unshare_etc(&rootfs)?;
    let dirs = TreeDirs {
        rootfs: &rootfs,
        scratch: &scratch,
        initramfs_cache: &wd.cache_dir().join("initramfs"),
    };
    let (kernel, initramfs, caps) = run_in_tree(repo, &dirs, req, &hdrs, &mut phase)?;
    treepost::finalize_layout(&rootfs)?;
    phase.done("layout");
    write_sbom(&rootfs, req, &hdrs)?;
    phase.done("sbom");

    tracing::info!("committing");
    let meta = commit::CommitMeta {
        version: req.version,
        inputhash: req.inputhash,
        packages: req.packages,
        kernel: kernel.as_deref(),
        extra: &req.tf.add_commit_metadata,
        parent: req.parent,
        timestamp: req.timestamp,
    };
    let committed = commit::commit_tree(repo, &rootfs, &devino, &caps, &refs[0], &meta)?;
    phase.done("commit");
    for r in &refs[1..] {
        repo.set_ref_immediate(None, r, Some(&committed.commit), gio::Cancellable::NONE)
            .with_context(|| format!("setting ref {r}"))?;
    }
    // Left for the next compose to delete in the background.
    fs::rename(&scratch, wd.tmp_dir().join("compose.old"))?;
    if let Some(c) = cleanup {
        c.join()
            .map_err(|_| anyhow::anyhow!("the cleanup thread panicked"))??;
    }
    Ok(Composed {
        commit: committed.commit,
        content_checksum: committed.content_checksum,
        kernel,
        initramfs,
        import,
    })
}

/// The tree's own SBOM ([`crate::sbom::TREE_PATH`]), from the headers of the packages
/// the rpmdb was written from: the same document `rpm -qa` on the tree would give,
/// without reading the rpmdb back.
fn write_sbom(rootfs: &Path, req: &ComposeRequest, hdrs: &[rpmhdr::RpmHeader]) -> Result<()> {
    let name = req
        .tf
        .r#ref
        .as_deref()
        .and_then(|r| r.split('/').next())
        .unwrap_or("cosa");
    let mut pkgs: Vec<_> = hdrs.iter().map(rpmhdr::RpmHeader::sbom_package).collect();
    crate::sbom::sort_packages(&mut pkgs);
    let subject = crate::sbom::Subject {
        name,
        version: req.version,
        arch: &req.tf.basearch,
        identity: req.inputhash,
        origin: format!("composed from inputs {}", req.inputhash),
        timestamp: req.timestamp,
    };
    let doc = crate::sbom::document(&subject, &pkgs)
        .with_context(|| format!("making the SBOM of build {}", req.version))?;
    crate::sbom::write_into_tree(rootfs, &doc)
}

/// A fresh, empty `scratch`. Removing a tree of hardlinks is slow I/O (every unlink
/// updates a cache object's inode): the previous compose's tree is moved aside and
/// deleted by the thread returned while this one works.
fn prepare_scratch(wd: &Workdir, scratch: &Path) -> Result<Option<Cleanup>> {
    sandbox::unmount_leftovers(scratch)?;
    let trash = wd.tmp_dir().join("compose.trash");
    if trash.exists() {
        fs::remove_dir_all(&trash)?;
    }
    for old in [scratch, &wd.tmp_dir().join("compose.old")] {
        if old.exists() {
            fs::rename(old, &trash).with_context(|| format!("moving {} aside", old.display()))?;
        }
    }
    let cleanup = trash
        .exists()
        .then(|| std::thread::spawn(move || Ok(fs::remove_dir_all(&trash)?)));
    fs::create_dir_all(scratch)?;
    Ok(cleanup)
}

/// The background removal of the previous compose's tree.
type Cleanup = std::thread::JoinHandle<Result<()>>;

/// Where `run_in_tree` works: the tree, the compose's scratch directory (which holds
/// it), and the initramfs cache.
struct TreeDirs<'a> {
    rootfs: &'a Path,
    scratch: &'a Path,
    initramfs_cache: &'a Path,
}

/// The steps that run inside the tree (scriptlets, rpmdb, the treefile's edits and
/// postprocess, the initramfs); returns the kernel version, how its initramfs was
/// made, and file capabilities.
fn run_in_tree(
    repo: &ostree::Repo,
    dirs: &TreeDirs,
    req: &ComposeRequest,
    hdrs: &[rpmhdr::RpmHeader],
    phase: &mut crate::logging::Phases,
) -> Result<(Option<String>, Option<initramfs::Made>, Vec<String>)> {
    let rootfs = dirs.rootfs;
    let tree = sandbox::ProtectedTree::mount(rootfs, dirs.scratch)?;
    phase.done("mount");
    assemble::run_scriptlets(&tree, hdrs, assemble::Phase::Pre)?;
    phase.done("pre");
    assemble::apply_ownership(rootfs, hdrs)?;
    let caps = assemble::apply_caps(rootfs, hdrs)?;
    phase.done("ownership");
    let n = assemble::run_scriptlets(&tree, hdrs, assemble::Phase::Post)?
        + assemble::run_scriptlets(&tree, hdrs, assemble::Phase::PostTrans)?;
    tracing::info!("ran {n} scriptlets");
    phase.done("post");
    treepost::write_rpmdb(repo, rootfs, hdrs, req.parent)?;
    phase.done("rpmdb");
    treepost::apply_file_edits(rootfs, req.tf, hdrs)?;
    treepost::apply_system_config(rootfs, req.tf)?;
    treepost::apply_presets(rootfs)?;
    treepost::run_postprocess(&tree, req.tf)?;
    phase.done("edits+postprocess");
    let kernels = treepost::kernels(rootfs)?;
    if kernels.len() > 1 {
        bail!("the tree has more than one kernel: {}", kernels.join(", "));
    }
    let made = match kernels.first() {
        Some(k) => Some(initramfs::make(
            rootfs,
            dirs.scratch,
            dirs.initramfs_cache,
            req.tf,
            hdrs,
            k,
        )?),
        None => None,
    };
    phase.done("initramfs");
    Ok((kernels.into_iter().next(), made, caps))
}
