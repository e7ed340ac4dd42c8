//! `cosa kola run|list` and `cosa run` (being written).

use anyhow::{bail, Result};

use crate::cli::{GlobalOpts, KolaOpts, RunOpts};

pub fn run(_g: &GlobalOpts, _o: &KolaOpts) -> Result<()> {
    bail!("kola: not implemented yet")
}

pub fn run_vm(_g: &GlobalOpts, _o: &RunOpts) -> Result<()> {
    bail!("run: not implemented yet")
}
