//! `cosa build`: compose the config into a new build (or say "No changes").

use anyhow::Result;

use crate::builds::Workdir;
use crate::cli::{BuildOpts, GlobalOpts};
use crate::compose::build::{build, BuildOptions, BuildOutcome};
use crate::compose::initramfs::Made;

use super::load_treefile;

// `cosa push-container` names the ref it pins by this too.

pub fn run(g: &GlobalOpts, o: &BuildOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let tf = load_treefile(&wd)?;
    let opts = BuildOptions {
        force: o.force,
        version: o.version.clone(),
        strict: o.strict,
        wait: o.wait,
    };
    match build(&wd, &tf, &opts)? {
        BuildOutcome::Unchanged { previous } => {
            println!(
                "No changes (inputs of build {previous} are unchanged; --force to build anyway)"
            )
        }
        BuildOutcome::Built(b) => println!(
            "Built {}: commit {} ({} packages: {} imported, {} from cache{})",
            b.version,
            b.composed.commit,
            b.packages,
            b.composed.import.imported,
            b.composed.import.reused,
            match (&b.composed.kernel, b.composed.initramfs) {
                (Some(k), Some(Made::Reused)) => format!("; kernel {k}, initramfs reused"),
                (Some(k), Some(Made::Generated)) => format!("; kernel {k}, initramfs generated"),
                (Some(k), None) => format!("; kernel {k}"),
                (None, _) => String::new(),
            }
        ),
    }
    Ok(())
}
