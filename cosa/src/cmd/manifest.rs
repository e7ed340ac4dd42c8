//! `cosa manifest`: print the fully resolved treefile.

use anyhow::Result;

use crate::builds::Workdir;
use crate::cli::{GlobalOpts, ManifestOpts};
use crate::config::treefile::Treefile;

pub fn run(g: &GlobalOpts, o: &ManifestOpts) -> Result<()> {
    let tf = match &o.path {
        Some(p) => Treefile::load(p, crate::arch::Arch::host()?.name())?,
        None => super::load_treefile(&Workdir::open(&g.workdir)?)?,
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&tf)?);
    } else {
        print!("{}", serde_yaml::to_string(&tf)?);
    }
    Ok(())
}
