//! `--initrd`: the members of an initramfs image, as the kernel unpacks it — cpio
//! (newc) archives one after the other, each plain or compressed with gzip, zstd or
//! xz, zero padding between them.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Change, Changes, Lines};
use crate::cpio;

/// A member of an initramfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitrdEntry {
    /// With a leading `/`.
    pub path: String,
    /// `st_mode` in octal, file type included.
    pub mode: String,
    pub size: u64,
    /// sha256 of a file's data or a symlink's target: compared, not printed.
    #[serde(skip)]
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitrdDiff {
    /// The image in each commit (`/usr/lib/modules/<kver>/initramfs.img`).
    pub image: Change<String>,
    #[serde(flatten)]
    pub entries: Changes<InitrdEntry>,
}

impl InitrdDiff {
    pub(super) fn lines(&self) -> Lines {
        let mut l = Lines::new();
        let describe = |e: &InitrdEntry| format!("{} {} {}", e.path, e.mode, e.size);
        for e in &self.entries.removed {
            l.push((e.path.clone(), format!("- {}", describe(e))));
        }
        for e in &self.entries.added {
            l.push((e.path.clone(), format!("+ {}", describe(e))));
        }
        for Change { from: a, to: b } in &self.entries.modified {
            let mut what = Vec::new();
            if a.mode != b.mode {
                what.push(format!("mode {} -> {}", a.mode, b.mode));
            }
            if a.size != b.size {
                what.push(format!("size {} -> {}", a.size, b.size));
            } else if a.digest != b.digest {
                what.push("content modified".to_string());
            }
            l.push((b.path.clone(), format!("~ {}: {}", b.path, what.join(", "))));
        }
        l
    }
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];

/// The members of an initramfs image by path; a later member replaces an earlier one.
pub fn list(image: &[u8]) -> Result<BTreeMap<String, InitrdEntry>> {
    let mut out = BTreeMap::new();
    let mut rest = image;
    loop {
        rest = &rest[rest.iter().take_while(|b| **b == 0).count()..];
        if rest.is_empty() {
            return Ok(out);
        }
        let at = image.len() - rest.len();
        let what = |kind: &str| format!("reading the {kind} segment at byte {at}");
        if rest.starts_with(b"0707") {
            let mut r = rest;
            archive(&mut r, &mut out).with_context(|| what("cpio"))?;
            rest = r;
        } else if rest.starts_with(GZIP) {
            // Each decoder stops at the end of its stream and gives back what follows.
            let mut d = flate2::bufread::GzDecoder::new(rest);
            archives(&mut d, &mut out).with_context(|| what("gzip"))?;
            rest = d.into_inner();
        } else if rest.starts_with(ZSTD) {
            let mut d = zstd::stream::read::Decoder::with_buffer(rest)?.single_frame();
            archives(&mut d, &mut out).with_context(|| what("zstd"))?;
            rest = d.finish();
        } else if rest.starts_with(XZ) {
            let mut d = XzSegment::new(rest)?;
            archives(&mut d, &mut out).with_context(|| what("xz"))?;
            rest = d.input;
        } else {
            let magic: Vec<String> = rest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            bail!(
                "the bytes at {at} ({}) are neither cpio, gzip, zstd nor xz",
                magic.join(" ")
            );
        }
    }
}

/// One xz stream at the start of `input`, decompressed; `input` is left at what
/// follows it (xz2's own reader calls anything after the stream corrupt).
struct XzSegment<'a> {
    input: &'a [u8],
    stream: xz2::stream::Stream,
    done: bool,
}

impl<'a> XzSegment<'a> {
    fn new(input: &'a [u8]) -> Result<Self> {
        let stream = xz2::stream::Stream::new_stream_decoder(u64::MAX, 0)
            .context("starting an xz decoder")?;
        Ok(XzSegment {
            input,
            stream,
            done: false,
        })
    }
}

impl Read for XzSegment<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use xz2::stream::{Action, Status};
        while !self.done && !buf.is_empty() {
            let (in0, out0) = (self.stream.total_in(), self.stream.total_out());
            let action = if self.input.is_empty() {
                Action::Finish
            } else {
                Action::Run
            };
            let status = self.stream.process(self.input, buf, action)?;
            let consumed = (self.stream.total_in() - in0) as usize;
            let read = (self.stream.total_out() - out0) as usize;
            self.input = &self.input[consumed..];
            self.done = status == Status::StreamEnd;
            if read > 0 {
                return Ok(read);
            }
            if consumed == 0 && !self.done {
                let kind = if self.input.is_empty() {
                    std::io::ErrorKind::UnexpectedEof
                } else {
                    std::io::ErrorKind::InvalidData
                };
                return Err(std::io::Error::new(kind, "truncated or corrupt xz stream"));
            }
        }
        Ok(0)
    }
}

/// The cpio archives of a decompressed stream, until its end.
fn archives(r: impl Read, out: &mut BTreeMap<String, InitrdEntry>) -> Result<()> {
    let mut r = BufReader::new(r);
    while cpio::skip_padding(&mut r)? {
        archive(&mut r, out)?;
    }
    Ok(())
}

/// One cpio archive, up to its trailer.
fn archive(r: &mut impl Read, out: &mut BTreeMap<String, InitrdEntry>) -> Result<()> {
    let mut c = cpio::Reader::new(r);
    // Hardlinked files: newc gives the data to the last of each set only.
    let mut links: HashMap<u64, Vec<String>> = HashMap::new();
    while let Some(e) = c.next_entry()? {
        if e.name.is_empty() || e.name == "." {
            continue;
        }
        let path = format!("/{}", e.name);
        let digest = match e.kind() {
            cpio::S_IFREG | cpio::S_IFLNK => {
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = c.read_data(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                Some(hex::encode(h.finalize()))
            }
            _ => None,
        };
        if e.kind() == cpio::S_IFREG && e.nlink > 1 {
            links.entry(e.ino).or_default().push(path.clone());
        }
        let entry = InitrdEntry {
            path: path.clone(),
            mode: format!("{:o}", e.mode),
            size: e.size,
            digest,
        };
        out.insert(path, entry);
    }
    c.into_inner()?;
    for paths in links.values() {
        let with_data = paths
            .iter()
            .rev()
            .find_map(|p| out.get(p).filter(|e| e.size > 0).cloned());
        if let Some(d) = with_data {
            for p in paths {
                if let Some(e) = out.get_mut(p) {
                    e.size = d.size;
                    e.digest.clone_from(&d.digest);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn cpio_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = cpio::Writer::new(Vec::new());
        w.dir("usr").unwrap();
        for (p, data) in files {
            w.file(p, 0o644, data).unwrap();
        }
        w.finish().unwrap()
    }

    fn compressed(ext: &str, data: &[u8]) -> Vec<u8> {
        match ext {
            "gz" => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            "zst" => zstd::encode_all(data, 3).unwrap(),
            "xz" => {
                let mut w = xz2::write::XzEncoder::new(Vec::new(), 6);
                w.write_all(data).unwrap();
                w.finish().unwrap()
            }
            _ => data.to_vec(),
        }
    }

    /// An early plain archive, zero padding, then the three compressed kinds, each
    /// holding two archives, the last of which replaces an earlier member.
    fn image(main_content: &[u8]) -> Vec<u8> {
        let mut img = cpio_of(&[("early/microcode.bin", b"ucode")]);
        img.extend([0u8; 508]);
        for (i, ext) in ["gz", "zst", "xz"].iter().enumerate() {
            let name = format!("usr/lib/{ext}.so");
            let mut inner = cpio_of(&[(name.as_str(), main_content)]);
            inner.extend([0u8; 12]);
            inner.extend(cpio_of(&[(format!("usr/{i}").as_str(), b"x")]));
            img.extend(compressed(ext, &inner));
        }
        img.extend(cpio_of(&[("usr/0", b"replaced")]));
        img
    }

    #[test]
    fn lists_concatenated_and_compressed_archives() {
        let l = list(&image(b"v1")).unwrap();
        let paths: Vec<&str> = l.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/early/microcode.bin",
                "/usr",
                "/usr/0",
                "/usr/1",
                "/usr/2",
                "/usr/lib/gz.so",
                "/usr/lib/xz.so",
                "/usr/lib/zst.so",
            ]
        );
        let f = &l["/usr/lib/xz.so"];
        assert_eq!((f.mode.as_str(), f.size), ("100644", 2));
        assert_eq!(l["/usr"].mode, "40755");
        assert_eq!(l["/usr/0"].size, 8, "the later archive wins");
    }

    #[test]
    fn diff_sees_content_changes_of_equal_size() {
        let (a, b) = (list(&image(b"v1")).unwrap(), list(&image(b"v2")).unwrap());
        let mut c = list(&image(b"v2")).unwrap();
        c.remove("/usr/2");
        let d = InitrdDiff {
            image: Change {
                from: "/usr/lib/modules/6.0/initramfs.img".into(),
                to: "/usr/lib/modules/6.1/initramfs.img".into(),
            },
            entries: Changes::of(&a, &c),
        };
        assert!(Changes::of(&a, &a).is_empty());
        assert_eq!(Changes::of(&a, &b).modified.len(), 3);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["removed"],
            serde_json::json!([{"path": "/usr/2", "mode": "100644", "size": 1}])
        );
        assert_eq!(json["image"]["to"], "/usr/lib/modules/6.1/initramfs.img");
        let lines: Vec<String> = d.lines().into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            lines,
            [
                "- /usr/2 100644 1",
                "~ /usr/lib/gz.so: content modified",
                "~ /usr/lib/xz.so: content modified",
                "~ /usr/lib/zst.so: content modified",
            ]
        );
    }

    #[test]
    fn hardlinks_get_the_data_of_their_set() {
        // What GNU cpio writes for two links to one file.
        let t = tempfile::tempdir().unwrap();
        fs_err::write(t.path().join("a"), "same").unwrap();
        fs_err::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        let mut child = cmdext::command("cpio")
            .args(["-o", "-H", "newc", "--quiet"])
            .current_dir(t.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let l = list(&out.stdout).unwrap();
        assert_eq!((l["/a"].size, l["/b"].size), (4, 4));
        assert_eq!(l["/a"].digest, l["/b"].digest);
    }

    #[test]
    fn garbage_is_an_error_naming_where() {
        let mut img = cpio_of(&[("x", b"1")]);
        let at = img.len();
        img.extend(b"BZh91AY&SY");
        let e = format!("{:#}", list(&img).unwrap_err());
        assert!(e.contains(&format!("bytes at {at}")), "{e}");
        let mut img = compressed("gz", b"not a cpio archive at all, really not");
        img.extend(cpio_of(&[]));
        let e = format!("{:#}", list(&img).unwrap_err());
        assert!(e.contains("gzip segment at byte 0"), "{e}");
    }
}
