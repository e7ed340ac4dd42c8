//! A derived image (FROM one of our ostree-native images, plus layers a container
//! build added) back into an ostree commit: the base commit is checked out, the
//! derived layers are applied on top with whiteouts honoured, and the result is
//! normalized to ostree's conventions and committed with the base as parent.
//!
//! Normalization: `/etc` goes to `/usr/etc`. `/var` stays empty in the commit (ostree
//! leaves /var to the machine, and podman cannot run an image whose commit has /var
//! content): directories and symlinks a layer makes under /var become tmpfiles.d
//! lines (systemd-tmpfiles recreates them at boot, which is all they declare), but
//! regular files under /var are refused with their paths named. A file there is state
//! (caches, logs, databases) that would be frozen into every machine's first boot and
//! then silently diverge; the image should install it under /usr and declare it with
//! tmpfiles.d itself. `/run`, `/tmp`, `/proc`, `/sys`, `/dev` and `/sysroot` are not
//! part of an ostree tree; what a layer puts there is dropped with a warning.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use glib::prelude::*;

use super::labels;
use super::layout::OciDir;
use cmdext::CommandRunExt;

/// Where a layer's own tmpfiles.d lines for /var go.
const TMPFILES_CONF: &str = "usr/lib/tmpfiles.d/cosa-import-var.conf";
/// Top-level directories that are not part of an ostree tree.
const DROPPED: &[&str] = &["run", "tmp", "proc", "sys", "dev", "sysroot"];
/// How many offending /var paths an error lists.
const MAX_LISTED: usize = 20;

/// Copy `image` (any `transport:reference` skopeo accepts) into the OCI layout `dest`.
pub fn fetch_image(image: &str, dest: &Path) -> Result<OciDir> {
    if !image.contains(':') {
        bail!(
            "{image:?}: expected transport:reference (oci-archive:PATH, oci:DIR, containers-storage:REF, dir:PATH)"
        );
    }
    Command::new("skopeo")
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

/// What applying the layers found that needs a decision at the end.
#[derive(Default)]
struct Applied {
    /// tmpfiles.d lines for /var directories and symlinks.
    var_lines: BTreeMap<String, String>,
    /// Regular files (and hardlinks) under /var: refused.
    var_files: BTreeSet<String>,
    dropped: BTreeSet<String>,
}

/// A tar path as a relative path of the tree: `./x`, `/x` → `x`; `etc` → `usr/etc`.
/// `..` is refused.
fn tree_relpath(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("layer entry {} leaves the tree", p.display())
            }
        }
    }
    Ok(match out.strip_prefix("etc") {
        Ok(rest) => Path::new("usr/etc").join(rest),
        Err(_) => out,
    })
}

/// Resolve `rel`'s parent directories inside `root` (symlinks are followed as if
/// `root` were `/`), so a layer can never write outside the tree.
fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = PathBuf::new();
    let mut todo: Vec<PathBuf> = rel
        .parent()
        .map(|p| {
            p.components()
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect()
        })
        .unwrap_or_default();
    todo.reverse();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c.as_os_str() == ".." {
            cur.pop();
            continue;
        }
        if c.as_os_str() == "." || c.as_os_str().is_empty() {
            continue;
        }
        let next = cur.join(&c);
        match root.join(&next).symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    bail!("too many symlinks resolving {}", rel.display());
                }
                let target = fs::read_link(root.join(&next))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                let mut parts: Vec<PathBuf> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(PathBuf::from(n)),
                        Component::ParentDir => Some(PathBuf::from("..")),
                        _ => None,
                    })
                    .collect();
                parts.reverse();
                todo.extend(parts);
            }
            _ => cur = next,
        }
    }
    Ok(match rel.file_name() {
        Some(n) => cur.join(n),
        None => cur,
    })
}

fn remove_any(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_context(|| format!("removing {}", p.display())),
        Err(_) => Ok(()),
    }
}

fn set_owner_mode(p: &Path, uid: u32, gid: u32, mode: u32, is_link: bool) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", p.display()))?;
    if !is_link {
        fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o7777))
            .with_context(|| format!("chmod {}", p.display()))?;
    }
    Ok(())
}

fn first_component(p: &Path) -> String {
    p.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Apply one layer tar onto `root`. Files are always replaced by new inodes, never
/// written in place: the base checkout's files are hardlinks into the repo.
fn apply_layer(root: &Path, r: impl Read, st: &mut Applied) -> Result<()> {
    let mut ar = tar::Archive::new(r);
    let mut written: HashSet<PathBuf> = HashSet::new();
    for entry in ar.entries().context("reading the layer")? {
        let mut e = entry.context("reading the layer")?;
        let raw = e.path()?.into_owned();
        let rel = tree_relpath(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let top = first_component(&rel);
        if DROPPED.contains(&top.as_str()) {
            if rel.components().count() > 1 || !name.starts_with(".wh.") {
                st.dropped.insert(format!("/{}", rel.display()));
            }
            continue;
        }
        let h = e.header().clone();
        let kind = h.entry_type();
        if top == "var" {
            if name.starts_with(".wh.") || rel == Path::new("var") || rel == Path::new("var/tmp") {
                continue;
            }
            let target = format!("/{}", rel.display());
            match kind {
                tar::EntryType::Directory => {
                    let line = format!(
                        "d {target} {:04o} {} {} - -",
                        h.mode()? & 0o7777,
                        h.uid()?,
                        h.gid()?
                    );
                    st.var_lines.insert(target, line);
                }
                tar::EntryType::Symlink => {
                    let to = e.link_name()?.unwrap_or_default();
                    st.var_lines.insert(
                        target.clone(),
                        format!("L {target} - - - - {}", to.display()),
                    );
                }
                _ => {
                    st.var_files.insert(target);
                }
            }
            continue;
        }
        let dest_rel = resolve_in_root(root, &rel)?;
        let dest = root.join(&dest_rel);
        if name == ".wh..wh..opq" {
            let dir = dest.parent().context("opaque whiteout at the root")?;
            if let Ok(rd) = fs::read_dir(dir) {
                for c in rd {
                    let c = c?.path();
                    if !written.contains(&c) {
                        remove_any(&c)?;
                    }
                }
            }
            continue;
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            remove_any(&dest.with_file_name(victim))?;
            continue;
        }
        if let Some(parent) = dest.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        let (uid, gid, mode) = (h.uid()? as u32, h.gid()? as u32, h.mode()?);
        match kind {
            tar::EntryType::Directory => {
                if !dest.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    remove_any(&dest)?;
                    fs::create_dir(&dest)
                        .with_context(|| format!("creating {}", dest.display()))?;
                }
                set_owner_mode(&dest, uid, gid, mode, false)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&dest)?;
                let mut f = fs::File::create(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                std::io::copy(&mut e, &mut f)
                    .with_context(|| format!("writing {}", dest.display()))?;
                drop(f);
                set_owner_mode(&dest, uid, gid, mode, false)?;
            }
            tar::EntryType::Symlink => {
                let to = e
                    .link_name()?
                    .with_context(|| format!("symlink {} has no target", raw.display()))?;
                remove_any(&dest)?;
                std::os::unix::fs::symlink(&to, &dest)
                    .with_context(|| format!("creating symlink {}", dest.display()))?;
                set_owner_mode(&dest, uid, gid, mode, true)?;
            }
            tar::EntryType::Link => {
                let to = e
                    .link_name()?
                    .with_context(|| format!("hardlink {} has no target", raw.display()))?;
                let to_rel = tree_relpath(&to)?;
                if first_component(&to_rel) == "var" {
                    st.var_files.insert(format!("/{}", rel.display()));
                    continue;
                }
                let src = root.join(resolve_in_root(root, &to_rel)?);
                remove_any(&dest)?;
                fs::hard_link(&src, &dest)
                    .with_context(|| format!("linking {} to {}", raw.display(), to.display()))?;
            }
            other => bail!(
                "layer entry {} is a {other:?}, which an ostree tree cannot hold",
                raw.display()
            ),
        }
        written.insert(dest);
    }
    Ok(())
}

/// The package list of the tree's rpmdb, as `rpmostree.rpmdb.pkglist` holds it.
fn rpmdb_pkglist(root: &Path, scratch: &Path) -> Result<Option<glib::Variant>> {
    let Some(db) = ["usr/lib/sysimage/rpm", "usr/share/rpm"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
    else {
        return Ok(None);
    };
    // A copy: the files may be hardlinks into the repo, and rpm may write beside them.
    let copy = scratch.join("rpmdb");
    fs::create_dir_all(&copy)?;
    for e in fs::read_dir(&db)? {
        let e = e?;
        if e.file_type()?.is_file() {
            fs::copy(e.path(), copy.join(e.file_name()))?;
        }
    }
    let out = Command::new("rpm")
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

/// Apply the derived layers of `img` onto its base commit in `repo` and commit the
/// result (parent: the base) with `version` as its version, under `refname`.
pub fn import_image(
    repo: &ostree::Repo,
    img: &OciDir,
    scratch: &Path,
    version: &str,
    timestamp: u64,
    refname: &str,
) -> Result<Imported> {
    let labels = img.labels();
    let Some(base) = labels.get(labels::COMMIT).cloned() else {
        bail!(
            "not an ostree-based image: it has no {} label (only images built FROM an ostree-native base, e.g. one `cosa build-container` made, can be imported)",
            labels::COMMIT
        );
    };
    let diff_ids = img.diff_ids();
    let layers = &img.manifest.layers;
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
    if !repo.has_object(ostree::ObjectType::Commit, &base, gio::Cancellable::NONE)? {
        bail!(
            "the image's base commit {base} is not in this workdir's repo: import images built FROM this workdir's builds"
        );
    }

    let root = scratch.join("root");
    let devino = ostree::RepoDevInoCache::new();
    let opts = ostree::RepoCheckoutAtOptions {
        no_copy_fallback: true,
        devino_to_csum_cache: Some(devino.clone()),
        ..Default::default()
    };
    repo.checkout_at(
        Some(&opts),
        libc::AT_FDCWD,
        &root,
        &base,
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("checking out base commit {base}"))?;

    let mut st = Applied::default();
    for (i, d) in derived.iter().enumerate() {
        tracing::info!("applying layer {} ({})", i + 1, d.digest);
        let r = img.open_layer(d)?;
        apply_layer(&root, r, &mut st)
            .with_context(|| format!("applying layer {} ({})", base_end + 2 + i, d.digest))?;
    }
    if !st.var_files.is_empty() {
        let n = st.var_files.len();
        let listed: Vec<&str> = st
            .var_files
            .iter()
            .take(MAX_LISTED)
            .map(String::as_str)
            .collect();
        bail!(
            "the image has {n} file(s) under /var, which an ostree commit keeps empty: {}{}\n\
             Install them under /usr and declare them in tmpfiles.d (e.g. `C /var/x - - - - /usr/share/factory/var/x`), or remove them in the same RUN step.",
            listed.join(", "),
            if n > MAX_LISTED { ", …" } else { "" }
        );
    }
    if !st.dropped.is_empty() {
        let listed: Vec<&str> = st
            .dropped
            .iter()
            .take(MAX_LISTED)
            .map(String::as_str)
            .collect();
        tracing::warn!(
            "dropped {} path(s) that are not part of an ostree tree: {}",
            st.dropped.len(),
            listed.join(", ")
        );
    }
    if !st.var_lines.is_empty() {
        let conf = root.join(TMPFILES_CONF);
        let mut lines: BTreeSet<String> = fs::read_to_string(&conf)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default();
        lines.extend(st.var_lines.values().cloned());
        fs::create_dir_all(conf.parent().expect("has a parent"))?;
        remove_any(&conf)?;
        let text: Vec<String> = lines.into_iter().collect();
        fs::write(&conf, text.join("\n") + "\n")?;
    }

    let (basev, _) = repo.load_commit(&base)?;
    let meta = glib::VariantDict::new(Some(&basev.child_value(0)));
    meta.insert("version", version);
    if let Some(pkglist) = rpmdb_pkglist(&root, scratch)? {
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
    modifier.set_devino_cache(&devino);
    let tree = crate::compose::commit::write_tree(repo, &root, &modifier)?;
    let commit = repo
        .write_commit_with_time(
            Some(&base),
            Some(version),
            None,
            Some(&meta.end()),
            &tree,
            timestamp,
            gio::Cancellable::NONE,
        )
        .context("writing the commit")?;
    repo.transaction_set_ref(None, refname, Some(&commit));
    tx.commit(gio::Cancellable::NONE)
        .context("committing the transaction")?;
    Ok(Imported {
        commit: commit.to_string(),
        base_commit: base,
        labels,
        derived_layers: derived.len(),
        tmpfiles_lines: st.var_lines.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn nlink(p: &Path) -> u64 {
        p.symlink_metadata().map(|m| m.nlink()).unwrap_or(0)
    }

    fn layer(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            if link.is_empty() {
                b.append_data(&mut h, path, *data).unwrap();
            } else {
                b.append_link(&mut h, path, link).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(
            tree_relpath(Path::new("./etc/foo")).unwrap(),
            Path::new("usr/etc/foo")
        );
        assert_eq!(
            tree_relpath(Path::new("/usr/bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(tree_relpath(Path::new("etcx")).unwrap(), Path::new("etcx"));
        assert!(tree_relpath(Path::new("usr/../../x")).is_err());
    }

    #[test]
    fn layers_apply_with_whiteouts_and_var_policy() {
        use tar::EntryType::*;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("usr/etc")).unwrap();
        fs::create_dir_all(root.join("usr/share/old")).unwrap();
        fs::write(root.join("usr/share/old/a"), "a").unwrap();
        fs::write(root.join("usr/etc/gone"), "x").unwrap();
        fs::write(t.path().join("outside"), "o").unwrap();
        let shared = root.join("usr/etc/shared");
        fs::write(&shared, "base").unwrap();
        let other = t.path().join("repo-object");
        fs::hard_link(&shared, &other).unwrap();
        std::os::unix::fs::symlink("/", root.join("usr/escape")).unwrap();
        let tarball = layer(&[
            ("etc/new.conf", Regular, b"new", ""),
            ("etc/.wh.gone", Regular, b"", ""),
            ("etc/shared", Regular, b"changed", ""),
            ("usr/share/old/.wh..wh..opq", Regular, b"", ""),
            ("usr/share/old/b", Regular, b"b", ""),
            ("usr/escape/outside", Regular, b"pwned", ""),
            ("var/lib/foo", Directory, b"", ""),
            ("var/tmp", Directory, b"", ""),
            ("run/x", Regular, b"", ""),
            ("usr/bin/link", Link, b"", "etc/new.conf"),
        ]);
        let mut st = Applied::default();
        apply_layer(&root, tarball.as_slice(), &mut st).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("usr/etc/new.conf")).unwrap(),
            "new"
        );
        assert!(!root.join("usr/etc/gone").exists());
        assert!(!root.join("usr/share/old/a").exists());
        assert!(root.join("usr/share/old/b").exists());
        // The hardlinked base file was replaced, not written through.
        assert_eq!(fs::read_to_string(&other).unwrap(), "base");
        assert_eq!(nlink(&root.join("usr/etc/shared")), 1);
        // A symlink to / resolves inside the root.
        assert_eq!(fs::read_to_string(t.path().join("outside")).unwrap(), "o");
        assert_eq!(fs::read_to_string(root.join("outside")).unwrap(), "pwned");
        assert_eq!(nlink(&root.join("usr/bin/link")), 2);
        assert_eq!(
            st.var_lines.values().cloned().collect::<Vec<_>>(),
            ["d /var/lib/foo 0755 0 0 - -"]
        );
        assert!(st.var_files.is_empty());
        assert!(st.dropped.contains("/run/x"));

        let mut st = Applied::default();
        apply_layer(
            &root,
            layer(&[("var/cache/x", Regular, b"x", "")]).as_slice(),
            &mut st,
        )
        .unwrap();
        assert!(st.var_files.contains("/var/cache/x"));
        assert!(!root.join("var/cache/x").exists());
    }
}
