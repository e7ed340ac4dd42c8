//! cpio "newc" archives (070701): 110-byte ASCII headers, the name, then the data,
//! each padded to 4 bytes. The writer makes what the kernel unpacks as an initramfs
//! and busybox `cpio -i` reads (the PXE rootfs, Day-0 customization archives); the
//! reader takes the RPM payloads `rpm2cpio` streams to the package importer.

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};

/// Writes newc entries to `W`, keeping count of the bytes for the 4-byte padding.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    ino: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            ino: 1,
        }
    }

    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.raw(&[0u8; 3][..n])
    }

    fn header(&mut self, name: &str, mode: u32, size: u64) -> Result<()> {
        let size = u32::try_from(size).context("a cpio (newc) member is at most 4 GiB")?;
        let ino = self.ino;
        self.ino += 1;
        let h = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime: reproducible
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() + 1,
            0, // check
        );
        self.raw(h.as_bytes())?;
        self.raw(name.as_bytes())?;
        self.raw(&[0])?;
        self.pad()?;
        Ok(())
    }

    pub fn dir(&mut self, name: &str) -> Result<()> {
        self.header(name, 0o040755, 0)
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.header(name, 0o100000 | mode, data.len() as u64)?;
        self.raw(data)?;
        self.pad()?;
        Ok(())
    }

    /// A member streamed from `r`, which must yield exactly `size` bytes.
    pub fn file_from(&mut self, name: &str, mode: u32, size: u64, r: impl Read) -> Result<()> {
        self.header(name, 0o100000 | mode, size)?;
        let copied = io::copy(&mut r.take(size), &mut self.out)?;
        self.written += copied;
        if copied != size {
            anyhow::bail!("{name}: expected {size} bytes, read {copied}");
        }
        self.pad()?;
        Ok(())
    }

    /// The trailer; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.header("TRAILER!!!", 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

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

pub struct Reader<R> {
    r: R,
    /// Bytes consumed so far, for the 4-byte alignment.
    pos: u64,
    /// Data of the current entry not yet read, and its padding.
    left: u64,
    pad: u64,
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

impl<R: Read> Reader<R> {
    pub fn new(r: R) -> Self {
        Reader {
            r,
            pos: 0,
            left: 0,
            pad: 0,
        }
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.r
                .read_exact(&mut buf[..k])
                .context("truncated cpio archive")?;
            self.pos += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    /// The next entry's header, skipping what is left of the previous one's data;
    /// None at the trailer.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        self.skip(self.left + self.pad)?;
        self.left = 0;
        self.pad = 0;
        let mut h = [0u8; 110];
        self.r.read_exact(&mut h).context("truncated cpio header")?;
        self.pos += 110;
        if &h[..6] != b"070701" && &h[..6] != b"070702" {
            bail!(
                "not a newc cpio archive (magic {:?} at byte {})",
                String::from_utf8_lossy(&h[..6]),
                self.pos - 110
            );
        }
        let field = |i: usize| -> Result<u64> {
            let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i])?;
            u64::from_str_radix(s, 16).with_context(|| format!("bad cpio header field {s:?}"))
        };
        let ino = field(0)?;
        let mode = field(1)? as u32;
        let nlink = field(4)? as u32;
        let size = field(6)?;
        let namesize = field(11)?;
        if namesize == 0 || namesize > 65536 {
            bail!("bad cpio name size {namesize}");
        }
        let mut name = vec![0u8; namesize as usize];
        self.r
            .read_exact(&mut name)
            .context("truncated cpio name")?;
        self.pos += namesize;
        self.skip(pad4(self.pos))?;
        name.pop(); // NUL
        let name = String::from_utf8(name).context("cpio name is not UTF-8")?;
        if name == "TRAILER!!!" {
            return Ok(None);
        }
        let name = name
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        if name.split('/').any(|c| c == "..") {
            bail!("cpio entry {name} leaves the tree");
        }
        self.left = size;
        self.pad = pad4(self.pos + size);
        Ok(Some(Entry {
            name,
            mode,
            ino,
            nlink,
            size,
        }))
    }

    /// Read some of the current entry's data; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        let k = (buf.len() as u64).min(self.left) as usize;
        if k == 0 {
            return Ok(0);
        }
        let n = self.r.read(&mut buf[..k]).context("reading cpio data")?;
        if n == 0 {
            bail!("truncated cpio data");
        }
        self.left -= n as u64;
        self.pos += n as u64;
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
    pub fn into_inner(self) -> R {
        self.r
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
}
