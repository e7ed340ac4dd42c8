//! Writing layer tars, byte for byte reproducibly: fixed headers (mtime 0, as in
//! ostree checkouts; no user/group names), entries in a fixed order.

use std::io::{self, BufReader, Write};

use anyhow::{Context, Result};
use fs_err as fs;
use sha2::{Digest, Sha256};

use super::tree::{image_path, object_relpath, CommitTree};

/// ostree's objects directory inside the image.
pub const REPO_OBJECTS: &str = "sysroot/ostree/repo/objects";

/// A repo config that says "this is a tar export" (ostree-ext writes the same).
const REPO_CONFIG: &str = "[core]\nrepo_version=1\nmode=bare-split-xattrs\n";

/// Every content object here has the same (empty) xattrs; this is their checksum.
const EMPTY_XATTRS: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
    /// The inner writer, the hex sha256 and the byte count of what was written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hash.finalize()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Layer tar writer over any sink (the chunked compressor, in practice); the
/// uncompressed digest is taken on the way.
pub struct LayerWriter<W: Write> {
    tar: tar::Builder<HashingWriter<W>>,
}

fn header(kind: tar::EntryType, mode: u32, uid: u32, gid: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_size(size);
    h.set_mtime(0);
    h
}

impl<W: Write> LayerWriter<W> {
    pub fn new(w: HashingWriter<W>) -> Self {
        LayerWriter {
            tar: tar::Builder::new(w),
        }
    }

    /// Bytes straight into the stream (tests of the sink).
    #[cfg(test)]
    pub fn raw(&mut self, data: &[u8]) -> Result<()> {
        self.tar.get_mut().write_all(data)?;
        Ok(())
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<()> {
        let mut h = header(tar::EntryType::Directory, mode, uid, gid, 0);
        self.tar.append_data(
            &mut h,
            if path.is_empty() { "./" } else { path },
            io::empty(),
        )?;
        Ok(())
    }

    /// A regular file read from `src`, streamed.
    pub fn file(
        &mut self,
        path: &str,
        src: &std::path::Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let f = fs::File::open(src)?;
        let len = f.metadata()?.len();
        let mut h = header(tar::EntryType::Regular, mode, uid, gid, len);
        self.tar
            .append_data(&mut h, path, BufReader::with_capacity(1 << 20, f))
            .with_context(|| format!("writing {} into the layer", src.display()))?;
        Ok(())
    }

    fn data(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut h = header(tar::EntryType::Regular, 0o644, 0, 0, data.len() as u64);
        self.tar.append_data(&mut h, path, data)?;
        Ok(())
    }

    fn hardlink(&mut self, path: &str, target: &str, mode: u32, uid: u32, gid: u32) -> Result<()> {
        let mut h = header(tar::EntryType::Link, mode, uid, gid, 0);
        self.tar.append_link(&mut h, path, target)?;
        Ok(())
    }

    /// `sysroot/ostree/repo/…` directories for the objects directories in `prefixes`,
    /// and with `full`, the whole repo skeleton and its config.
    pub fn repo_structure(&mut self, prefixes: &[String], full: bool) -> Result<()> {
        for d in [
            "sysroot",
            "sysroot/ostree",
            "sysroot/ostree/repo",
            REPO_OBJECTS,
        ] {
            self.dir(d, 0o755, 0, 0)?;
        }
        for p in prefixes {
            self.dir(&format!("{REPO_OBJECTS}/{p}"), 0o755, 0, 0)?;
        }
        if full {
            for d in [
                "extensions",
                "refs",
                "refs/heads",
                "refs/mirrors",
                "refs/remotes",
                "state",
                "tmp",
                "tmp/cache",
            ] {
                self.dir(&format!("sysroot/ostree/repo/{d}"), 0o755, 0, 0)?;
            }
            self.data("sysroot/ostree/repo/config", REPO_CONFIG.as_bytes())?;
        }
        Ok(())
    }

    /// A metadata object (`commit`, `commitmeta`, `dirtree`, `dirmeta`).
    pub fn metadata_object(&mut self, checksum: &str, kind: &str, data: &[u8]) -> Result<()> {
        self.data(
            &format!("{REPO_OBJECTS}/{}", object_relpath(checksum, kind)),
            data,
        )
    }

    /// The (empty) xattrs object most content objects of this layer link to.
    pub fn xattrs_object(&mut self) -> Result<()> {
        self.xattrs_object_data(EMPTY_XATTRS, &[])
    }

    /// An xattrs object (`.file-xattrs`): the serialized `a(ayay)`, named by its sha256.
    pub fn xattrs_object_data(&mut self, checksum: &str, data: &[u8]) -> Result<()> {
        self.data(
            &format!("{REPO_OBJECTS}/{}", object_relpath(checksum, "file-xattrs")),
            data,
        )
    }

    /// A content object followed by the tree's paths to it, as hardlinks.
    pub fn content_object(&mut self, tree: &CommitTree, checksum: &str) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let obj = &tree.objects[checksum];
        let src = tree.object_file(checksum);
        let md = src
            .symlink_metadata()
            .with_context(|| format!("reading object {checksum}"))?;
        let objpath = format!("{REPO_OBJECTS}/{}", object_relpath(checksum, "file"));
        let xattrs_csum = obj
            .xattrs
            .as_ref()
            .map_or(EMPTY_XATTRS, |(c, _)| c.as_str());
        let xattrs = format!(
            "{REPO_OBJECTS}/{}",
            object_relpath(xattrs_csum, "file-xattrs")
        );
        self.hardlink(
            &format!(
                "{REPO_OBJECTS}/{}",
                object_relpath(checksum, "file-xattrs-link")
            ),
            &xattrs,
            0o644,
            0,
            0,
        )?;
        let (mode, uid, gid) = (md.mode() & 0o7777, md.uid(), md.gid());
        let is_link = md.file_type().is_symlink();
        if is_link {
            let target = fs::read_link(&src)?;
            let mut h = header(tar::EntryType::Symlink, mode, uid, gid, 0);
            self.tar.append_link(&mut h, &objpath, &target)?;
        } else {
            let mut h = header(tar::EntryType::Regular, mode, uid, gid, md.len());
            let f = fs::File::open(&src).with_context(|| format!("opening object {checksum}"))?;
            self.tar
                .append_data(&mut h, &objpath, BufReader::with_capacity(1 << 17, f))
                .with_context(|| format!("writing object {checksum}"))?;
        }
        for p in &obj.paths {
            if p == "sysroot" || p.starts_with("sysroot/") {
                continue;
            }
            let p = image_path(p);
            if !is_link && md.len() == 0 {
                // An empty file is written as itself: a derived image that writes to it
                // must not appear to change the object in /sysroot.
                let mut h = header(tar::EntryType::Regular, mode, uid, gid, 0);
                self.tar.append_data(&mut h, p.as_ref(), io::empty())?;
            } else {
                self.hardlink(&p, &objpath, mode, uid, gid)?;
            }
        }
        Ok(())
    }

    /// End the archive; returns the sink (with the uncompressed digest).
    pub fn finish(self) -> Result<HashingWriter<W>> {
        Ok(self.tar.into_inner()?)
    }
}
