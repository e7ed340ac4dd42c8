//! cpio "newc" archives (070701), over the `cpio` crate's format code. The writer
//! makes what the kernel unpacks as an initramfs and busybox `cpio -i` reads (the PXE
//! rootfs, Day-0 customization archives); the reader takes the RPM payloads
//! `rpm2cpio` streams to the package importer.
//!
//! What this module adds to the crate: one reader over a whole stream (the crate's
//! reader is one entry at a time and takes the stream by value), member names without
//! `./` and never leaving the tree, errors that say "truncated" (the crate skips a
//! short entry silently and pads nothing after a short write), inode numbers counted
//! per archive, and the writer's fixed metadata (owner root, mtime 0, nlink 1) that
//! makes its output reproducible. The crate reads a member name as its bytes arrive,
//! whatever length the header declares: a name costs what the stream holds, no more.

use std::io::{self, Read, Write};

use ::cpio::newc;
use anyhow::{anyhow, bail, Context, Result};

/// Writes newc entries to `W`.
pub struct Writer<W: Write> {
    out: W,
    /// The next member's inode number: members never share one (no hardlinks).
    ino: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, ino: 1 }
    }

    /// One member whose data is the `size` bytes `data` yields.
    fn member(&mut self, name: &str, mode: u32, size: u64, data: impl Read) -> Result<()> {
        let size32 = u32::try_from(size).context("a cpio (newc) member is at most 4 GiB")?;
        // The crate's defaults are uid, gid, mtime and devices 0 and nlink 1: reproducible.
        let b = newc::Builder::new(name).mode(mode).ino(self.ino);
        self.ino += 1;
        let mut w = b.write(&mut self.out, size32);
        let copied = io::copy(&mut data.take(size), &mut w)
            .with_context(|| format!("writing cpio member {name}"))?;
        if copied != size {
            bail!("{name}: expected {size} bytes, read {copied}");
        }
        w.finish()
            .with_context(|| format!("writing cpio member {name}"))?;
        Ok(())
    }

    pub fn dir(&mut self, name: &str) -> Result<()> {
        self.member(name, S_IFDIR | 0o755, 0, io::empty())
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.member(name, S_IFREG | mode, data.len() as u64, data)
    }

    /// A member streamed from `r`, which must yield exactly `size` bytes.
    pub fn file_from(&mut self, name: &str, mode: u32, size: u64, r: impl Read) -> Result<()> {
        self.member(name, S_IFREG | mode, size, r)
    }

    /// The trailer; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.member(TRAILER, 0, 0, io::empty())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The name of the member that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode`, as in stat(2).
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path without its leading `./` or `/`.
    pub name: String,
    pub mode: u32,
    pub ino: u64,
    pub nlink: u32,
    pub size: u64,
}

impl Entry {
    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
}

/// Where a `Reader` is in its stream.
enum State<R: Read> {
    /// Before the next header.
    Between(R),
    /// In an entry's data.
    InEntry(newc::Reader<R>),
    /// An error left the stream at an unknown place.
    Failed,
}

/// Reads the entries of a newc stream in order, each entry's data as it goes.
pub struct Reader<R: Read> {
    state: State<R>,
    /// Data of the current entry not yet read.
    left: u64,
}

/// A crate error, saying "truncated" where the stream ended early.
/// Skip the zero padding between archives concatenated in one stream (an
/// initramfs's members); false at the end of the stream.
pub fn skip_padding<R: io::BufRead>(r: &mut R) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let zeros = buf.iter().take_while(|b| **b == 0).count();
        if zeros == 0 {
            return Ok(true);
        }
        r.consume(zeros);
    }
}

fn io_error(e: io::Error, what: &str) -> anyhow::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        anyhow!("truncated cpio archive ({what})")
    } else {
        anyhow::Error::new(e).context(format!("bad cpio archive ({what})"))
    }
}

impl<R: Read> Reader<R> {
    pub fn new(r: R) -> Self {
        Reader {
            state: State::Between(r),
            left: 0,
        }
    }

    /// The next entry's header, skipping what is left of the previous one's data;
    /// None at the trailer.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        let inner = match std::mem::replace(&mut self.state, State::Failed) {
            State::Between(r) => r,
            // A short entry is skipped without complaint; the next header read fails.
            State::InEntry(e) => e.finish().map_err(|e| io_error(e, "entry data"))?,
            State::Failed => bail!("cpio archive: reading on after an error"),
        };
        let e = newc::Reader::new(inner).map_err(|e| io_error(e, "header"))?;
        let h = e.entry();
        if h.is_trailer() {
            self.state = State::Between(e.finish().map_err(|e| io_error(e, "trailer"))?);
            return Ok(None);
        }
        let name = h
            .name()
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        if name.split('/').any(|c| c == "..") {
            bail!("cpio entry {name} leaves the tree");
        }
        let entry = Entry {
            name,
            mode: h.mode(),
            ino: h.ino().into(),
            nlink: h.nlink(),
            size: h.file_size().into(),
        };
        self.left = entry.size;
        self.state = State::InEntry(e);
        Ok(Some(entry))
    }

    /// Read some of the current entry's data; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        let k = (buf.len() as u64).min(self.left) as usize;
        if k == 0 {
            return Ok(0);
        }
        let State::InEntry(e) = &mut self.state else {
            bail!("cpio archive: no entry to read data of");
        };
        let n = e
            .read(&mut buf[..k])
            .map_err(|e| io_error(e, "entry data"))?;
        if n == 0 {
            bail!("truncated cpio archive (entry data)");
        }
        self.left -= n as u64;
        Ok(n)
    }

    /// The whole of the current entry's data.
    pub fn data_to_vec(&mut self) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.left as usize];
        let mut off = 0;
        while off < v.len() {
            off += self.read_data(&mut v[off..])?;
        }
        Ok(v)
    }

    /// The underlying reader (to drain it after the trailer).
    pub fn into_inner(self) -> Result<R> {
        match self.state {
            State::Between(r) => Ok(r),
            State::InEntry(e) => e.finish().map_err(|e| io_error(e, "entry data")),
            State::Failed => bail!("cpio archive: reading on after an error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn busybox_style_cpio_reads_it_back() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Writer::new(Vec::new());
        w.dir("a").unwrap();
        w.file("a/b.txt", 0o644, b"hello\n").unwrap();
        w.file_from("c", 0o600, 3, &b"xyz"[..]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let mut child = cmdext::command("cpio")
            .args(["-i", "-d", "--quiet"])
            .current_dir(t.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            fs_err::read_to_string(t.path().join("a/b.txt")).unwrap(),
            "hello\n"
        );
        assert_eq!(fs_err::read(t.path().join("c")).unwrap(), b"xyz");
    }

    #[test]
    fn short_reader_is_an_error() {
        let mut w = Writer::new(Vec::new());
        assert!(w.file_from("x", 0o644, 10, &b"abc"[..]).is_err());
    }

    /// An archive made by GNU cpio: a directory, a file, a symlink, two hardlinks.
    fn gnu_cpio_archive() -> Vec<u8> {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs_err::create_dir_all(r.join("usr/bin")).unwrap();
        fs_err::write(r.join("usr/bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        std::os::unix::fs::symlink("tool", r.join("usr/bin/alias")).unwrap();
        fs_err::write(r.join("usr/bin/a"), "same").unwrap();
        fs_err::hard_link(r.join("usr/bin/a"), r.join("usr/bin/b")).unwrap();
        let mut c = cmdext::command("cpio")
            .args(["-o", "-H", "newc", "--quiet"])
            .current_dir(r)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(
                b"./usr\n./usr/bin\n./usr/bin/tool\n./usr/bin/alias\n./usr/bin/a\n./usr/bin/b\n",
            )
            .unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn reads_what_gnu_cpio_writes() {
        let a = gnu_cpio_archive();
        let mut r = Reader::new(&a[..]);
        let mut seen = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            let data = if e.name == "usr/bin/tool" || e.kind() == S_IFLNK {
                String::from_utf8(r.data_to_vec().unwrap()).unwrap()
            } else {
                String::new() // left unread: the next entry skips it
            };
            seen.push((e.name.clone(), e.kind(), e.nlink, e.size, data));
        }
        assert_eq!(seen[0].0, "usr");
        assert_eq!(seen[0].1, S_IFDIR);
        assert_eq!(seen[2].4, "#!/bin/sh\necho hi\n");
        assert_eq!((seen[3].1, seen[3].4.as_str()), (S_IFLNK, "tool"));
        // Hardlinks: the data travels with the last of the set.
        let (a, b) = (&seen[4], &seen[5]);
        assert_eq!((a.2, b.2), (2, 2));
        assert_eq!(a.3 + b.3, 4);
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let e = Reader::new(&b"not a cpio archive at all, not at all, no"[..]).next_entry();
        assert!(e.is_err());
        let a = gnu_cpio_archive();
        let mut r = Reader::new(&a[..200]);
        let mut res = Ok(None);
        for _ in 0..10 {
            res = r.next_entry();
            if res.is_err() {
                break;
            }
        }
        assert!(format!("{:#}", res.unwrap_err()).contains("truncated"));
    }

    #[test]
    fn reader_reads_what_writer_writes() {
        let mut w = Writer::new(Vec::new());
        w.dir("etc").unwrap();
        w.file("etc/motd", 0o644, b"hi\n").unwrap();
        let bytes = w.finish().unwrap();
        let mut r = Reader::new(&bytes[..]);
        let d = r.next_entry().unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.kind()), ("etc", S_IFDIR));
        let f = r.next_entry().unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), f.kind(), f.mode & 0o7777),
            ("etc/motd", S_IFREG, 0o644)
        );
        assert_eq!(r.data_to_vec().unwrap(), b"hi\n");
        assert!(r.next_entry().unwrap().is_none());
    }

    /// The writer's bytes depend only on its input (no times, owners or host inodes):
    /// pinned, so a change of implementation cannot change artifacts unnoticed.
    #[test]
    fn writer_output_is_pinned() {
        let mut w = Writer::new(Vec::new());
        w.dir("etc").unwrap();
        w.file("etc/motd", 0o644, b"hi\n").unwrap();
        w.file_from("init", 0o755, 5, &b"#!sh\n"[..]).unwrap();
        let bytes = w.finish().unwrap();
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            "b41775f881ba4364a272f03b97c3620805fc98ec340fabaa8ad20a372f1a6001"
        );
    }
}
