//! `cosa buildextend-*`, `cosa osbuild`, `cosa compress`, `cosa decompress`.

use anyhow::Result;

use crate::arch::Arch;
use crate::builds::artifact::BuiltImage;
use crate::builds::Workdir;
use crate::cli::{CompressOpts, GlobalOpts, ImageOpts, OsbuildOpts};
use crate::image::compress::CompressOptions;
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

fn compress_options<'a>(o: &'a CompressOpts) -> Result<CompressOptions<'a>> {
    Ok(CompressOptions {
        build: o.build.as_deref(),
        compressor: o.compressor,
        arch: Arch::host()?,
    })
}

pub fn compress(g: &GlobalOpts, o: &CompressOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let done = crate::image::compress::compress(&wd, &compress_options(o)?)?;
    for (name, c) in &done {
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
    let wd = Workdir::open(&g.workdir)?;
    let n = crate::image::compress::decompress(&wd, &compress_options(o)?)?;
    println!("Decompressed {n} image(s).");
    Ok(())
}
