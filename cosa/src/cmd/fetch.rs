use anyhow::{bail, Result};
pub fn run(_g: &crate::cli::GlobalOpts, _o: &crate::cli::FetchOpts) -> Result<()> {
    bail!("fetch: not yet")
}
