use anyhow::{bail, Result};
pub fn run(_o: &crate::cli::InitOpts) -> Result<()> {
    bail!("init: not yet")
}
