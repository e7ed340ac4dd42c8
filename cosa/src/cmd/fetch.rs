//! `cosa fetch`: resolve and download the package set, write the generated lockfile.

use anyhow::Result;

use crate::builds::workdir::write_atomic;
use crate::builds::Workdir;
use crate::cli::{FetchOpts, GlobalOpts};
use crate::compose::fetch;
use crate::config::lockfile::Lockfile;

use super::load_treefile;

pub fn run(g: &GlobalOpts, o: &FetchOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let _lock = wd.lock("fetch", true)?;
    let tf = load_treefile(&wd)?;
    let f = fetch::fetch(&wd, &tf, o.strict)?;
    let path = fetch::generated_lockfile_path(&wd, &tf.basearch);
    write_atomic(&path, &Lockfile::generated(&f.packages).to_json()?)?;
    if o.update_lockfile {
        let dest = tf
            .config_dir
            .join(format!("manifest-lock.{}.json", tf.basearch));
        let mut l = Lockfile::generated(&f.packages);
        l.metadata = None;
        write_atomic(&dest, &l.to_json()?)?;
        println!("Updated {}", dest.display());
    }
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
        path.display()
    );
    Ok(())
}
