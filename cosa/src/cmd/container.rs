//! `cosa build-container`, `cosa push-container`, `cosa import` (being written).

use anyhow::{bail, Result};

use crate::cli::{BuildContainerOpts, GlobalOpts, ImportOpts, PushContainerOpts};

pub fn build(_g: &GlobalOpts, _o: &BuildContainerOpts) -> Result<()> {
    bail!("build-container: not implemented yet")
}

pub fn push(_g: &GlobalOpts, _o: &PushContainerOpts) -> Result<()> {
    bail!("push-container: not implemented yet")
}

pub fn import(_g: &GlobalOpts, _o: &ImportOpts) -> Result<()> {
    bail!("import: not implemented yet")
}
