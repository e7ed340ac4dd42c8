//! `cosa buildextend-*`, `cosa osbuild`, `cosa compress`, `cosa decompress`.

use anyhow::{bail, Context, Result};
use cmdext::{command, CommandRunExt};
use fs_err as fs;
use rayon::prelude::*;

use crate::arch::Arch;
use crate::builds::artifact::{sha256_file, Artifact, BuiltImage};
use crate::builds::{History, Meta, Workdir};
use crate::cli::{CompressOpts, CompressorArg, GlobalOpts, ImageOpts, OsbuildOpts};
use crate::config::image::{Compressor, ImageConfig};
use crate::image::{build_images, ImageOptions};
use crate::platform::Platform;

fn run_images(g: &GlobalOpts, platforms: &[Platform], o: &ImageOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let started = std::time::Instant::now();
    let opts = ImageOptions {
        build: o.build.as_deref(),
        platforms,
        force: o.force,
        arch: Arch::host()?,
    };
    let results = build_images(&wd, &opts)?;
    print_built(&results, o.json, started)
}

/// The summary of an image build: a line per artifact, or JSON with `--json`.
pub fn print_built(results: &[BuiltImage], json: bool, started: std::time::Instant) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "images": results, "seconds": started.elapsed().as_secs_f64(),
            }))?
        );
        return Ok(());
    }
    for r in results {
        let what = if r.built { "built" } else { "already built" };
        println!(
            "{:14} {what}: {} ({} bytes)",
            r.name, r.image.path, r.image.size
        );
    }
    Ok(())
}

pub fn buildextend(g: &GlobalOpts, platform: Platform, o: &ImageOpts) -> Result<()> {
    run_images(g, &[platform], o)
}

pub fn osbuild(g: &GlobalOpts, o: &OsbuildOpts) -> Result<()> {
    run_images(g, &o.platforms, &o.image)
}

/// Images not worth compressing: already compressed, or meant to be used as they are.
fn skip_compress(name: &str, path: &str) -> bool {
    let compressed = [".gz", ".xz", ".zst"].iter().any(|ext| path.ends_with(ext));
    compressed
        || match name.parse::<Platform>() {
            Ok(p) => p.skips_compress(),
            // The OCI archive and the live media are used as they are.
            Err(_) => name == "ostree" || name.starts_with("live"),
        }
}

fn open_build(g: &GlobalOpts, build: Option<&str>) -> Result<(Workdir, std::path::PathBuf)> {
    let wd = Workdir::open(&g.workdir)?;
    let h = History::new(wd.builds_dir());
    let id = h.resolve_id(build)?;
    let dir = h.build_dir(&id, Arch::host()?.name());
    Ok((wd, dir))
}

pub fn compress(g: &GlobalOpts, o: &CompressOpts) -> Result<()> {
    let (wd, dir) = open_build(g, o.build.as_deref())?;
    let _lock = wd.lock("compress", true)?;
    let compressor = match o.compressor {
        Some(CompressorArg::Xz) => Compressor::Xz,
        Some(CompressorArg::Zstd) => Compressor::Zstd,
        None => ImageConfig::load(&wd.config_dir())?.compressor,
    };
    // Each writes FILE.EXT beside FILE and keeps FILE until meta.json no longer names it.
    let (prog, ext): (&[&str], &str) = match compressor {
        Compressor::Xz => (&["xz", "-T1", "-6", "-k", "-f"], "xz"),
        Compressor::Zstd => (&["zstd", "-q", "-T1", "-10", "-k", "-f"], "zst"),
        Compressor::Gzip => (&["gzip", "-n", "-6", "-k", "-f"], "gz"),
    };
    let meta_path = dir.join("meta.json");
    let mut meta = Meta::load(&meta_path)?;
    let todo: Vec<(String, Artifact)> = meta
        .images
        .iter()
        .filter(|(n, a)| !skip_compress(n, &a.path))
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
    let done: Vec<(String, Artifact)> = todo
        .par_iter()
        .map(|(name, a)| {
            let src = dir.join(&a.path);
            let dest = dir.join(format!("{}.{ext}", a.path));
            command(prog[0])
                .args(&prog[1..])
                .arg(&src)
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
    for (name, c) in &done {
        let orig = c.path.rsplit_once('.').map(|x| x.0).unwrap_or(&c.path);
        fs::remove_file(dir.join(orig))?;
        println!(
            "{name}: {} ({} → {} bytes)",
            c.path,
            c.uncompressed_size.unwrap_or(0),
            c.size
        );
    }
    if done.is_empty() {
        println!("Nothing to compress.");
    }
    Ok(())
}

pub fn decompress(g: &GlobalOpts, o: &CompressOpts) -> Result<()> {
    let (wd, dir) = open_build(g, o.build.as_deref())?;
    let _lock = wd.lock("decompress", true)?;
    let meta_path = dir.join("meta.json");
    let mut meta = Meta::load(&meta_path)?;
    let todo: Vec<(String, Artifact)> = meta
        .images
        .iter()
        .filter(|(_, a)| a.uncompressed_sha256.is_some())
        .map(|(n, a)| (n.clone(), a.clone()))
        .collect();
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
                },
            ))
        })
        .collect::<Result<_>>()?;
    let compressed: Vec<String> = todo.iter().map(|(_, a)| a.path.clone()).collect();
    for (name, a) in &done {
        meta.images.insert(name.clone(), a.clone());
    }
    meta.save(&meta_path)?;
    for p in compressed {
        fs::remove_file(dir.join(&p))?;
    }
    println!("Decompressed {} image(s).", done.len());
    Ok(())
}
