//! `cosa init`: make a workdir around a stream config.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::builds::Workdir;
use crate::cli::InitOpts;
use cmdext::CommandRunExt;

/// This project's demo stream, the config used when none is given.
pub fn default_config() -> PathBuf {
    match std::env::var_os("COSA_DEFAULT_CONFIG") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../stream"),
    }
}

fn is_git_url(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.ends_with(".git")
}

pub fn run(o: &InitOpts) -> Result<()> {
    let config = o
        .config
        .clone()
        .unwrap_or_else(|| default_config().to_string_lossy().into_owned());
    let local = (!is_git_url(&config))
        .then(|| {
            fs_err::canonicalize(&config).with_context(|| format!("config directory {config}"))
        })
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
        match (&local, current) {
            (Some(dir), Some(cur)) if &cur == dir => {
                println!(
                    "{} is already a workdir for {}",
                    wd.root().display(),
                    dir.display()
                );
                return Ok(());
            }
            _ => bail!(
                "{} is already a workdir (src/config exists); use a new directory",
                wd.root().display()
            ),
        }
    }
    match &local {
        Some(dir) => std::os::unix::fs::symlink(dir, &dest)
            .with_context(|| format!("linking {} to {}", dest.display(), dir.display()))?,
        None => {
            let mut cmd = cmdext::command("git");
            cmd.args(["clone", "--depth", "1"]);
            if let Some(b) = &o.branch {
                cmd.args(["--branch", b]);
            }
            cmd.arg(&config)
                .arg(&dest)
                .run()
                .with_context(|| format!("cloning config {config}"))?;
        }
    }
    println!(
        "Initialized workdir {} with config {config}",
        wd.root().display()
    );
    Ok(())
}
