//! Compressing layers on all cores, reproducibly. A layer's tar stream is cut into
//! chunks of a fixed size as it is written; each chunk is compressed by a rayon task
//! (the writer keeps going), and the results are joined into one stream:
//! - gzip: one member whose deflate stream is the chunks' raw deflate streams, each
//!   but the last ended by a sync flush (byte-aligned, not final), as `pigz -i` does;
//!   its CRC-32 is the chunks' CRCs combined. No timestamp, no file name.
//! - zstd: one frame per chunk (decoders read concatenated frames).
//!
//! Chunk boundaries sit at fixed offsets of the tar stream, so the bytes never depend
//! on scheduling; a big layer (the kernel's) no longer keeps one core busy while the
//! other idles, and nothing uncompressed touches the disk.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How an OCI layer (or a GCP tarball) is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
}

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::layer::{HashingWriter, LayerWriter};

/// Uncompressed bytes per gzip chunk: the 32 KiB window lost at each cut costs little.
const GZIP_CHUNK: usize = 1 << 20;
/// zstd's window is larger; larger chunks keep its ratio.
const ZSTD_CHUNK: usize = 4 << 20;
/// gzip level: flate2's default (6), the level ostree-ext uses.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// A finished layer: its blob in memory and both digests.
pub struct Layer {
    pub data: Vec<u8>,
    /// sha256 of `data`.
    pub digest: String,
    /// sha256 of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
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

type Part = Result<(Vec<u8>, crc32fast::Hasher)>;

fn compress_chunk(c: Compression, data: &[u8], last: bool) -> Part {
    let mut crc = crc32fast::Hasher::new();
    let out = match c {
        Compression::Gzip => {
            crc.update(data);
            deflate(data, last)?
        }
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL)?,
    };
    Ok((out, crc))
}

/// The sink under a layer's tar: fills chunks and hands each to a compression task.
pub struct ChunkWriter<'a, 's> {
    scope: &'a rayon::Scope<'s>,
    c: Compression,
    chunk: usize,
    buf: Vec<u8>,
    parts: Arc<Mutex<Vec<Option<Part>>>>,
    in_flight: Arc<AtomicUsize>,
}

impl<'a, 's> ChunkWriter<'a, 's> {
    fn dispatch(&mut self, data: Vec<u8>, last: bool) {
        let idx = {
            let mut p = self.parts.lock().expect("parts lock");
            p.push(None);
            p.len() - 1
        };
        // Enough queued: compress this one here rather than pile up memory.
        if self.in_flight.load(Ordering::Acquire) >= 4 * rayon::current_num_threads() {
            let r = compress_chunk(self.c, &data, last);
            self.parts.lock().expect("parts lock")[idx] = Some(r);
            return;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let (parts, in_flight, c) = (self.parts.clone(), self.in_flight.clone(), self.c);
        self.scope.spawn(move |_| {
            let r = compress_chunk(c, &data, last);
            parts.lock().expect("parts lock")[idx] = Some(r);
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    fn finish(mut self) {
        let rest = std::mem::take(&mut self.buf);
        self.dispatch(rest, true);
    }
}

impl Write for ChunkWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.chunk - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
            self.dispatch(full, false);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Build one layer: `fill` writes its entries; compression runs alongside.
pub fn build_layer(
    c: Compression,
    fill: impl FnOnce(&mut LayerWriter<ChunkWriter<'_, '_>>) -> Result<()> + Send,
) -> Result<Layer> {
    let chunk = match c {
        Compression::Gzip => GZIP_CHUNK,
        Compression::Zstd => ZSTD_CHUNK,
    };
    let parts: Arc<Mutex<Vec<Option<Part>>>> = Arc::default();
    let (diff_id, size) = rayon::scope(|s| -> Result<(String, u64)> {
        let sink = ChunkWriter {
            scope: s,
            c,
            chunk,
            buf: Vec::with_capacity(chunk),
            parts: parts.clone(),
            in_flight: Arc::default(),
        };
        let mut w = LayerWriter::new(HashingWriter::new(sink));
        fill(&mut w)?;
        let (sink, diff_id, size) = w.finish()?.finish();
        sink.finish();
        Ok((diff_id, size))
    })?;
    let parts = std::mem::take(&mut *parts.lock().expect("parts lock"));
    let mut data = match c {
        // magic, deflate, no flags, mtime 0, no extra flags, OS unknown (as flate2 writes).
        Compression::Gzip => vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
        Compression::Zstd => Vec::new(),
    };
    let mut crc = crc32fast::Hasher::new();
    for p in parts {
        let (bytes, h) = p.context("a compression task did not finish")??;
        data.extend_from_slice(&bytes);
        crc.combine(&h);
    }
    if c == Compression::Gzip {
        data.extend_from_slice(&crc.finalize().to_le_bytes());
        data.extend_from_slice(&(size as u32).to_le_bytes());
    }
    let digest = hex::encode(Sha256::digest(&data));
    Ok(Layer {
        data,
        digest,
        diff_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn layer_of(c: Compression, data: &[u8]) -> Layer {
        build_layer(c, |w| w.raw(data)).unwrap()
    }

    #[test]
    fn chunked_streams_decode_as_one() {
        // Three chunks and a bit, compressible and not.
        let mut data = Vec::new();
        let mut x: u32 = 1;
        while data.len() < 3 * GZIP_CHUNK + 12345 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            data.extend_from_slice(format!("line {} {}\n", data.len() % 977, x >> 16).as_bytes());
        }
        let gz = layer_of(Compression::Gzip, &data);
        let mut back = Vec::new();
        // A single-member reader (ostree-ext's): the layer must be one gzip member.
        flate2::read::GzDecoder::new(gz.data.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        // The tar's end-of-archive blocks follow what was written.
        let tail = |d: &[u8]| [d, &[0u8; 1024][..]].concat();
        assert_eq!(back, tail(&data));
        assert_eq!(gz.diff_id, hex::encode(Sha256::digest(tail(&data))));
        assert_eq!(gz.digest, layer_of(Compression::Gzip, &data).digest);
        let zs = layer_of(Compression::Zstd, &data);
        assert_eq!(zstd::decode_all(zs.data.as_slice()).unwrap(), tail(&data));

        for small in [&b"tiny"[..], &data[..GZIP_CHUNK]] {
            let gz = layer_of(Compression::Gzip, small);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(gz.data.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, tail(small));
        }
    }
}
