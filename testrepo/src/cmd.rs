//! Scratch directories for the rpm tools' work (the tools run through `cmdext`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// A directory removed on drop (kept when `TESTREPO_KEEP` is set, for debugging).
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn new(parent: &Path, prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(".{prefix}-{}-{n}", std::process::id()));
        if path.exists() {
            fs_err::remove_dir_all(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        fs_err::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("TESTREPO_KEEP").is_none() {
            let _ = fs_err::remove_dir_all(&self.path);
        }
    }
}
