//! One RPM payload (a cpio stream) written into the repo as an ostree tree, with
//! rpm-ostree's importer conventions.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use gio::prelude::*;

use crate::cpio;

/// A package's payload as an ostree tree being built, with rpm-ostree's importer
/// conventions: everything owned by root (ownership comes from the header later),
/// /var turned into tmpfiles.d entries.
pub(super) struct PayloadTree<'a> {
    repo: &'a ostree::Repo,
    name: &'a str,
    mtree: ostree::MutableTree,
    dirmetas: HashMap<u32, String>,
    /// Earlier names of hardlink sets whose data has not come yet, by inode.
    pending_links: HashMap<u64, Vec<(String, u32)>>,
    /// /var entries, turned into tmpfiles.d lines at the end.
    var: Vec<(String, VarEntry)>,
    has_var: bool,
}

impl<'a> PayloadTree<'a> {
    pub(super) fn new(repo: &'a ostree::Repo, name: &'a str) -> Result<Self> {
        let mut t = PayloadTree {
            repo,
            name,
            mtree: ostree::MutableTree::new(),
            dirmetas: HashMap::new(),
            pending_links: HashMap::new(),
            var: Vec::new(),
            has_var: false,
        };
        let root = t.dirmeta(cpio::S_IFDIR | 0o755)?;
        t.mtree.set_metadata_checksum(&root);
        Ok(t)
    }

    /// The checksum of a root-owned directory's metadata with this mode.
    fn dirmeta(&mut self, mode: u32) -> Result<String> {
        if let Some(c) = self.dirmetas.get(&mode) {
            return Ok(c.clone());
        }
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let v = (0u32.to_be(), 0u32.to_be(), mode.to_be(), xattrs).to_variant();
        let c = self
            .repo
            .write_metadata(
                ostree::ObjectType::DirMeta,
                None,
                &v,
                gio::Cancellable::NONE,
            )?
            .to_hex();
        self.dirmetas.insert(mode, c.clone());
        Ok(c)
    }

    /// The directory at `path`, made (0755) with its parents if missing.
    fn dir(&mut self, path: &str) -> Result<ostree::MutableTree> {
        let default = self.dirmeta(cpio::S_IFDIR | 0o755)?;
        let mut cur = self.mtree.clone();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            cur = match cur.lookup(c) {
                Ok((_, Some(sub))) => sub,
                Ok((Some(_), None)) => bail!("{path}: {c} is both a file and a directory"),
                _ => {
                    let sub = cur.ensure_dir(c)?;
                    sub.set_metadata_checksum(&default);
                    sub
                }
            };
        }
        Ok(cur)
    }

    fn place(&mut self, path: &str, csum: &str) -> Result<()> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.dir(parent)?.replace_file(name, csum)?;
        Ok(())
    }

    pub(super) fn write_payload<R: Read>(
        mut self,
        r: &mut cpio::Reader<R>,
    ) -> Result<ostree::RepoFile> {
        while let Some(e) = r.next_entry()? {
            self.entry(r, &e).with_context(|| format!("/{}", e.name))?;
        }
        // Hardlink sets whose data never came are empty files.
        for (_, names) in std::mem::take(&mut self.pending_links) {
            let csum = self.write_file(None::<&mut cpio::Reader<std::io::Empty>>, names[0].1, 0)?;
            for (n, _) in names {
                self.place_file(&n, &csum)?;
            }
        }
        if self.has_var {
            self.finish_var()?;
        }
        crate::compose::commit::write_mtree(self.repo, &self.mtree)
    }

    fn entry<R: Read>(&mut self, r: &mut cpio::Reader<R>, e: &cpio::Entry) -> Result<()> {
        let in_var = e.name == "var" || e.name.starts_with("var/");
        self.has_var |= in_var;
        match e.kind() {
            _ if e.name.is_empty() || e.name == "." => {
                let m = self.dirmeta(e.mode)?;
                self.mtree.set_metadata_checksum(&m);
            }
            cpio::S_IFDIR if in_var => {
                if e.name != "var" {
                    self.var
                        .push((format!("/{}", e.name), VarEntry::Dir(e.mode & 0o7777)));
                }
            }
            cpio::S_IFDIR => {
                let m = self.dirmeta(e.mode)?;
                self.dir(&e.name)?.set_metadata_checksum(&m);
            }
            cpio::S_IFLNK => {
                let target =
                    String::from_utf8(r.data_to_vec()?).context("symlink target is not UTF-8")?;
                if in_var {
                    self.var
                        .push((format!("/{}", e.name), VarEntry::Symlink(target)));
                } else {
                    let c = self.repo.write_symlink(
                        None,
                        0,
                        0,
                        None,
                        &target,
                        gio::Cancellable::NONE,
                    )?;
                    self.place(&e.name, &c)?;
                }
            }
            cpio::S_IFREG => {
                if e.nlink > 1 && e.size == 0 {
                    self.pending_links
                        .entry(e.ino)
                        .or_default()
                        .push((e.name.clone(), e.mode));
                    return Ok(());
                }
                let csum = self.write_file(Some(r), e.mode, e.size)?;
                self.place_file(&e.name, &csum)?;
                if e.nlink > 1 {
                    for (n, _) in self.pending_links.remove(&e.ino).unwrap_or_default() {
                        self.place_file(&n, &csum)?;
                    }
                }
            }
            _ => bail!(
                "is a device node, FIFO or socket (mode {:o}), which an ostree commit cannot hold",
                e.mode
            ),
        }
        Ok(())
    }

    /// A regular file at `path`; under /var it goes to /usr/share/factory and is
    /// copied at boot.
    fn place_file(&mut self, path: &str, csum: &str) -> Result<()> {
        if path.starts_with("var/") {
            self.var.push((format!("/{path}"), VarEntry::File));
            self.place(&format!("usr/share/factory/{path}"), csum)
        } else {
            self.place(path, csum)
        }
    }

    /// Write a regular file's content object from the entry's data (None: empty).
    fn write_file<R: Read>(
        &mut self,
        r: Option<&mut cpio::Reader<R>>,
        mode: u32,
        size: u64,
    ) -> Result<String> {
        let mode = cpio::S_IFREG | (mode & 0o7777);
        let inline = |data: &[u8]| -> Result<String> {
            Ok(self
                .repo
                .write_regfile_inline(None, 0, 0, mode, None, data, gio::Cancellable::NONE)?
                .to_string())
        };
        let Some(r) = r.filter(|_| size > 0) else {
            return inline(&[]);
        };
        if size <= INLINE_MAX {
            return inline(&r.data_to_vec()?);
        }
        let w = self.repo.write_regfile(None, 0, 0, mode, size, None)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read_data(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n], gio::Cancellable::NONE)?;
        }
        Ok(w.finish(gio::Cancellable::NONE)?.to_string())
    }

    /// An empty /var, and the package's tmpfiles.d entries that recreate its content.
    fn finish_var(&mut self) -> Result<()> {
        let m = self.dirmeta(cpio::S_IFDIR | 0o755)?;
        self.dir("var")?.set_metadata_checksum(&m);
        let mut entries = std::mem::take(&mut self.var);
        if entries.is_empty() {
            return Ok(());
        }
        // The order a sorted depth-first walk gives.
        entries.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
        let lines: Vec<String> = entries.iter().map(|(p, e)| tmpfiles_line(p, e)).collect();
        let conf = lines.join("\n") + "\n";
        let c = self.repo.write_regfile_inline(
            None,
            0,
            0,
            cpio::S_IFREG | 0o644,
            None,
            conf.as_bytes(),
            gio::Cancellable::NONE,
        )?;
        let name = format!("usr/lib/tmpfiles.d/pkg-{}.conf", self.name);
        self.place(&name, &c)
    }
}

/// Files up to this size are read whole and written in one call.
const INLINE_MAX: u64 = 1 << 20;

/// What a /var path is, for its tmpfiles.d line.
pub(crate) enum VarEntry {
    Dir(u32),
    Symlink(String),
    /// A regular file, kept under /usr/share/factory.
    File,
}

/// The tmpfiles.d line recreating `path` (absolute, under /var).
pub(crate) fn tmpfiles_line(path: &str, e: &VarEntry) -> String {
    match e {
        VarEntry::Dir(mode) => format!("d {path} {mode:04o} root root - -"),
        VarEntry::Symlink(to) => format!("L {path} - - - - {to}"),
        VarEntry::File => format!("C {path} - - - - /usr/share/factory{path}"),
    }
}

/// Move a package's /var content out of the tree: directories and symlinks become
/// tmpfiles.d lines in `conf_name` (per package, so packages never clash); files go to
/// /usr/share/factory/var and are copied at boot.
pub(crate) fn var_to_tmpfiles(root: &Path, conf_name: &str) -> Result<()> {
    let var = root.join("var");
    if !var.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let mut lines = Vec::new();
    for e in walkdir::WalkDir::new(&var).min_depth(1).sort_by_file_name() {
        let e = e?;
        let rel = e.path().strip_prefix(root)?;
        let md = e.path().symlink_metadata()?;
        use std::os::unix::fs::PermissionsExt;
        let mode = md.permissions().mode() & 0o7777;
        let target = format!("/{}", rel.display());
        let entry = if md.is_dir() {
            VarEntry::Dir(mode)
        } else if md.file_type().is_symlink() {
            VarEntry::Symlink(fs::read_link(e.path())?.to_string_lossy().into_owned())
        } else {
            let factory = root.join("usr/share/factory").join(rel);
            if let Some(parent) = factory.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(e.path(), &factory)?;
            VarEntry::File
        };
        lines.push(tmpfiles_line(&target, &entry));
    }
    fs::remove_dir_all(&var)?;
    fs::create_dir(&var)?;
    if !lines.is_empty() {
        let d = root.join("usr/lib/tmpfiles.d");
        fs::create_dir_all(&d)?;
        fs::write(d.join(conf_name), lines.join("\n") + "\n")?;
    }
    Ok(())
}
