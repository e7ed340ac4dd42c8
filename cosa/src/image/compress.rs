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
    let compressed = [".gz", ".xz", ".zst", ".zip"]
        .iter()
        .any(|ext| path.ends_with(ext));
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
    let img = ImageConfig::load(&wd.config_file("image", "yaml")?)?;
    let default = opts.compressor.unwrap_or(img.compressor);
    for name in img.platform_compressor.keys() {
        name.parse::<Platform>()
            .with_context(|| format!("image.yaml platform-compressor: {name}"))?;
    }
    let meta_path = dir.join("meta.json");
    let mut meta = Meta::load(&meta_path)?;
    let todo = images(&meta, |n, a| !skip_compress(n, &a.path));
    let results: Vec<Result<(String, Artifact)>> = todo
        .par_iter()
        .map(|(name, a)| {
            let c = img
                .platform_compressor
                .get(name)
                .copied()
                .unwrap_or(default);
            let dest = compress_file(c, &dir.join(&a.path))
                .with_context(|| format!("compressing {} with {}", a.path, c.name()))?;
            let mut compressed = Artifact::of(&dest)?;
            compressed.uncompressed_sha256 = Some(a.sha256.clone());
            compressed.uncompressed_size = Some(a.size);
            Ok((name.clone(), compressed))
        })
        .collect();
    if let Some(e) = results.iter().position(Result::is_err) {
        // meta.json is untouched: drop what the others wrote, and say what failed.
        for (_, c) in results.iter().flatten() {
            let _ = fs::remove_file(dir.join(&c.path));
        }
        return Err(results
            .into_iter()
            .nth(e)
            .and_then(Result::err)
            .expect("an error"));
    }
    let done: Vec<(String, Artifact)> = results.into_iter().flatten().collect();
    for (name, c) in &done {
        meta.images.insert(name.clone(), c.clone());
    }
    meta.save(&meta_path)?;
    remove_replaced(&dir, &todo)?;
    Ok(done)
}

/// Compress `src` beside it, keeping it (it goes once meta.json no longer names
/// it); returns the compressed file.
fn compress_file(c: Compressor, src: &Path) -> Result<PathBuf> {
    let ext = match c {
        Compressor::Xz => "xz",
        Compressor::Zstd => "zst",
        Compressor::Gzip => "gz",
        Compressor::Zip => "zip",
    };
    let dest = PathBuf::from(format!("{}.{ext}", src.display()));
    match c {
        Compressor::Xz => command("xz")
            .args(["-T1", "-6", "-k", "-f"])
            .arg(src)
            .run()?,
        Compressor::Zstd => command("zstd")
            .args(["-q", "-T1", "-10", "-k", "-f"])
            .arg(src)
            .run()?,
        Compressor::Gzip => command("gzip")
            .args(["-n", "-6", "-k", "-f"])
            .arg(src)
            .run()?,
        // The one member is the file by its own name; -X: no uid/gid extra fields.
        Compressor::Zip => {
            let _ = fs::remove_file(&dest);
            command("zip")
                .args(["-q", "-j", "-X"])
                .arg(&dest)
                .arg(src)
                .run()?
        }
    }
    Ok(dest)
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
            let out = dir.join(orig);
            let src = dir.join(&a.path);
            let mut cmd = match ext {
                "xz" => command("xz"),
                "zst" => command("zstd"),
                "gz" => command("gzip"),
                "zip" => command("unzip"),
                other => bail!("{}: unknown compression .{other}", a.path),
            };
            if ext == "zip" {
                // The member named like the image, nothing else.
                let member = Path::new(orig)
                    .file_name()
                    .context("compressed image without a file name")?;
                cmd.args(["-o", "-q"])
                    .arg(&src)
                    .arg(member)
                    .arg("-d")
                    .arg(&dir);
            } else {
                cmd.args(["-d", "-k", "-f", "-q"]).arg(&src);
            }
            cmd.run()
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
