use anyhow::{bail, Result};
pub fn run(_g: &crate::cli::GlobalOpts, _o: &crate::cli::ManifestOpts) -> Result<()> {
    bail!("manifest: not yet")
}
