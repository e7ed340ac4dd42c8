//! `--ostree` and the initramfs of a commit: walks of the commits' dirtree objects.
//!
//! `ostree::diff_dirs` would do the walk, but its generated binding passes the three
//! result arrays in as copies of Rust slices, so what libostree adds to them never
//! comes back; the walk here reads the same objects through the crate (`read_commit`,
//! `load_variant`) and skips every subtree whose dirtree checksum is equal, as
//! libostree's does.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use gio::prelude::{Cast, InputStreamExtManual};
use serde::{Deserialize, Serialize};

use super::Lines;

/// Paths (absolute in the commit's tree) added, removed and modified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PathsDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

impl PathsDiff {
    pub(super) fn lines(&self) -> Lines {
        let mut l = Lines::new();
        for (list, mark) in [
            (&self.removed, '-'),
            (&self.added, '+'),
            (&self.modified, '~'),
        ] {
            l.extend(list.iter().map(|p| (p.clone(), format!("{mark} {p}"))));
        }
        l
    }
}

/// Open the workdir's repo, which must exist (unlike the compose's `open_repo`, this
/// creates nothing).
pub fn open_repo(path: &Path) -> Result<ostree::Repo> {
    let repo = ostree::Repo::new_for_path(path);
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("opening ostree repo {}", path.display()))?;
    Ok(repo)
}

/// An entry of a dirtree object.
#[derive(Debug, PartialEq)]
enum Node {
    /// A file or symlink: its content object.
    File(String),
    /// A directory: its dirtree and dirmeta objects.
    Dir { tree: String, meta: String },
}

/// The dirtree and dirmeta checksums of a commit's root.
fn root_of(repo: &ostree::Repo, commit: &str) -> Result<(String, String)> {
    let (root, _) = repo
        .read_commit(commit, gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {commit}"))?;
    let root = root
        .downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow!("commit {commit}: its root is not in a repo"))?;
    let tree = root.tree_get_contents_checksum();
    let meta = root.tree_get_metadata_checksum();
    match (tree, meta) {
        (Some(t), Some(m)) => Ok((t.to_string(), m.to_string())),
        _ => bail!("commit {commit}: its root has no dirtree"),
    }
}

/// The entries of the dirtree object `tree`, by name.
fn entries(repo: &ostree::Repo, tree: &str) -> Result<BTreeMap<String, Node>> {
    let v = repo
        .load_variant(ostree::ObjectType::DirTree, tree)
        .with_context(|| format!("loading dirtree {tree}"))?;
    let name = |e: &glib::Variant| -> Result<String> {
        e.child_value(0)
            .get::<String>()
            .with_context(|| format!("dirtree {tree}: an entry without a name"))
    };
    let csum = |e: &glib::Variant, i: usize| hex::encode(e.child_value(i).data());
    let mut out = BTreeMap::new();
    for f in v.child_value(0).iter() {
        out.insert(name(&f)?, Node::File(csum(&f, 1)));
    }
    for d in v.child_value(1).iter() {
        let node = Node::Dir {
            tree: csum(&d, 1),
            meta: csum(&d, 2),
        };
        out.insert(name(&d)?, node);
    }
    Ok(out)
}

/// The paths that differ between the trees of commits `from` and `to`.
pub fn commit_diff(repo: &ostree::Repo, from: &str, to: &str) -> Result<PathsDiff> {
    let (ta, ma) = root_of(repo, from)?;
    let (tb, mb) = root_of(repo, to)?;
    let mut d = PathsDiff::default();
    if ma != mb {
        d.modified.push("/".into());
    }
    walk(repo, "", &ta, &tb, &mut d)?;
    d.added.sort();
    d.removed.sort();
    d.modified.sort();
    Ok(d)
}

fn walk(repo: &ostree::Repo, path: &str, a: &str, b: &str, d: &mut PathsDiff) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let (ea, eb) = (entries(repo, a)?, entries(repo, b)?);
    for (name, na) in &ea {
        let p = format!("{path}/{name}");
        match (na, eb.get(name)) {
            (_, None) => d.removed.push(p),
            (Node::File(x), Some(Node::File(y))) => {
                if x != y {
                    d.modified.push(p);
                }
            }
            (Node::Dir { tree: ta, meta: ma }, Some(Node::Dir { tree: tb, meta: mb })) => {
                if ma != mb {
                    d.modified.push(p.clone());
                }
                walk(repo, &p, ta, tb, d)?;
            }
            (_, Some(_)) => {
                d.removed.push(p.clone());
                d.added.push(p);
            }
        }
    }
    let added = eb.keys().filter(|n| !ea.contains_key(*n));
    d.added.extend(added.map(|n| format!("{path}/{n}")));
    Ok(())
}

/// The initramfs of a commit, `/usr/lib/modules/<kver>/initramfs.img`: its path and
/// its bytes. A commit with none, or with several kernels that have one, is an error.
pub fn commit_initramfs(repo: &ostree::Repo, commit: &str) -> Result<(String, Vec<u8>)> {
    let (mut tree, _) = root_of(repo, commit)?;
    for dir in ["usr", "lib", "modules"] {
        match entries(repo, &tree)?.remove(dir) {
            Some(Node::Dir { tree: t, .. }) => tree = t,
            _ => bail!("commit {commit} has no /usr/lib/modules directory"),
        }
    }
    let mut found = Vec::new();
    for (kver, node) in entries(repo, &tree)? {
        if let Node::Dir { tree: t, .. } = node {
            if let Some(Node::File(csum)) = entries(repo, &t)?.remove("initramfs.img") {
                found.push((format!("/usr/lib/modules/{kver}/initramfs.img"), csum));
            }
        }
    }
    let (path, csum) = match found.len() {
        1 => found.remove(0),
        0 => bail!("commit {commit} has no /usr/lib/modules/*/initramfs.img"),
        _ => {
            let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
            bail!(
                "commit {commit} has several initramfs images, which to compare is unclear: {}",
                paths.join(", ")
            )
        }
    };
    let (stream, _, _) = repo
        .load_file(&csum, gio::Cancellable::NONE)
        .with_context(|| format!("loading {path} (object {csum})"))?;
    let stream = stream.with_context(|| format!("{path} is not a regular file"))?;
    let mut data = Vec::new();
    stream
        .into_read()
        .read_to_end(&mut data)
        .with_context(|| format!("reading {path} (object {csum})"))?;
    Ok((path, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive-mode repo (it needs no xattrs) in `dir` holding a commit of each of
    /// `trees` (path, content; a path ending in `/` is a directory).
    fn repo_with(dir: &Path, trees: &[&[(&str, &str)]]) -> (ostree::Repo, Vec<String>) {
        let repo = ostree::Repo::new_for_path(dir.join("repo"));
        repo.create(ostree::RepoMode::Archive, gio::Cancellable::NONE)
            .unwrap();
        let mut commits = Vec::new();
        for (i, files) in trees.iter().enumerate() {
            let root = dir.join(format!("tree{i}"));
            for (p, data) in *files {
                let f = root.join(p);
                if let Some(d) = p.strip_suffix('/') {
                    fs_err::create_dir_all(root.join(d)).unwrap();
                } else {
                    fs_err::create_dir_all(f.parent().unwrap()).unwrap();
                    fs_err::write(&f, data).unwrap();
                }
            }
            fs_err::create_dir_all(&root).unwrap();
            let tx = repo.auto_transaction(gio::Cancellable::NONE).unwrap();
            let mtree = ostree::MutableTree::new();
            repo.write_directory_to_mtree(
                &gio::File::for_path(&root),
                &mtree,
                None,
                gio::Cancellable::NONE,
            )
            .unwrap();
            let root = repo.write_mtree(&mtree, gio::Cancellable::NONE).unwrap();
            let root = root.downcast::<ostree::RepoFile>().unwrap();
            let c = repo
                .write_commit(None, None, None, None, &root, gio::Cancellable::NONE)
                .unwrap();
            tx.commit(gio::Cancellable::NONE).unwrap();
            commits.push(c.to_string());
        }
        (repo, commits)
    }

    #[test]
    fn paths_added_removed_modified() {
        let t = tempfile::tempdir().unwrap();
        let (repo, c) = repo_with(
            t.path(),
            &[
                &[
                    ("usr/bin/a", "a"),
                    ("usr/bin/b", "b"),
                    ("usr/lib/x/1", "1"),
                    ("usr/share/same/f", "f"),
                    ("etc/thing", "file"),
                ],
                &[
                    ("usr/bin/a", "a2"),
                    ("usr/bin/c", "c"),
                    ("usr/lib/y/1", "1"),
                    ("usr/share/same/f", "f"),
                    ("etc/thing/", ""),
                ],
            ],
        );
        let d = commit_diff(&repo, &c[0], &c[1]).unwrap();
        assert_eq!(
            d,
            PathsDiff {
                added: vec![
                    "/etc/thing".into(),
                    "/usr/bin/c".into(),
                    "/usr/lib/y".into()
                ],
                removed: vec![
                    "/etc/thing".into(),
                    "/usr/bin/b".into(),
                    "/usr/lib/x".into()
                ],
                modified: vec!["/usr/bin/a".into()],
            }
        );
        assert_eq!(
            commit_diff(&repo, &c[0], &c[0]).unwrap(),
            PathsDiff::default()
        );
        let e = commit_diff(&repo, &c[0], &"0".repeat(64)).unwrap_err();
        assert!(format!("{e:#}").contains(&"0".repeat(64)), "{e:#}");
    }

    #[test]
    fn finds_the_one_initramfs() {
        let t = tempfile::tempdir().unwrap();
        let (repo, c) = repo_with(
            t.path(),
            &[
                &[
                    ("usr/lib/modules/6.1/initramfs.img", "image"),
                    ("usr/lib/modules/6.1/vmlinuz", "k"),
                    ("usr/lib/modules/extra/", ""),
                ],
                &[("usr/bin/x", "")],
                &[
                    ("usr/lib/modules/6.1/initramfs.img", "a"),
                    ("usr/lib/modules/6.2/initramfs.img", "b"),
                ],
            ],
        );
        let (p, data) = commit_initramfs(&repo, &c[0]).unwrap();
        assert_eq!(p, "/usr/lib/modules/6.1/initramfs.img");
        assert_eq!(data, b"image");
        let e = format!("{:#}", commit_initramfs(&repo, &c[1]).unwrap_err());
        assert!(e.contains("has no /usr/lib/modules"), "{e}");
        let e = format!("{:#}", commit_initramfs(&repo, &c[2]).unwrap_err());
        assert!(e.contains("several initramfs") && e.contains("6.2"), "{e}");
    }
}
