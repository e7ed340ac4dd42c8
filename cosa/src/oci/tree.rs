//! Walking a commit of a `bare` repo: its metadata objects, directories and the paths
//! of each content object, in a fixed order (ostree's dirtree order: sorted by name).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sha2::Digest;

/// A directory of the tree with its ownership and permission bits.
#[derive(Debug, Clone)]
pub struct Dir {
    /// Relative path; "" is the root.
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// A content object and every path of the tree that is a hardlink to it.
#[derive(Debug, Clone)]
pub struct Object {
    pub checksum: String,
    /// Bytes on disk (for symlinks, the target's length): what packing weighs.
    pub size: u64,
    pub paths: Vec<String>,
    /// The object's xattrs (file capabilities), as ostree serializes them for its
    /// `.file-xattrs` objects: (sha256 of the data, the data). None: no xattrs.
    pub xattrs: Option<(String, Vec<u8>)>,
}

/// Everything of one commit that goes into an image.
pub struct CommitTree {
    pub commit: String,
    /// The serialized `.commit` object, and the detached `.commitmeta` if any.
    pub commit_object: Vec<u8>,
    pub commitmeta: Option<Vec<u8>>,
    /// The commit's metadata (`a{sv}`, for labels).
    pub metadata: glib::Variant,
    pub timestamp: u64,
    /// `(checksum, "dirtree" | "dirmeta")` → serialized object.
    pub meta_objects: BTreeMap<(String, &'static str), Vec<u8>>,
    /// Directories, parents before children.
    pub dirs: Vec<Dir>,
    /// Content objects by checksum.
    pub objects: BTreeMap<String, Object>,
    /// `objects/` of the repo the content is read from.
    pub objects_dir: PathBuf,
    /// Parsed dirmeta objects: (uid, gid, permission bits).
    dirmeta: HashMap<String, (u32, u32, u32)>,
}

fn hex_child(v: &glib::Variant, i: usize) -> Result<String> {
    let c = v.child_value(i);
    let b = c
        .fixed_array::<u8>()
        .context("checksum is not a byte array")?;
    if b.len() != 32 {
        bail!("checksum of {} bytes", b.len());
    }
    Ok(hex::encode(b))
}

fn str_child(v: &glib::Variant, i: usize) -> Result<String> {
    v.child_value(i)
        .str()
        .map(str::to_string)
        .context("expected a string")
}

/// The path of an object in a repo's `objects/` directory.
pub fn object_relpath(checksum: &str, suffix: &str) -> String {
    format!("{}/{}.{suffix}", &checksum[..2], &checksum[2..])
}

impl CommitTree {
    /// Load `commit` from `repo` (opened at `repo_path`, which must be mode `bare`:
    /// content objects are read straight from its `objects/`, in parallel).
    pub fn load(repo: &ostree::Repo, repo_path: &Path, commit: &str) -> Result<Self> {
        if repo.mode() != ostree::RepoMode::Bare {
            bail!(
                "{}: repo mode {:?} is not supported (cosa's repo is bare)",
                repo_path.display(),
                repo.mode()
            );
        }
        let (cv, _) = repo
            .load_commit(commit)
            .with_context(|| format!("loading commit {commit}"))?;
        let metadata = cv.child_value(0);
        let timestamp = ostree::commit_get_timestamp(&cv);
        let commitmeta = repo
            .read_commit_detached_metadata(commit, gio::Cancellable::NONE)?
            .map(|v| v.data_as_bytes().to_vec());
        let mut t = CommitTree {
            commit: commit.to_string(),
            commit_object: cv.data_as_bytes().to_vec(),
            commitmeta,
            metadata,
            timestamp,
            meta_objects: BTreeMap::new(),
            dirs: Vec::new(),
            objects: BTreeMap::new(),
            objects_dir: repo_path.join("objects"),
            dirmeta: HashMap::new(),
        };
        let root_tree = hex_child(&cv, 6)?;
        let root_meta = hex_child(&cv, 7)?;
        t.walk(repo, String::new(), &root_tree, &root_meta)
            .with_context(|| format!("walking commit {commit}"))?;
        let dir = &t.objects_dir;
        let with_xattrs: Vec<String> = t
            .objects
            .par_iter_mut()
            .map(|(_, o)| -> Result<Option<String>> {
                let p = dir.join(object_relpath(&o.checksum, "file"));
                o.size = p
                    .symlink_metadata()
                    .with_context(|| format!("object {} is missing from the repo", o.checksum))?
                    .len();
                // A bare repo keeps an object's xattrs on its file.
                let mut names = [0u8; 64];
                let has = !matches!(rustix::fs::llistxattr(&p, &mut names), Ok(0));
                Ok(has.then(|| o.checksum.clone()))
            })
            .filter_map(|r| r.transpose())
            .collect::<Result<_>>()?;
        for csum in with_xattrs {
            let (_, _, xattrs) = repo
                .load_file(&csum, gio::Cancellable::NONE)
                .with_context(|| format!("reading the xattrs of object {csum}"))?;
            let data = xattrs.data_as_bytes().to_vec();
            if !data.is_empty() {
                let x = hex::encode(sha2::Sha256::digest(&data));
                if let Some(o) = t.objects.get_mut(&csum) {
                    o.xattrs = Some((x, data));
                }
            }
        }
        Ok(t)
    }

    fn walk(&mut self, repo: &ostree::Repo, path: String, tree: &str, meta: &str) -> Result<()> {
        // Few distinct dirmeta objects serve many directories: parse each once.
        let (uid, gid, mode) = match self.dirmeta.get(meta) {
            Some(m) => *m,
            None => {
                let mv = repo.load_variant(ostree::ObjectType::DirMeta, meta)?;
                let m = ostree::DirMetaParsed::from_variant(&mv)
                    .map_err(|e| anyhow::anyhow!("dirmeta {meta}: {e}"))?;
                self.meta_objects
                    .insert((meta.to_string(), "dirmeta"), mv.data_as_bytes().to_vec());
                let v = (m.uid, m.gid, m.mode & 0o7777);
                self.dirmeta.insert(meta.to_string(), v);
                v
            }
        };
        self.dirs.push(Dir {
            path: path.clone(),
            uid,
            gid,
            mode,
        });
        let tv = repo.load_variant(ostree::ObjectType::DirTree, tree)?;
        self.meta_objects
            .insert((tree.to_string(), "dirtree"), tv.data_as_bytes().to_vec());
        let join = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}/{name}")
            }
        };
        for f in tv.child_value(0).iter() {
            let name = str_child(&f, 0)?;
            let csum = hex_child(&f, 1)?;
            self.objects
                .entry(csum.clone())
                .or_insert_with(|| Object {
                    checksum: csum,
                    size: 0,
                    paths: Vec::new(),
                    xattrs: None,
                })
                .paths
                .push(join(&name));
        }
        for d in tv.child_value(1).iter() {
            let name = str_child(&d, 0)?;
            let sub_tree = hex_child(&d, 1)?;
            let sub_meta = hex_child(&d, 2)?;
            self.walk(repo, join(&name), &sub_tree, &sub_meta)?;
        }
        Ok(())
    }

    /// A string value of the commit metadata.
    pub fn meta_str(&self, key: &str) -> Option<String> {
        self.meta_lookup(key)
    }

    /// A value of the commit metadata, if present and of type `T`.
    pub fn meta_lookup<T: glib::variant::FromVariant>(&self, key: &str) -> Option<T> {
        glib::VariantDict::new(Some(&self.metadata))
            .lookup::<T>(key)
            .ok()
            .flatten()
    }

    /// The on-disk path of a content object.
    pub fn object_file(&self, checksum: &str) -> PathBuf {
        self.objects_dir.join(object_relpath(checksum, "file"))
    }
}

/// Path in the image for a path of the tree: ostree's `usr/etc` is the container's `etc`.
pub fn image_path(p: &str) -> std::borrow::Cow<'_, str> {
    if p == "usr/etc" {
        "etc".into()
    } else if let Some(rest) = p.strip_prefix("usr/etc/") {
        format!("etc/{rest}").into()
    } else {
        p.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_is_mapped_back() {
        assert_eq!(image_path("usr/etc/passwd"), "etc/passwd");
        assert_eq!(image_path("usr/etc"), "etc");
        assert_eq!(image_path("usr/etcetera"), "usr/etcetera");
        assert_eq!(image_path("usr/bin/sh"), "usr/bin/sh");
    }

    #[test]
    fn object_paths() {
        assert_eq!(object_relpath("abcdef", "file"), "ab/cdef.file");
    }
}
