//! A derived image onto its base commit, as a new commit: the steps of
//! [`import_image`], from checking the image to writing the commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use glib::prelude::*;
use oci_spec::image::Descriptor;

use super::layers::{apply_layer, remove_any, Applied};
use crate::oci::labels;
use crate::oci::layout::OciDir;
use cmdext::CommandRunExt;

/// Where a layer's own tmpfiles.d lines for /var go.
const TMPFILES_CONF: &str = "usr/lib/tmpfiles.d/cosa-import-var.conf";
/// How many offending /var paths an error lists.
const MAX_LISTED: usize = 20;

/// Copy `image` (any `transport:reference` skopeo accepts) into the OCI layout `dest`.
pub fn fetch_image(image: &str, dest: &Path) -> Result<OciDir> {
    if !image.contains(':') {
        bail!(
            "{image:?}: expected transport:reference (oci-archive:PATH, oci:DIR, containers-storage:REF, dir:PATH)"
        );
    }
    cmdext::command("skopeo")
        .args(["copy", "--quiet", image])
        .arg(format!("oci:{}", dest.display()))
        .run()
        .with_context(|| format!("reading image {image}"))?;
    OciDir::open(dest).with_context(|| format!("reading image {image}"))
}

/// The outcome of applying a derived image.
pub struct Imported {
    pub commit: String,
    pub base_commit: String,
    pub labels: BTreeMap<String, String>,
    pub derived_layers: usize,
    pub tmpfiles_lines: usize,
}

/// The new commit's identity.
pub struct CommitSpec<'a> {
    /// The OS name (the base build's), which the tree's SBOM names.
    pub name: &'a str,
    pub arch: &'a str,
    pub version: &'a str,
    pub timestamp: u64,
    pub refname: &'a str,
}

/// Apply the derived layers of `img` onto its base commit in `repo` and commit the
/// result (parent: the base) with `spec.version` as its version, under `spec.refname`.
pub fn import_image(
    repo: &ostree::Repo,
    img: &OciDir,
    scratch: &Path,
    spec: &CommitSpec,
) -> Result<Imported> {
    let labels = img.labels();
    let base = base_commit(repo, &labels)?;
    let (first, derived) = derived_layers(img, &labels, &base)?;
    let root = scratch.join("root");
    let devino = checkout_base(repo, &base, &root)?;
    let applied = apply_derived_layers(img, &root, first, derived)?;
    refuse_var_files(&applied)?;
    warn_dropped(&applied);
    write_var_tmpfiles(&root, &applied)?;
    write_sbom(&root, img, scratch, spec)?;
    let commit = commit_root(repo, &root, &base, &devino, scratch, spec)?;
    Ok(Imported {
        commit,
        base_commit: base,
        labels,
        derived_layers: derived.len(),
        tmpfiles_lines: applied.var_lines.len(),
    })
}

/// The image's base commit (its `ostree.commit` label), which must be in `repo`.
fn base_commit(repo: &ostree::Repo, labels: &BTreeMap<String, String>) -> Result<String> {
    let Some(base) = labels.get(labels::COMMIT).cloned() else {
        bail!(
            "not an ostree-based image: it has no {} label (only images built FROM an ostree-native base, e.g. one `cosa build-container` made, can be imported)",
            labels::COMMIT
        );
    };
    if !repo.has_object(ostree::ObjectType::Commit, &base, gio::Cancellable::NONE)? {
        bail!(
            "the image's base commit {base} is not in this workdir's repo: import images built FROM this workdir's builds"
        );
    }
    Ok(base)
}

/// The layers after the base's last (`ostree.final-diffid`), and the index of the
/// first of them.
fn derived_layers<'a>(
    img: &'a OciDir,
    labels: &BTreeMap<String, String>,
    base: &str,
) -> Result<(usize, &'a [Descriptor])> {
    let diff_ids = img.diff_ids();
    let layers = img.manifest.layers();
    if diff_ids.len() != layers.len() {
        bail!(
            "invalid image: {} layers but {} diff_ids in its config",
            layers.len(),
            diff_ids.len()
        );
    }
    let base_end = match labels.get(labels::FINAL_DIFFID) {
        Some(d) => diff_ids.iter().position(|x| x == d).with_context(|| {
            format!(
                "invalid image: its {} {d} is not one of its layers",
                labels::FINAL_DIFFID
            )
        })?,
        None => 0,
    };
    let derived = &layers[base_end + 1..];
    if derived.is_empty() {
        bail!("the image adds nothing to its base commit {base}: it has no layers of its own");
    }
    Ok((base_end + 1, derived))
}

/// Check `base` out at `root` as hardlinks into the repo; the returned cache lets the
/// commit recognize the files left unchanged.
fn checkout_base(repo: &ostree::Repo, base: &str, root: &Path) -> Result<ostree::RepoDevInoCache> {
    let devino = ostree::RepoDevInoCache::new();
    let opts = ostree::RepoCheckoutAtOptions {
        no_copy_fallback: true,
        devino_to_csum_cache: Some(devino.clone()),
        ..Default::default()
    };
    repo.checkout_at(
        Some(&opts),
        libc::AT_FDCWD,
        root,
        base,
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("checking out base commit {base}"))?;
    Ok(devino)
}

/// Apply `derived` (layer `first` onwards of the image) onto `root`, in order.
fn apply_derived_layers(
    img: &OciDir,
    root: &Path,
    first: usize,
    derived: &[Descriptor],
) -> Result<Applied> {
    let mut applied = Applied::default();
    for (i, d) in derived.iter().enumerate() {
        tracing::info!("applying layer {} ({})", i + 1, d.digest());
        let r = img.open_layer(d)?;
        apply_layer(root, r, &mut applied)
            .with_context(|| format!("applying layer {} ({})", first + 1 + i, d.digest()))?;
    }
    Ok(applied)
}

fn first_listed(paths: &BTreeSet<String>) -> String {
    let listed: Vec<&str> = paths.iter().take(MAX_LISTED).map(String::as_str).collect();
    listed.join(", ")
        + if paths.len() > MAX_LISTED {
            ", …"
        } else {
            ""
        }
}

/// Regular files under /var are state that would be frozen into every machine's
/// first boot: refuse them, naming them.
fn refuse_var_files(applied: &Applied) -> Result<()> {
    if applied.var_files.is_empty() {
        return Ok(());
    }
    bail!(
        "the image has {} file(s) under /var, which an ostree commit keeps empty: {}\n\
         Install them under /usr and declare them in tmpfiles.d (e.g. `C /var/x - - - - /usr/share/factory/var/x`), or remove them in the same RUN step.",
        applied.var_files.len(),
        first_listed(&applied.var_files)
    )
}

fn warn_dropped(applied: &Applied) {
    if !applied.dropped.is_empty() {
        tracing::warn!(
            "dropped {} path(s) that are not part of an ostree tree: {}",
            applied.dropped.len(),
            first_listed(&applied.dropped)
        );
    }
}

/// Add the layers' /var directories and symlinks to the tree's own tmpfiles.d file.
fn write_var_tmpfiles(root: &Path, applied: &Applied) -> Result<()> {
    if applied.var_lines.is_empty() {
        return Ok(());
    }
    let conf = root.join(TMPFILES_CONF);
    let mut lines: BTreeSet<String> = fs::read_to_string(&conf)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default();
    lines.extend(applied.var_lines.values().cloned());
    if let Some(dir) = conf.parent() {
        fs::create_dir_all(dir)?;
    }
    // Replaced, not written through: it may be a hardlink into the repo.
    remove_any(&conf)?;
    let text: Vec<String> = lines.into_iter().collect();
    fs::write(&conf, text.join("\n") + "\n")?;
    Ok(())
}

/// The derived tree's SBOM, from its rpmdb, in place of the base's (the derived
/// layers may have installed or removed packages). Its identity is the image's
/// layers (a digest over their diff IDs).
fn write_sbom(root: &Path, img: &OciDir, scratch: &Path, spec: &CommitSpec) -> Result<()> {
    use sha2::Digest;
    let layers = hex::encode(sha2::Sha256::digest(img.diff_ids().join("\n")));
    let subject = crate::sbom::Subject {
        name: spec.name,
        version: spec.version,
        arch: spec.arch,
        identity: &layers,
        origin: format!("imported from a container image (layers {layers})"),
        timestamp: spec.timestamp,
    };
    if let Some(doc) = crate::sbom::for_tree(root, &subject, scratch)
        .context("making the SBOM of the imported tree")?
    {
        crate::sbom::write_into_tree(root, &doc)?;
    }
    Ok(())
}

/// Commit `root` with `base` as parent and its metadata, updated with the version and
/// the new rpmdb's package list.
fn commit_root(
    repo: &ostree::Repo,
    root: &Path,
    base: &str,
    devino: &ostree::RepoDevInoCache,
    scratch: &Path,
    spec: &CommitSpec,
) -> Result<String> {
    let (basev, _) = repo.load_commit(base)?;
    let meta = glib::VariantDict::new(Some(&basev.child_value(0)));
    meta.insert("version", spec.version);
    if let Some(pkglist) = rpmdb_pkglist(root, scratch)? {
        meta.insert_value("rpmostree.rpmdb.pkglist", &pkglist);
    }
    let tx = repo.auto_transaction(gio::Cancellable::NONE)?;
    // The unchanged files are hardlinks into the repo: let the commit recognize them
    // by device/inode instead of reading them again (a repo-wide scan is cheap next to
    // re-checksumming a whole OS; see bench/RESULTS.md, compose).
    repo.scan_hardlinks(gio::Cancellable::NONE)
        .context("scanning the repo for hardlinks")?;
    let modifier =
        ostree::RepoCommitModifier::new(ostree::RepoCommitModifierFlags::SKIP_XATTRS, None);
    modifier.set_devino_cache(devino);
    let tree = crate::compose::commit::write_tree(repo, root, &modifier)?;
    let commit = repo
        .write_commit_with_time(
            Some(base),
            Some(spec.version),
            None,
            Some(&meta.end()),
            &tree,
            spec.timestamp,
            gio::Cancellable::NONE,
        )
        .context("writing the commit")?;
    repo.transaction_set_ref(None, spec.refname, Some(&commit));
    tx.commit(gio::Cancellable::NONE)
        .context("committing the transaction")?;
    Ok(commit.to_string())
}

/// The package list of the tree's rpmdb, as `rpmostree.rpmdb.pkglist` holds it.
fn rpmdb_pkglist(root: &Path, scratch: &Path) -> Result<Option<glib::Variant>> {
    let Some(copy) = crate::sbom::copy_tree_rpmdb(root, &scratch.join("rpmdb"))? else {
        return Ok(None);
    };
    let out = cmdext::command("rpm")
        .arg("--dbpath")
        .arg(&copy)
        .args([
            "-qa",
            "--qf",
            "%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n",
        ])
        .run_get_string()
        .context("reading the tree's rpmdb")?;
    let mut list: Vec<(String, u64, String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let [n, e, v, r, a] = f.as_slice() else {
                return None;
            };
            Some((
                n.to_string(),
                e.parse().unwrap_or(0),
                v.to_string(),
                r.to_string(),
                a.to_string(),
            ))
        })
        .collect();
    list.sort();
    Ok(Some(list.to_variant()))
}
