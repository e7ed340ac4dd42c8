//! Applying a derived image's layer tars onto a checkout of its base commit, with
//! whiteouts honoured, `/etc` moved to `/usr/etc`, and `/var` and the non-tree
//! top-level directories set aside (see the module above for the policy).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use fs_err as fs;

/// Top-level directories that are not part of an ostree tree.
const DROPPED: &[&str] = &["run", "tmp", "proc", "sys", "dev", "sysroot"];

/// What applying the layers found that needs a decision at the end.
#[derive(Default)]
pub struct Applied {
    /// tmpfiles.d lines for /var directories and symlinks.
    pub var_lines: BTreeMap<String, String>,
    /// Regular files (and hardlinks) under /var: refused.
    pub var_files: BTreeSet<String>,
    pub dropped: BTreeSet<String>,
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

/// Remove whatever `p` is (nothing if it does not exist).
pub fn remove_any(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => Ok(fs::remove_dir_all(p)?),
        Ok(_) => Ok(fs::remove_file(p)?),
        Err(_) => Ok(()),
    }
}

fn set_owner_mode(p: &Path, uid: u32, gid: u32, mode: u32, is_link: bool) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", p.display()))?;
    if !is_link {
        fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))?;
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
pub fn apply_layer(root: &Path, r: impl Read, st: &mut Applied) -> Result<()> {
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
        if top == "var" {
            record_var_entry(&rel, &name, &e, st)?;
            continue;
        }
        let dest = root.join(resolve_in_root(root, &rel)?);
        if name == ".wh..wh..opq" {
            let dir = dest.parent().context("opaque whiteout at the root")?;
            clear_dir_except(dir, &written)?;
            continue;
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            remove_any(&dest.with_file_name(victim))?;
            continue;
        }
        if write_entry(root, &rel, &dest, &mut e, st)
            .with_context(|| format!("applying {}", raw.display()))?
        {
            written.insert(dest);
        }
    }
    Ok(())
}

/// A /var entry: directories and symlinks become tmpfiles.d lines, anything else is
/// refused at the end; whiteouts, /var and /var/tmp themselves are ignored.
fn record_var_entry<R: Read>(
    rel: &Path,
    name: &str,
    e: &tar::Entry<R>,
    st: &mut Applied,
) -> Result<()> {
    if name.starts_with(".wh.") || rel == Path::new("var") || rel == Path::new("var/tmp") {
        return Ok(());
    }
    let h = e.header();
    let target = format!("/{}", rel.display());
    match h.entry_type() {
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
            let line = format!("L {target} - - - - {}", to.display());
            st.var_lines.insert(target, line);
        }
        _ => {
            st.var_files.insert(target);
        }
    }
    Ok(())
}

/// An opaque whiteout: empty `dir` of all but what this layer wrote.
fn clear_dir_except(dir: &Path, written: &HashSet<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for c in fs::read_dir(dir)? {
        let c = c?.path();
        if !written.contains(&c) {
            remove_any(&c)?;
        }
    }
    Ok(())
}

/// Write one tree entry at `dest` (`rel` resolved inside `root`). Returns false when
/// it was set aside instead (a hardlink into /var).
fn write_entry<R: Read>(
    root: &Path,
    rel: &Path,
    dest: &Path,
    e: &mut tar::Entry<R>,
    st: &mut Applied,
) -> Result<bool> {
    if let Some(parent) = dest.parent() {
        if !parent.exists() {
            fs::create_dir_all(parent)?;
        }
    }
    let h = e.header();
    let (uid, gid, mode) = (h.uid()? as u32, h.gid()? as u32, h.mode()?);
    match h.entry_type() {
        tar::EntryType::Directory => {
            if !dest.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                remove_any(dest)?;
                fs::create_dir(dest)?;
            }
            set_owner_mode(dest, uid, gid, mode, false)?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            remove_any(dest)?;
            let mut f = fs::File::create(dest)?;
            std::io::copy(e, &mut f).with_context(|| format!("writing {}", dest.display()))?;
            drop(f);
            set_owner_mode(dest, uid, gid, mode, false)?;
        }
        tar::EntryType::Symlink => {
            let to = e.link_name()?.context("a symlink without a target")?;
            remove_any(dest)?;
            std::os::unix::fs::symlink(&to, dest)
                .with_context(|| format!("creating symlink {}", dest.display()))?;
            set_owner_mode(dest, uid, gid, mode, true)?;
        }
        tar::EntryType::Link => {
            let to = e.link_name()?.context("a hardlink without a target")?;
            let to_rel = tree_relpath(&to)?;
            if first_component(&to_rel) == "var" {
                st.var_files.insert(format!("/{}", rel.display()));
                return Ok(false);
            }
            let src = root.join(resolve_in_root(root, &to_rel)?);
            remove_any(dest)?;
            fs::hard_link(&src, dest)?;
        }
        other => bail!("a {other:?}, which an ostree tree cannot hold"),
    }
    Ok(true)
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
