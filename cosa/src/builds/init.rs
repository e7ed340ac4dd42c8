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
    /// The config variant (`manifest-<variant>.yaml` and its siblings).
    pub variant: Option<String>,
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
        check_config(dir, o.variant.as_deref())?;
    }
    let (wd, existed) = Workdir::create(&o.workdir)?;
    let dest = wd.config_dir();
    if existed {
        let current = std::fs::read_link(&dest).ok();
        match (local, current) {
            (Some(dir), Some(cur)) if cur == dir && wd.variant()? == o.variant => {
                return Ok(Initialized::Existing(wd, dir))
            }
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
            let cloned = cmd
                .arg(config)
                .arg(&dest)
                .run()
                .with_context(|| format!("cloning config {config}"))
                .and_then(|()| check_config(&dest, o.variant.as_deref()));
            if let Err(e) = cloned {
                // The workdir is new: leave nothing of it behind.
                let _ = std::fs::remove_dir_all(wd.root());
                return Err(e);
            }
        }
    }
    if let Some(v) = &o.variant {
        wd.set_variant(v)?;
    }
    Ok(Initialized::Created(wd))
}

/// `dir` is a stream config, and has `variant` if one is asked for.
fn check_config(dir: &std::path::Path, variant: Option<&str>) -> Result<()> {
    let has = |stem: &str| {
        ["yaml", "json"]
            .iter()
            .any(|ext| dir.join(format!("{stem}.{ext}")).exists())
    };
    match variant {
        None if !has("manifest") => bail!(
            "{} has no manifest.yaml or manifest.json: not a stream config",
            dir.display()
        ),
        Some(v) if !has(&format!("manifest-{v}")) => {
            let known = super::workdir::variants_of(dir);
            bail!(
                "config {} has no variant {v:?} (no manifest-{v}.yaml); {}",
                dir.display(),
                if known.is_empty() {
                    "it has no variants".to_string()
                } else {
                    format!("its variants: {}", known.join(", "))
                }
            )
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fs_err as fs;

    fn config_with(files: &[&str]) -> tempfile::TempDir {
        let c = tempfile::tempdir().unwrap();
        for f in files {
            fs::write(c.path().join(f), "ref: x\n").unwrap();
        }
        c
    }

    fn opts(wd: &std::path::Path, config: &std::path::Path, variant: Option<&str>) -> InitOptions {
        InitOptions {
            workdir: wd.to_path_buf(),
            config: config.to_string_lossy().into_owned(),
            branch: None,
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn a_variant_selects_its_files_and_is_recorded() {
        let c = config_with(&[
            "manifest.yaml",
            "manifest-systemd.yaml",
            "image-systemd.yaml",
            "manifest-lock.x86_64.json",
        ]);
        let t = tempfile::tempdir().unwrap();
        let wd = t.path().join("wd");
        let Initialized::Created(w) = init(&opts(&wd, c.path(), Some("systemd"))).unwrap() else {
            panic!("expected a new workdir");
        };
        assert_eq!(w.variant().unwrap().as_deref(), Some("systemd"));
        let json = fs::read_to_string(wd.join("src/config.json")).unwrap();
        assert!(
            json.contains("\"coreos-assembler.config-variant\": \"systemd\""),
            "{json}"
        );
        assert!(w
            .treefile_path()
            .unwrap()
            .ends_with("manifest-systemd.yaml"));
        assert!(w
            .config_file("image", "yaml")
            .unwrap()
            .ends_with("image-systemd.yaml"));
        assert!(w
            .config_file("kola-denylist", "yaml")
            .unwrap()
            .ends_with("kola-denylist-systemd.yaml"));
        // The same init again is a no-op; another variant is refused.
        assert!(matches!(
            init(&opts(&wd, c.path(), Some("systemd"))).unwrap(),
            Initialized::Existing(..)
        ));
        assert!(init(&opts(&wd, c.path(), None)).is_err());

        // Without a variant nothing changes.
        let plain = t.path().join("plain");
        let Initialized::Created(w) = init(&opts(&plain, c.path(), None)).unwrap() else {
            panic!("expected a new workdir");
        };
        assert!(!plain.join("src/config.json").exists());
        assert!(w.treefile_path().unwrap().ends_with("manifest.yaml"));
        assert!(w
            .config_file("image", "yaml")
            .unwrap()
            .ends_with("image.yaml"));
    }

    #[test]
    fn an_unknown_variant_is_refused_naming_the_known_ones_and_makes_nothing() {
        let c = config_with(&[
            "manifest.yaml",
            "manifest-systemd.yaml",
            "manifest-lock.overrides.yaml",
        ]);
        let t = tempfile::tempdir().unwrap();
        let wd = t.path().join("wd");
        let e = init(&opts(&wd, c.path(), Some("rhel")))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no variant \"rhel\""), "{e}");
        assert!(e.contains("its variants: systemd"), "{e}");
        assert!(!wd.exists());
        let c = config_with(&["manifest.yaml"]);
        let e = init(&opts(&wd, c.path(), Some("x")))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("it has no variants"), "{e}");
    }
}
