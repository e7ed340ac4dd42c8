use anyhow::{bail, Result};
pub fn run(_g: &crate::cli::GlobalOpts, _o: &crate::cli::BuildOpts) -> Result<()> {
    bail!("build: not yet")
}
