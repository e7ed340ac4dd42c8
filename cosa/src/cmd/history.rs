use crate::cli::*;
use anyhow::{bail, Result};
pub fn list(_g: &GlobalOpts, _o: &ListOpts) -> Result<()> {
    bail!("not yet")
}
pub fn meta(_g: &GlobalOpts, _o: &MetaOpts) -> Result<()> {
    bail!("not yet")
}
pub fn diff(_g: &GlobalOpts, _o: &DiffOpts) -> Result<()> {
    bail!("not yet")
}
pub fn prune(_g: &GlobalOpts, _o: &PruneOpts) -> Result<()> {
    bail!("not yet")
}
pub fn tag(_g: &GlobalOpts, _o: &TagOpts) -> Result<()> {
    bail!("not yet")
}
