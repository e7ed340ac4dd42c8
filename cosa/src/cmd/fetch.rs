//! `cosa fetch`: resolve and download the package set, write the generated lockfile.

use anyhow::Result;

use crate::builds::Workdir;
use crate::cli::{FetchOpts, GlobalOpts};
use crate::compose::fetch::{fetch_and_lock, FetchOptions};

use super::load_treefile;

pub fn run(g: &GlobalOpts, o: &FetchOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let tf = load_treefile(&wd)?;
    let opts = FetchOptions {
        strict: o.strict,
        update_lockfile: o.update_lockfile,
    };
    let r = fetch_and_lock(&wd, &tf, &opts)?;
    if let Some(dest) = &r.config_lockfile {
        println!("Updated {}", dest.display());
    }
    let f = &r.fetched;
    println!(
        "Fetched {} packages: {} downloaded ({} bytes), {} already cached{}; lockfile {}",
        f.packages.len(),
        f.stats.downloaded,
        f.stats.bytes,
        f.stats.reused,
        if f.overrides_active {
            "; overrides/rpm active"
        } else {
            ""
        },
        r.lockfile.display()
    );
    Ok(())
}
