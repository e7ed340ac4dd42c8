//! `cosa init` as one stage: make a workdir around a stream config (a local directory,
//! linked, or a git URL, cloned).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cmdext::CommandRunExt;

use super::Workdir;

/// What to initialize.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub workdir: PathBuf,
    /// A config directory or a git URL.
    pub config: String,
    /// The branch to clone when `config` is a URL.
    pub branch: Option<String>,
}

/// What `init` did.
pub enum Initialized {
    Created(Workdir),
    /// The workdir already existed, for this very config directory.
    Existing(Workdir, PathBuf),
}

fn is_git_url(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.ends_with(".git")
}

/// Create the workdir and link (directory) or clone (URL) the config into it.
pub fn init(o: &InitOptions) -> Result<Initialized> {
    let config = &o.config;
    let local = (!is_git_url(config))
        .then(|| fs_err::canonicalize(config).with_context(|| format!("config directory {config}")))
        .transpose()?;
    if let Some(dir) = &local {
        if !dir.join("manifest.yaml").exists() && !dir.join("manifest.json").exists() {
            bail!(
                "{} has no manifest.yaml or manifest.json: not a stream config",
                dir.display()
            );
        }
    }
    let (wd, existed) = Workdir::create(&o.workdir)?;
    let dest = wd.config_dir();
    if existed {
        let current = std::fs::read_link(&dest).ok();
        match (local, current) {
            (Some(dir), Some(cur)) if cur == dir => return Ok(Initialized::Existing(wd, dir)),
            _ => bail!(
                "{} is already a workdir (src/config exists); use a new directory",
                wd.root().display()
            ),
        }
    }
    match &local {
        Some(dir) => fs_err::os::unix::fs::symlink(dir, &dest)?,
        None => {
            let mut cmd = cmdext::command("git");
            cmd.args(["clone", "--depth", "1"]);
            if let Some(b) = &o.branch {
                cmd.args(["--branch", b]);
            }
            cmd.arg(config)
                .arg(&dest)
                .run()
                .with_context(|| format!("cloning config {config}"))?;
        }
    }
    Ok(Initialized::Created(wd))
}
