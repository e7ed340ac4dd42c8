//! `cosa buildextend-live`, `cosa iso customize`, `cosa pxe customize` (being written).

use anyhow::{bail, Result};

use crate::cli::{GlobalOpts, ImageOpts, LiveMediaOpts};

pub fn buildextend(_g: &GlobalOpts, _o: &ImageOpts) -> Result<()> {
    bail!("buildextend-live: not implemented yet")
}

pub fn iso(_g: &GlobalOpts, _o: &LiveMediaOpts) -> Result<()> {
    bail!("iso customize: not implemented yet")
}

pub fn pxe(_g: &GlobalOpts, _o: &LiveMediaOpts) -> Result<()> {
    bail!("pxe customize: not implemented yet")
}
