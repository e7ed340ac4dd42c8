//! A newc ("070701") cpio writer: the format the kernel unpacks as an initramfs and
//! busybox `cpio -i` reads. Used for the PXE rootfs (one big file, streamed) and the
//! small Day-0 customization archives.

use std::io::{self, Read, Write};

use anyhow::{Context, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn busybox_style_cpio_reads_it_back() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Writer::new(Vec::new());
        w.dir("a").unwrap();
        w.file("a/b.txt", 0o644, b"hello\n").unwrap();
        w.file_from("c", 0o600, 3, &b"xyz"[..]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let mut child = Command::new("cpio")
            .args(["-i", "-d", "--quiet"])
            .current_dir(t.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read_to_string(t.path().join("a/b.txt")).unwrap(),
            "hello\n"
        );
        assert_eq!(std::fs::read(t.path().join("c")).unwrap(), b"xyz");
    }

    #[test]
    fn short_reader_is_an_error() {
        let mut w = Writer::new(Vec::new());
        assert!(w.file_from("x", 0o644, 10, &b"abc"[..]).is_err());
    }
}
