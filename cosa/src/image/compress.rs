//! `cosa compress` and `cosa decompress`: a build's images compressed in place, with
//! meta.json keeping the uncompressed digests (and checking them on the way back).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cmdext::{command, CommandRunExt};
use fs_err as fs;
use rayon::prelude::*;

use crate::arch::Arch;
use crate::builds::artifact::{sha256_file, Artifact};
use crate::builds::{History, Meta, Workdir};
use crate::config::image::{Compressor, ImageConfig};
use crate::platform::Platform;

/// Which build, and (for compression) with what.
pub struct CompressOptions<'a> {
    /// Build ID (default: the latest build).
    pub build: Option<&'a str>,
    /// The compressor; unset: image.yaml's.
    pub compressor: Option<Compressor>,
    pub arch: Arch,
}

/// Images not worth compressing: already compressed, or meant to be used as they are.
fn skip_compress(name: &str, path: &str) -> bool {
    let compressed = [".gz", ".xz", ".zst"].iter().any(|ext| path.ends_with(ext));
    compressed
        || match name.parse::<Platform>() {
            Ok(p) => p.skips_compress(),
            // The OCI archive, the live media and the SBOM are used as they are.
            Err(_) => name == "ostree" || name == "sbom" || name.starts_with("live"),
        }
}

fn build_dir(wd: &Workdir, opts: &CompressOptions) -> Result<PathBuf> {
    let h = History::new(wd.builds_dir());
    let id = h.resolve_id(opts.build)?;
    Ok(h.build_dir(&id, opts.arch.name()))
}

/// Images named in `meta`, with their artifacts, that `keep` selects.
fn images(meta: &Meta, keep: impl Fn(&str, &Artifact) -> bool) -> Vec<(String, Artifact)> {
    meta.images
        .iter()
        .filter(|(n, a)| keep(n, a))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect()
}

/// Compress the build's images; returns the compressed artifacts by name.
pub fn compress(wd: &Workdir, opts: &CompressOptions) -> Result<Vec<(String, Artifact)>> {
    let dir = build_dir(wd, opts)?;
    let _lock = wd.lock("compress", true)?;
    let compressor = match opts.compressor {
        Some(c) => c,
        None => ImageConfig::load(&wd.config_file("image", "yaml")?)?.compressor,
    };
    // Each writes FILE.EXT beside FILE and keeps FILE until meta.json no longer names it.
    let (prog, ext): (&[&str], &str) = match compressor {
        Compressor::Xz => (&["xz", "-T1", "-6", "-k", "-f"], "xz"),
        Compressor::Zstd => (&["zstd", "-q", "-T1", "-10", "-k", "-f"], "zst"),
        Compressor::Gzip => (&["gzip", "-n", "-6", "-k", "-f"], "gz"),
    };
    let meta_path = dir.join("meta.json");
    let mut meta = Meta::load(&meta_path)?;
    let todo = images(&meta, |n, a| !skip_compress(n, &a.path));
    let done: Vec<(String, Artifact)> = todo
        .par_iter()
        .map(|(name, a)| {
            let dest = dir.join(format!("{}.{ext}", a.path));
            command(prog[0])
                .args(&prog[1..])
                .arg(dir.join(&a.path))
                .run()
                .with_context(|| format!("compressing {}", a.path))?;
            let mut c = Artifact::of(&dest)?;
            c.uncompressed_sha256 = Some(a.sha256.clone());
            c.uncompressed_size = Some(a.size);
            Ok((name.clone(), c))
        })
        .collect::<Result<_>>()?;
    for (name, c) in &done {
        meta.images.insert(name.clone(), c.clone());
    }
    meta.save(&meta_path)?;
    remove_replaced(&dir, &todo)?;
    Ok(done)
}

/// Remove the files that meta.json no longer names, with the signatures `cosa sign`
/// made of them (they signed the file, not what replaced it).
fn remove_replaced(dir: &Path, replaced: &[(String, Artifact)]) -> Result<()> {
    for (_, a) in replaced {
        fs::remove_file(dir.join(&a.path))?;
        for sig in a.signatures.iter().filter_map(|s| s.path.as_ref()) {
            match fs::remove_file(dir.join(sig)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Decompress the build's compressed images, checking their uncompressed digests;
/// returns how many.
pub fn decompress(wd: &Workdir, opts: &CompressOptions) -> Result<usize> {
    let dir = build_dir(wd, opts)?;
    let _lock = wd.lock("decompress", true)?;
    let meta_path = dir.join("meta.json");
    let mut meta = Meta::load(&meta_path)?;
    let todo = images(&meta, |_, a| a.uncompressed_sha256.is_some());
    let done: Vec<(String, Artifact)> = todo
        .par_iter()
        .map(|(name, a)| {
            let (orig, ext) = a
                .path
                .rsplit_once('.')
                .context("compressed image without extension")?;
            let prog = match ext {
                "xz" => "xz",
                "zst" => "zstd",
                "gz" => "gzip",
                other => bail!("{}: unknown compression .{other}", a.path),
            };
            let out = dir.join(orig);
            command(prog)
                .args(["-d", "-k", "-f", "-q"])
                .arg(dir.join(&a.path))
                .run()
                .with_context(|| format!("decompressing {}", a.path))?;
            let (sha, size) = sha256_file(&out)?;
            if Some(&sha) != a.uncompressed_sha256.as_ref() {
                fs::remove_file(&out)?;
                bail!(
                    "{}: decompressed content does not match uncompressed-sha256 in meta.json",
                    a.path
                );
            }
            Ok((
                name.clone(),
                Artifact {
                    path: orig.to_string(),
                    sha256: sha,
                    size,
                    uncompressed_sha256: None,
                    uncompressed_size: None,
                    signatures: Vec::new(),
                },
            ))
        })
        .collect::<Result<_>>()?;
    for (name, a) in &done {
        meta.images.insert(name.clone(), a.clone());
    }
    meta.save(&meta_path)?;
    remove_replaced(&dir, &todo)?;
    Ok(done.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_compress_leaves_alone() {
        assert!(!skip_compress("qemu", "x-qemu.x86_64.qcow2"));
        assert!(!skip_compress("metal4k", "x-metal4k.x86_64.raw"));
        assert!(skip_compress("aws", "x-aws.x86_64.vmdk"));
        assert!(skip_compress("gcp", "x-gcp.x86_64.tar.gz"));
        assert!(skip_compress("qemu", "x-qemu.x86_64.qcow2.xz"));
        assert!(skip_compress("ostree", "x-ostree.x86_64.ociarchive"));
        assert!(skip_compress("sbom", "x-1-sbom.x86_64.spdx.json"));
        assert!(skip_compress("live-iso", "x-live-iso.x86_64.iso"));
        assert!(!skip_compress(
            "oci-manifest",
            "x-ostree.x86_64-manifest.json"
        ));
    }
}
