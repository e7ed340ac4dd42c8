//! `cosa build-container`, `cosa push-container`, `cosa import`.

use anyhow::Result;

use crate::builds::Workdir;
use crate::cli::{BuildContainerOpts, GlobalOpts, ImportOpts, PushContainerOpts};
use crate::oci::archive::{self, BuildOptions, Built, ContainerRequest};
use crate::oci::import::{self, ImportOptions};
use crate::oci::push::{self, PushOptions};

pub fn build(g: &GlobalOpts, o: &BuildContainerOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let opts = BuildOptions {
        build: o.build.clone(),
        wait: o.wait,
        request: ContainerRequest {
            max_layers: o.max_layers,
            compression: o.compression,
            force: o.force,
        },
    };
    match archive::build(&wd, &opts)? {
        Built::Wrote(path) => println!("Wrote {path}"),
        Built::AlreadyThere(id) => {
            println!("Build {id} already has its container image (--force to rebuild it)")
        }
    }
    Ok(())
}

pub fn push(g: &GlobalOpts, o: &PushContainerOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let opts = PushOptions {
        build: o.build.clone(),
        dest: o.dest.clone(),
    };
    let pushed = push::push(&wd, &opts)?;
    println!(
        "Pushed {} to {} ({})",
        pushed.archive, o.dest, pushed.digest
    );
    Ok(())
}

pub fn import(g: &GlobalOpts, o: &ImportOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let opts = ImportOptions {
        image: o.image.clone(),
        version: o.version.clone(),
        wait: o.wait,
    };
    let b = import::import(&wd, &opts)?;
    let tmpfiles = if b.tmpfiles_lines > 0 {
        format!("; {} /var entries as tmpfiles.d lines", b.tmpfiles_lines)
    } else {
        String::new()
    };
    println!(
        "Imported {}: build {}, commit {} ({} layer(s) on {}{tmpfiles})",
        o.image, b.version, b.commit, b.derived_layers, b.base
    );
    Ok(())
}
