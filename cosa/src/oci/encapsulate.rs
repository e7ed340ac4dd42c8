//! A commit as an ostree-native OCI archive, chunked by package, built in parallel.
//!
//! Reproducible: the same commit (and options) gives the same bytes. Entries carry
//! mtime 0 (as ostree checkouts do) and the image's `created` is the commit's
//! timestamp, so a layer whose packages did not change keeps its digest across builds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde_json::json;

use super::chunking::{self, LayerPlan};
use super::compress;
use super::labels;
use super::layer::LayerWriter;
use super::layout::{self, Descriptor, Index, Manifest};
use super::tree::{image_path, CommitTree};
use crate::oci::Compression;

pub struct EncapsulateOpts {
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

/// The OCI name of an architecture.
fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

fn labels_of(tree: &CommitTree) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
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
    arch: &str,
    opts: &EncapsulateOpts,
    scratch: &Path,
    dest: &Path,
) -> Result<Encapsulated> {
    let t0 = std::time::Instant::now();
    let tree = CommitTree::load(repo, repo_path, commit)?;
    tracing::debug!("walked the commit in {:.2} s", t0.elapsed().as_secs_f64());
    let pkgs = chunking::rpmdb_packages(repo, &tree, scratch)?;
    tracing::debug!("read the rpmdb at {:.2} s", t0.elapsed().as_secs_f64());
    let plans = chunking::plan(
        &tree.objects,
        &pkgs,
        chunking::rpmdb_dir(&tree),
        opts.max_layers,
        &opts.changes,
    )?;
    tracing::info!(
        "{} packages, {} content objects → {} layers",
        pkgs.len(),
        tree.objects.len(),
        plans.len() + 1
    );

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
                compress::build_layer(opts.compression, |w| write_commit_layer(&tree, w))
                    .context("writing the commit layer")?
            } else {
                let p = &plans[i - 1];
                compress::build_layer(opts.compression, |w| write_content_layer(&tree, p, w))
                    .with_context(|| format!("writing layer {:?}", p.name))?
            };
            Ok((i, layer))
        })
        .collect::<Result<_>>()?;
    built.sort_by_key(|(i, _)| *i);
    let layers_built: Vec<compress::Layer> = built.into_iter().map(|(_, l)| l).collect();
    tracing::debug!("built the layers at {:.2} s", t0.elapsed().as_secs_f64());

    let created = chrono::DateTime::from_timestamp(tree.timestamp as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut labels = labels_of(&tree);
    let last = layers_built.last().expect("the commit layer");
    labels.insert(
        labels::FINAL_DIFFID.to_string(),
        format!("sha256:{}", last.diff_id),
    );
    let layer_media = match opts.compression {
        Compression::Gzip => layout::MEDIA_LAYER_GZIP,
        Compression::Zstd => layout::MEDIA_LAYER_ZSTD,
    };
    let subject = format!("ostree commit {commit}");
    let mut history = Vec::new();
    let mut layers = Vec::new();
    for (i, b) in layers_built.iter().enumerate() {
        let (name, annotations) = match i {
            0 => (subject.clone(), None),
            i => {
                let p = &plans[i - 1];
                let ann = (!p.packages.is_empty()).then(|| {
                    BTreeMap::from([(labels::COMPONENTS.to_string(), p.packages.join(","))])
                });
                (p.name.clone(), ann)
            }
        };
        history.push(json!({"created": created, "created_by": name}));
        layers.push(Descriptor {
            media_type: layer_media.to_string(),
            digest: format!("sha256:{}", b.digest),
            size: b.data.len() as u64,
            annotations,
        });
    }
    let mut config = json!({
        "created": created,
        "architecture": oci_arch(arch),
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {
            "type": "layers",
            "diff_ids": layers_built.iter().map(|t| format!("sha256:{}", t.diff_id)).collect::<Vec<_>>(),
        },
        "history": history,
    });
    if let Some(cmd) = tree.meta_lookup::<Vec<String>>("ostree.container-cmd") {
        config["config"]["Cmd"] = json!(cmd);
    }
    let (config_desc, config_bytes) = layout::json_blob(layout::MEDIA_CONFIG, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(layout::MEDIA_MANIFEST.to_string()),
        config: config_desc.clone(),
        layers,
        annotations: Some(labels),
    };
    let (manifest_desc, manifest_bytes) = layout::json_blob(layout::MEDIA_MANIFEST, &manifest)?;
    let index = Index {
        schema_version: 2,
        manifests: vec![manifest_desc.clone()],
    };
    let hex = |d: &Descriptor| d.digest.trim_start_matches("sha256:").to_string();
    let mut sources: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let n_layers = layers_built.len();
    for b in layers_built {
        sources.insert(b.digest, b.data);
    }
    sources.insert(hex(&config_desc), config_bytes);
    sources.insert(hex(&manifest_desc), manifest_bytes.clone());
    let (sha256, size) = layout::write_archive(dest, &sources, &index)?;
    tracing::debug!("wrote the archive at {:.2} s", t0.elapsed().as_secs_f64());
    Ok(Encapsulated {
        sha256,
        size,
        manifest: manifest_bytes,
        manifest_digest: manifest_desc.digest,
        layers: n_layers,
    })
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
