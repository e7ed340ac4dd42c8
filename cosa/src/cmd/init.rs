//! `cosa init`: make a workdir around a stream config.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::builds::init::{init, InitOptions, Initialized};
use crate::cli::InitOpts;

/// The config used when none is given: this repository's root, which is the demo
/// stream's config in fedora-coreos-config's layout (`manifest.yaml`, `manifests/`,
/// `overlays/`, …), or `COSA_DEFAULT_CONFIG` when set.
pub fn default_config() -> PathBuf {
    match std::env::var_os("COSA_DEFAULT_CONFIG") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the cosa crate lives in the workspace")
            .to_path_buf(),
    }
}

pub fn run(o: &InitOpts) -> Result<()> {
    let config = o
        .config
        .clone()
        .unwrap_or_else(|| default_config().to_string_lossy().into_owned());
    let opts = InitOptions {
        workdir: o.workdir.clone(),
        config: config.clone(),
        branch: o.branch.clone(),
        variant: o.variant.clone(),
    };
    match init(&opts)? {
        Initialized::Existing(wd, dir) => println!(
            "{} is already a workdir for {}",
            wd.root().display(),
            dir.display()
        ),
        Initialized::Created(wd) => println!(
            "Initialized workdir {} with config {config}{}",
            wd.root().display(),
            o.variant
                .as_ref()
                .map(|v| format!(", variant {v}"))
                .unwrap_or_default()
        ),
    }
    Ok(())
}
