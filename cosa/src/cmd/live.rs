//! `cosa buildextend-live`, `cosa iso customize`, `cosa pxe customize`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::builds::{History, Workdir};
use crate::cli::{CustomizeOpts, GlobalOpts, ImageOpts, LiveMediaAction, LiveMediaOpts};
use crate::live::customize::{self, Customization};

pub fn buildextend(g: &GlobalOpts, o: &ImageOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let id = History::new(wd.builds_dir()).resolve_id(o.build.as_deref())?;
    let started = std::time::Instant::now();
    let results = crate::live::build_live(&wd, Some(&id), o.force)?;
    super::images::print_built(&results, o.json, started)
}

fn customize_opts(o: &LiveMediaOpts) -> &CustomizeOpts {
    match &o.action {
        LiveMediaAction::Customize(c) => c,
    }
}

pub fn iso(_g: &GlobalOpts, o: &LiveMediaOpts) -> Result<()> {
    let c = customize_opts(o);
    let custom = Customization::from_opts(c)?;
    customize::iso(&c.input, &c.output, c.force, &custom)?;
    println!("Wrote {}", c.output.display());
    Ok(())
}

/// The build's live rootfs beside its live initramfs (`…-live-initramfs.ARCH.img`).
fn rootfs_beside(initramfs: &std::path::Path) -> Result<PathBuf> {
    let name = initramfs
        .file_name()
        .and_then(|n| n.to_str())
        .context("initramfs path has no file name")?;
    let guess = name.replace("-live-initramfs.", "-live-rootfs.");
    if guess == name {
        anyhow::bail!(
            "{}: not named like a live initramfs; give the live rootfs with --rootfs",
            initramfs.display()
        );
    }
    Ok(initramfs.with_file_name(guess))
}

pub fn pxe(_g: &GlobalOpts, o: &LiveMediaOpts) -> Result<()> {
    let c = customize_opts(o);
    let custom = Customization::from_opts(c)?;
    let rootfs = match &c.rootfs {
        Some(r) => r.clone(),
        None => rootfs_beside(&c.input)?,
    };
    customize::pxe(&c.input, &rootfs, &c.output, c.force, &custom)?;
    println!(
        "Wrote the PXE initramfs and rootfs to {}",
        c.output.display()
    );
    Ok(())
}
