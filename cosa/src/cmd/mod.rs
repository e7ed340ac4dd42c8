//! One module per command; `main.rs` dispatches here.

pub mod build;
pub mod container;
pub mod fetch;
pub mod history;
pub mod images;
pub mod init;
pub mod kola;
pub mod live;
pub mod manifest;
pub mod release;

use anyhow::Result;

use crate::arch::Arch;
use crate::builds::Workdir;
use crate::config::treefile::Treefile;

/// Load the workdir's treefile, warning by name about keys cosa does not act on.
pub fn load_treefile(wd: &Workdir) -> Result<Treefile> {
    let tf = Treefile::load(&wd.treefile_path()?, Arch::host()?.name())?;
    let unsupported = tf.unsupported_keys();
    if !unsupported.is_empty() {
        tracing::warn!(
            "treefile keys cosa does not act on: {}",
            unsupported.join(", ")
        );
    }
    Ok(tf)
}
