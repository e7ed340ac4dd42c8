//! Compressing layers on all cores, reproducibly. Each layer tar is cut into chunks of
//! a fixed size that are compressed independently, in parallel across all layers, then
//! joined into one stream per layer:
//! - gzip: one member whose deflate stream is the chunks' raw deflate streams, each
//!   but the last ended by a sync flush (byte-aligned, not final), as `pigz -i` does;
//!   its CRC-32 is the chunks' CRCs combined. No timestamp, no file name.
//! - zstd: one frame per chunk (decoders read concatenated frames).
//!
//! The chunk size is fixed, so the bytes never depend on scheduling; a big layer (the
//! kernel's) no longer keeps one core busy while the other idles.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::layer::Tarball;
use crate::cli::Compression;

/// Uncompressed bytes per gzip chunk: the 32 KiB window lost at each cut costs little.
const GZIP_CHUNK: u64 = 1 << 20;
/// zstd's window is larger; larger chunks keep its ratio.
const ZSTD_CHUNK: u64 = 4 << 20;
/// gzip level: flate2's default (6), the level ostree-ext uses.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// A compressed layer blob, in memory.
pub struct Compressed {
    pub data: Vec<u8>,
    /// sha256 of `data`.
    pub digest: String,
}

struct Job {
    layer: usize,
    offset: u64,
    len: u64,
    last: bool,
}

/// One chunk as raw deflate, ended by a sync flush or, for the last, the final block.
fn deflate(data: &[u8], last: bool) -> Result<Vec<u8>> {
    use flate2::{FlushCompress, Status};
    let mut c = flate2::Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    let mut out: Vec<u8> = Vec::with_capacity(data.len() / 2 + 4096);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .context("deflate")?;
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A flush is complete once it left output space unused.
            _ if !last && all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

fn gzip_header() -> [u8; 10] {
    // magic, deflate, no flags, mtime 0, no extra flags, OS unknown (as flate2 writes).
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]
}

/// Compress every layer; results in the order of `tarballs`.
pub fn compress_all(tarballs: &[Tarball], c: Compression) -> Result<Vec<Compressed>> {
    let chunk = match c {
        Compression::Gzip => GZIP_CHUNK,
        Compression::Zstd => ZSTD_CHUNK,
    };
    let mut jobs = Vec::new();
    for (layer, t) in tarballs.iter().enumerate() {
        let n = t.size.div_ceil(chunk).max(1);
        for i in 0..n {
            let offset = i * chunk;
            jobs.push(Job {
                layer,
                offset,
                len: chunk.min(t.size - offset),
                last: i + 1 == n,
            });
        }
    }
    let parts: Vec<(Vec<u8>, crc32fast::Hasher)> = jobs
        .par_iter()
        .map(|j| {
            let t = &tarballs[j.layer];
            let f = File::open(&t.path).with_context(|| format!("opening {}", t.path.display()))?;
            let mut buf = vec![0u8; j.len as usize];
            f.read_exact_at(&mut buf, j.offset)
                .with_context(|| format!("reading {}", t.path.display()))?;
            let mut crc = crc32fast::Hasher::new();
            let out = match c {
                Compression::Gzip => {
                    crc.update(&buf);
                    deflate(&buf, j.last)?
                }
                Compression::Zstd => zstd::bulk::compress(&buf, ZSTD_LEVEL)?,
            };
            Ok((out, crc))
        })
        .collect::<Result<_>>()?;

    let mut out: Vec<Vec<u8>> = tarballs
        .iter()
        .map(|_| match c {
            Compression::Gzip => gzip_header().to_vec(),
            Compression::Zstd => Vec::new(),
        })
        .collect();
    let mut crcs: Vec<crc32fast::Hasher> =
        tarballs.iter().map(|_| crc32fast::Hasher::new()).collect();
    for (j, (data, crc)) in jobs.iter().zip(parts) {
        out[j.layer].extend_from_slice(&data);
        crcs[j.layer].combine(&crc);
    }
    let mut res = Vec::with_capacity(tarballs.len());
    for ((mut data, crc), t) in out.into_iter().zip(crcs).zip(tarballs) {
        if c == Compression::Gzip {
            data.extend_from_slice(&crc.finalize().to_le_bytes());
            data.extend_from_slice(&(t.size as u32).to_le_bytes());
        }
        if data.is_empty() {
            bail!("layer {} compressed to nothing", t.path.display());
        }
        let digest = hex::encode(Sha256::digest(&data));
        res.push(Compressed { data, digest });
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn tarball(dir: &std::path::Path, data: &[u8]) -> Tarball {
        let path = dir.join("t");
        std::fs::write(&path, data).unwrap();
        Tarball {
            path,
            diff_id: String::new(),
            size: data.len() as u64,
        }
    }

    #[test]
    fn chunked_streams_decode_as_one() {
        let t = tempfile::tempdir().unwrap();
        // Three chunks and a bit, compressible and not.
        let mut data = Vec::new();
        let mut x: u32 = 1;
        while data.len() < (3 * GZIP_CHUNK as usize + 12345) {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            data.extend_from_slice(format!("line {} {}\n", data.len() % 977, x >> 16).as_bytes());
        }
        let tb = tarball(t.path(), &data);
        let gz = compress_all(std::slice::from_ref(&tb), Compression::Gzip).unwrap();
        let mut back = Vec::new();
        // A single-member reader: the layer must be one gzip member.
        flate2::read::GzDecoder::new(gz[0].data.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(
            gz[0].digest,
            compress_all(std::slice::from_ref(&tb), Compression::Gzip).unwrap()[0].digest
        );
        let zs = compress_all(std::slice::from_ref(&tb), Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(zs[0].data.as_slice()).unwrap(), data);

        let small = tarball(t.path(), b"tiny");
        let gz = compress_all(&[small], Compression::Gzip).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz[0].data.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"tiny");
    }
}
