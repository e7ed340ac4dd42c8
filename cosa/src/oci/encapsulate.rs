//! A commit as an ostree-native OCI archive, chunked by package, built in parallel.
//!
//! Reproducible: the same commit (and options) gives the same bytes. Entries carry
//! mtime 0 (as ostree checkouts do) and the image's `created` is the commit's
//! timestamp, so a layer whose packages did not change keeps its digest across builds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, RootFsBuilder, SCHEMA_VERSION,
};
use rayon::prelude::*;

use super::chunking::{self, LayerPlan};
use super::compress;
use super::labels;
use super::layer::LayerWriter;
use super::layout;
use super::tree::{image_path, CommitTree};
use crate::arch::Arch;
use crate::oci::Compression;

/// How to encapsulate a commit.
pub struct EncapsulateOptions {
    pub arch: Arch,
    pub max_layers: usize,
    pub compression: Compression,
    /// Per package name: how many earlier builds changed it (weighs packing).
    pub changes: HashMap<String, u32>,
}

/// The archive written, and its manifest.
pub struct Encapsulated {
    pub sha256: String,
    pub size: u64,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layers: usize,
}

fn labels_of(tree: &CommitTree) -> HashMap<String, String> {
    let mut l = HashMap::new();
    l.insert(labels::COMMIT.to_string(), tree.commit.clone());
    if let Some(v) = tree.meta_str("version") {
        l.insert(labels::VERSION.to_string(), v);
    }
    if let Some(h) = tree.meta_str(labels::INPUTHASH) {
        l.insert(labels::INPUTHASH.to_string(), h);
    }
    if let Some(b) = tree.meta_lookup::<bool>(labels::BOOTABLE) {
        l.insert(labels::BOOTABLE.to_string(), b.to_string());
        if b {
            l.insert(labels::BOOTC.to_string(), "1".to_string());
        }
    }
    if let Some(k) = tree.meta_str(labels::LINUX) {
        l.insert(labels::LINUX.to_string(), k);
    }
    l
}

/// The first layer: the tree's directories, the repo skeleton, the commit and all
/// dirtree/dirmeta objects (ostree-ext's importer wants the commit object first).
fn write_commit_layer(tree: &CommitTree, w: &mut LayerWriter<impl std::io::Write>) -> Result<()> {
    let mut has_vartmp = false;
    for d in &tree.dirs {
        if d.path == "sysroot" || d.path.starts_with("sysroot/") {
            continue;
        }
        has_vartmp |= d.path == "var/tmp";
        w.dir(&image_path(&d.path), d.mode, d.uid, d.gid)?;
    }
    let prefixes: Vec<String> = (0..=0xffu32).map(|i| format!("{i:02x}")).collect();
    w.repo_structure(&prefixes, true)?;
    w.metadata_object(&tree.commit, "commit", &tree.commit_object)?;
    if let Some(m) = &tree.commitmeta {
        w.metadata_object(&tree.commit, "commitmeta", m)?;
    }
    for ((csum, kind), data) in &tree.meta_objects {
        w.metadata_object(csum, kind, data)?;
    }
    if !has_vartmp {
        // Containers expect /var/tmp; ostree creates it at boot through tmpfiles.
        w.dir("var/tmp", 0o1777, 0, 0)?;
    }
    Ok(())
}

fn write_content_layer(
    tree: &CommitTree,
    plan: &LayerPlan,
    w: &mut LayerWriter<impl std::io::Write>,
) -> Result<()> {
    // Objects with xattrs (file capabilities) link to their own xattrs objects.
    let xattrs: BTreeMap<&str, &[u8]> = plan
        .objects
        .iter()
        .filter_map(|o| tree.objects[o.as_str()].xattrs.as_ref())
        .map(|(c, d)| (c.as_str(), d.as_slice()))
        .collect();
    let mut prefixes: Vec<String> = plan
        .objects
        .iter()
        .map(|o| o.as_str())
        .chain(xattrs.keys().copied())
        .map(|c| c[..2].to_string())
        .collect();
    prefixes.sort();
    prefixes.dedup();
    w.repo_structure(&prefixes, false)?;
    w.xattrs_object()?;
    for (c, d) in &xattrs {
        w.xattrs_object_data(c, d)?;
    }
    for o in &plan.objects {
        w.content_object(tree, o)?;
    }
    Ok(())
}

/// Encapsulate `commit` of the bare repo at `repo_path` into the archive `dest`;
/// `scratch` is an empty directory for temporary files.
pub fn encapsulate(
    repo: &ostree::Repo,
    repo_path: &Path,
    commit: &str,
    opts: &EncapsulateOptions,
    scratch: &Path,
    dest: &Path,
) -> Result<Encapsulated> {
    let t0 = std::time::Instant::now();
    let tree = CommitTree::load(repo, repo_path, commit)?;
    tracing::debug!("walked the commit in {:.2} s", t0.elapsed().as_secs_f64());
    let plans = plan_layers(repo, &tree, opts, scratch)?;
    let built = build_layers(&tree, &plans, opts.compression)?;
    tracing::debug!("built the layers at {:.2} s", t0.elapsed().as_secs_f64());
    let labels = image_labels(&tree, &built)?;
    let config = image_config(
        &tree,
        opts.arch,
        &layer_names(&tree, &plans),
        &built,
        &labels,
    )?;
    let layers = layer_descriptors(&plans, &built, opts.compression)?;
    let enc = write_image(dest, built, &config, layers, labels)?;
    tracing::debug!("wrote the archive at {:.2} s", t0.elapsed().as_secs_f64());
    Ok(enc)
}

/// The config, manifest and index for `built`, and the archive holding them all.
pub(super) fn write_image(
    dest: &Path,
    built: Vec<compress::Layer>,
    config: &ImageConfiguration,
    layers: Vec<Descriptor>,
    labels: HashMap<String, String>,
) -> Result<Encapsulated> {
    let (config_desc, config_bytes) = layout::json_blob(MediaType::ImageConfig, config)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layers)
        .annotations(labels)
        .build()?;
    let (manifest_desc, manifest_bytes) = layout::json_blob(MediaType::ImageManifest, &manifest)?;
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .manifests(vec![manifest_desc.clone()])
        .build()?;
    let n_layers = built.len();
    let mut blobs: BTreeMap<String, Vec<u8>> =
        built.into_iter().map(|b| (b.digest, b.data)).collect();
    blobs.insert(
        manifest.config().digest().digest().to_string(),
        config_bytes,
    );
    blobs.insert(
        manifest_desc.digest().digest().to_string(),
        manifest_bytes.clone(),
    );
    let (sha256, size) = layout::write_archive(dest, &blobs, &index)?;
    Ok(Encapsulated {
        sha256,
        size,
        manifest: manifest_bytes,
        manifest_digest: manifest_desc.digest().to_string(),
        layers: n_layers,
    })
}

/// Which content objects go in which layer (the commit layer comes before these).
fn plan_layers(
    repo: &ostree::Repo,
    tree: &CommitTree,
    opts: &EncapsulateOptions,
    scratch: &Path,
) -> Result<Vec<LayerPlan>> {
    let pkgs = chunking::rpmdb_packages(repo, tree, scratch)?;
    let plans = chunking::plan(
        &tree.objects,
        &pkgs,
        chunking::rpmdb_dir(tree),
        opts.max_layers,
        &opts.changes,
    )?;
    tracing::info!(
        "{} packages, {} content objects → {} layers",
        pkgs.len(),
        tree.objects.len(),
        plans.len() + 1
    );
    Ok(plans)
}

/// The commit layer then one layer per plan, in that order, built in parallel.
fn build_layers(
    tree: &CommitTree,
    plans: &[LayerPlan],
    compression: Compression,
) -> Result<Vec<compress::Layer>> {
    // Biggest layers first, so the two cores finish together.
    let weight = |i: usize| -> u64 {
        match i {
            0 => tree.meta_objects.len() as u64 * 512,
            i => plans[i - 1]
                .objects
                .iter()
                .map(|o| tree.objects[o].size)
                .sum(),
        }
    };
    let mut order: Vec<usize> = (0..=plans.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(i)));
    let mut built: Vec<(usize, compress::Layer)> = order
        .par_iter()
        .map(|&i| {
            let layer = if i == 0 {
                compress::build_layer(compression, |w| write_commit_layer(tree, w))
                    .context("writing the commit layer")?
            } else {
                let p = &plans[i - 1];
                compress::build_layer(compression, |w| write_content_layer(tree, p, w))
                    .with_context(|| format!("writing layer {:?}", p.name))?
            };
            Ok((i, layer))
        })
        .collect::<Result<_>>()?;
    built.sort_by_key(|(i, _)| *i);
    Ok(built.into_iter().map(|(_, l)| l).collect())
}

/// Each layer's name in the image history.
fn layer_names(tree: &CommitTree, plans: &[LayerPlan]) -> Vec<String> {
    std::iter::once(format!("ostree commit {}", tree.commit))
        .chain(plans.iter().map(|p| p.name.clone()))
        .collect()
}

/// The labels (and manifest annotations): the commit's, and the last layer's diff_id.
fn image_labels(tree: &CommitTree, built: &[compress::Layer]) -> Result<HashMap<String, String>> {
    let mut labels = labels_of(tree);
    let last = built.last().context("no layers were built")?;
    labels.insert(
        labels::FINAL_DIFFID.to_string(),
        format!("sha256:{}", last.diff_id),
    );
    Ok(labels)
}

/// The image config; `created` is the commit's timestamp (reproducible).
fn image_config(
    tree: &CommitTree,
    arch: Arch,
    names: &[String],
    built: &[compress::Layer],
    labels: &HashMap<String, String>,
) -> Result<ImageConfiguration> {
    let created = chrono::DateTime::from_timestamp(tree.timestamp as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let history = names
        .iter()
        .map(|name| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(name.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = ConfigBuilder::default().labels(labels.clone()).build()?;
    if let Some(cmd) = tree.meta_lookup::<Vec<String>>("ostree.container-cmd") {
        config.set_cmd(Some(cmd));
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            built
                .iter()
                .map(|t| format!("sha256:{}", t.diff_id))
                .collect::<Vec<_>>(),
        )
        .build()?;
    Ok(ImageConfigurationBuilder::default()
        .created(created)
        .architecture(arch.oci_name())
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .history(history)
        .build()?)
}

/// The manifest's layer descriptors; a package layer names its packages.
fn layer_descriptors(
    plans: &[LayerPlan],
    built: &[compress::Layer],
    compression: Compression,
) -> Result<Vec<Descriptor>> {
    let media_type = match compression {
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
    };
    built
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut d = Descriptor::new(
                media_type.clone(),
                b.data.len() as u64,
                layout::sha256_digest(&b.digest)?,
            );
            if let Some(p) = i.checked_sub(1).map(|i| &plans[i]) {
                if !p.packages.is_empty() {
                    d.set_annotations(Some(HashMap::from([(
                        labels::COMPONENTS.to_string(),
                        p.packages.join(","),
                    )])));
                }
            }
            Ok(d)
        })
        .collect()
}

/// The package (NEVRA) owning each content object of `commit`, by the same rules
/// `encapsulate` packs with (the tree's rpmdb; first owner by name); `None` for
/// objects no package owns. For comparing packers: the container bench hands it to
/// ostree-ext as its content metadata.
pub fn object_owners(
    repo: &ostree::Repo,
    repo_path: &Path,
    commit: &str,
    scratch: &Path,
) -> Result<BTreeMap<String, Option<String>>> {
    let tree = CommitTree::load(repo, repo_path, commit)?;
    let mut pkgs = chunking::rpmdb_packages(repo, &tree, scratch)?;
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for p in &pkgs {
        for path in &p.paths {
            owner.entry(path.as_str()).or_insert(p.nevra.as_str());
        }
    }
    let mut out = BTreeMap::new();
    for o in tree.objects.values() {
        let first = o
            .paths
            .iter()
            .filter_map(|p| owner.get(p.as_str()).copied())
            .min_by_key(|nevra| pkgs.iter().position(|p| p.nevra == *nevra));
        out.insert(o.checksum.clone(), first.map(str::to_string));
    }
    Ok(out)
}
