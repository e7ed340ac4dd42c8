//! Writing trees into the workdir's repo: config layers and the final commit with
//! the metadata rpm-ostree clients read (`version`, `rpmostree.inputhash`,
//! `rpmostree.rpmdb.pkglist`, `ostree.bootable`, `ostree.linux`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use glib::prelude::*;

use super::dnf::Package;

pub(crate) fn write_tree(
    repo: &ostree::Repo,
    dir: &Path,
    modifier: &ostree::RepoCommitModifier,
) -> Result<ostree::RepoFile> {
    let mtree = ostree::MutableTree::new();
    repo.write_directory_to_mtree(
        &gio::File::for_path(dir),
        &mtree,
        Some(modifier),
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("writing {} into the repo", dir.display()))?;
    write_mtree(repo, &mtree)
}

/// Write a mutable tree's objects; returns its root (within a transaction).
pub fn write_mtree(repo: &ostree::Repo, mtree: &ostree::MutableTree) -> Result<ostree::RepoFile> {
    let root = repo.write_mtree(mtree, gio::Cancellable::NONE)?;
    root.downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("write_mtree returned no RepoFile"))
}

/// Commit a config directory (overlay, overrides/rootfs) as ref `name`: owned by root,
/// permissions canonical, timestamp 0, so equal content gives an equal commit.
/// Returns the commit and its content checksum.
pub fn commit_layer(repo: &ostree::Repo, dir: &Path, name: &str) -> Result<(String, String)> {
    let tx = repo.auto_transaction(gio::Cancellable::NONE)?;
    let modifier = ostree::RepoCommitModifier::new(
        ostree::RepoCommitModifierFlags::CANONICAL_PERMISSIONS
            | ostree::RepoCommitModifierFlags::SKIP_XATTRS,
        None,
    );
    let root = write_tree(repo, dir, &modifier)?;
    let content = content_checksum(&root)?;
    let c = repo.write_commit_with_time(
        None,
        Some(name),
        None,
        None,
        &root,
        0,
        gio::Cancellable::NONE,
    )?;
    repo.transaction_set_ref(None, name, Some(&c));
    tx.commit(gio::Cancellable::NONE)
        .with_context(|| format!("committing layer {name} from {}", dir.display()))?;
    Ok((c.to_string(), content))
}

fn content_checksum(root: &ostree::RepoFile) -> Result<String> {
    root.ensure_resolved()?;
    Ok(root
        .tree_get_contents_checksum()
        .map(|s| s.to_string())
        .unwrap_or_default()
        + &root
            .tree_get_metadata_checksum()
            .map(|s| s.to_string())
            .unwrap_or_default())
}

/// What goes into the build's commit besides the tree.
pub struct CommitMeta<'a> {
    pub version: &'a str,
    pub inputhash: &'a str,
    pub packages: &'a [Package],
    pub kernel: Option<&'a str>,
    pub extra: &'a BTreeMap<String, serde_json::Value>,
    pub parent: Option<&'a str>,
    pub timestamp: u64,
}

fn json_to_variant(v: &serde_json::Value) -> glib::Variant {
    use serde_json::Value;
    match v {
        Value::Bool(b) => b.to_variant(),
        Value::String(s) => s.to_variant(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_variant(),
            None => n.as_f64().unwrap_or_default().to_variant(),
        },
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .to_variant(),
        other => other.to_string().to_variant(),
    }
}

fn metadata(m: &CommitMeta) -> glib::Variant {
    let d = glib::VariantDict::new(None);
    for (k, v) in m.extra {
        d.insert_value(k, &json_to_variant(v));
    }
    d.insert("version", m.version);
    d.insert("rpmostree.inputhash", m.inputhash);
    let pkglist: Vec<(String, u64, String, String, String)> = m
        .packages
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.epoch,
                p.version.clone(),
                p.release.clone(),
                p.arch.clone(),
            )
        })
        .collect();
    d.insert_value("rpmostree.rpmdb.pkglist", &pkglist.to_variant());
    d.insert("ostree.bootable", m.kernel.is_some());
    if let Some(k) = m.kernel {
        d.insert("ostree.linux", k);
    }
    d.end()
}

pub struct Committed {
    pub commit: String,
    pub content_checksum: String,
}

/// The xattr this compose keeps: file capabilities. Names are NUL-terminated in
/// ostree's xattr variants.
const CAPABILITY_XATTR: &str = "security.capability";

/// The xattrs to commit for `path` (relative to the tree's root, as ostree passes
/// it): its capabilities if it is one of `caps`, else none (the host's labels and
/// other xattrs are not part of the OS).
fn commit_xattrs(
    rootfs: &Path,
    caps: &std::collections::HashSet<String>,
    path: &str,
) -> glib::Variant {
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let rel = path.trim_start_matches('/');
    if caps.contains(rel) {
        let mut buf = [0u8; 256];
        if let Ok(n) = rustix::fs::lgetxattr(rootfs.join(rel), CAPABILITY_XATTR, &mut buf) {
            let mut name = CAPABILITY_XATTR.as_bytes().to_vec();
            name.push(0);
            xattrs.push((name, buf[..n].to_vec()));
        }
    }
    xattrs.to_variant()
}

/// Commit the assembled tree. Files hardlinked from the cache are not read again:
/// the devino cache gives their checksums. `caps` are the paths given capabilities.
pub fn commit_tree(
    repo: &ostree::Repo,
    rootfs: &Path,
    devino: &ostree::RepoDevInoCache,
    caps: &[String],
    refname: &str,
    m: &CommitMeta,
) -> Result<Committed> {
    let tx = repo.auto_transaction(gio::Cancellable::NONE)?;
    let modifier = ostree::RepoCommitModifier::new(
        // DEVINO_CANONICAL: a devino hit is a cache object as the package has it; without
        // it libostree ignores hits whenever a modifier flag is set.
        ostree::RepoCommitModifierFlags::SKIP_XATTRS
            | ostree::RepoCommitModifierFlags::DEVINO_CANONICAL,
        None,
    );
    modifier.set_devino_cache(devino);
    let caps: std::collections::HashSet<String> = caps
        .iter()
        .map(|p| p.trim_start_matches('/').to_string())
        .collect();
    if !caps.is_empty() {
        let root = rootfs.to_path_buf();
        modifier.set_xattr_callback(move |_, path, _| commit_xattrs(&root, &caps, path));
    }

    let root = write_tree(repo, rootfs, &modifier)?;
    let content_checksum = content_checksum(&root)?;
    let commit = repo
        .write_commit_with_time(
            m.parent,
            Some(m.version),
            None,
            Some(&metadata(m)),
            &root,
            m.timestamp,
            gio::Cancellable::NONE,
        )
        .context("writing the commit")?;
    repo.transaction_set_ref(None, refname, Some(&commit));
    let stats = tx
        .commit(gio::Cancellable::NONE)
        .context("committing the transaction")?;
    tracing::info!(
        "commit {commit}: {} of {} content objects written, {} devino cache hits",
        stats.get_content_objects_written(),
        stats.get_content_objects_total(),
        stats.get_devino_cache_hits()
    );
    Ok(Committed {
        commit: commit.to_string(),
        content_checksum,
    })
}

/// The commit's metadata as JSON (for `commitmeta.json`).
pub fn commit_metadata_json(repo: &ostree::Repo, commit: &str) -> Result<serde_json::Value> {
    let (c, _) = repo.load_commit(commit)?;
    let meta = c.child_value(0);
    let mut out = serde_json::Map::new();
    for entry in meta.iter() {
        let k: String = entry.child_value(0).get().unwrap_or_default();
        let v = entry
            .child_value(1)
            .as_variant()
            .unwrap_or_else(|| entry.child_value(1));
        out.insert(k, variant_to_json(&v));
    }
    Ok(serde_json::Value::Object(out))
}

fn variant_to_json(v: &glib::Variant) -> serde_json::Value {
    use serde_json::Value;
    if let Some(s) = v.str() {
        return Value::String(s.to_string());
    }
    if let Some(b) = v.get::<bool>() {
        return Value::Bool(b);
    }
    if let Some(i) = v.get::<i64>() {
        return Value::from(i);
    }
    if let Some(u) = v.get::<u64>() {
        return Value::from(u);
    }
    if let Some(f) = v.get::<f64>() {
        return Value::from(f);
    }
    if v.is_container() {
        return Value::Array(v.iter().map(|c| variant_to_json(&c)).collect());
    }
    Value::String(v.print(true).to_string())
}
