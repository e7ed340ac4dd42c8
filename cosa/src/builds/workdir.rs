//! The working directory `cosa init` makes, and the lock that serializes builds in it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// `src/config.json`, as coreos-assembler writes it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct InitConfig {
    #[serde(
        rename = "coreos-assembler.config-variant",
        skip_serializing_if = "Option::is_none"
    )]
    variant: Option<String>,
}

/// `<stem>.<ext>`, or `<stem>-<variant>.<ext>`.
pub fn variant_file(stem: &str, ext: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{stem}-{v}.{ext}"),
        None => format!("{stem}.{ext}"),
    }
}

/// The variants a config directory offers: every `manifest-<variant>.yaml`.
pub fn variants_of(config_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(config_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("manifest-")?
                .strip_suffix(".yaml")
                .filter(|v| !v.starts_with("lock"))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

/// The subdirectories every workdir has.
const LAYOUT: &[&str] = &[
    "builds",
    "cache",
    "tmp",
    "overrides/rpm",
    "overrides/rootfs",
    "src",
];

/// A cosa working directory: `builds/ cache/ tmp/ overrides/{rpm,rootfs}/ src/config`.
#[derive(Debug, Clone)]
pub struct Workdir {
    root: PathBuf,
}

impl Workdir {
    /// Open an existing workdir (one `cosa init` made).
    pub fn open(path: &Path) -> Result<Self> {
        let root = fs::canonicalize(path)
            .with_context(|| format!("opening workdir {}", path.display()))?;
        let wd = Workdir { root };
        let link = wd.config_dir();
        if wd.builds_dir().is_dir() && !link.exists() {
            if let Ok(target) = fs::read_link(&link) {
                bail!(
                    "{} points at {}, which does not exist (did the config move?); point it at the config: ln -sfn CONFIG {}",
                    link.display(),
                    target.display(),
                    link.display()
                );
            }
        }
        if !wd.is_workdir() {
            bail!(
                "{} is not a cosa workdir (no builds/ and src/config); run `cosa init` there first",
                wd.root.display()
            );
        }
        Ok(wd)
    }

    fn is_workdir(&self) -> bool {
        self.builds_dir().is_dir() && self.config_dir().exists()
    }

    /// Make the layout in `path`. Refuses a non-empty directory that is not a workdir;
    /// returns the workdir and whether it already existed.
    pub fn create(path: &Path) -> Result<(Self, bool)> {
        fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let root = fs_err::canonicalize(path)?;
        let wd = Workdir { root };
        if wd.is_workdir() {
            return Ok((wd, true));
        }
        let nonempty = fs::read_dir(&wd.root)
            .with_context(|| format!("reading {}", wd.root.display()))?
            .next()
            .is_some();
        if nonempty {
            bail!(
                "{} is not empty and is not a cosa workdir; refusing to initialize it",
                wd.root.display()
            );
        }
        for d in LAYOUT {
            let p = wd.root.join(d);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        Ok((wd, false))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn builds_dir(&self) -> PathBuf {
        self.root.join("builds")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// `src/config`: the stream's config (a symlink to a directory, or a git clone).
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("src/config")
    }
    pub fn overrides_rpm_dir(&self) -> PathBuf {
        self.root.join("overrides/rpm")
    }
    pub fn overrides_rootfs_dir(&self) -> PathBuf {
        self.root.join("overrides/rootfs")
    }
    /// The ostree repo holding the package import cache and every build's commit.
    pub fn repo_path(&self) -> PathBuf {
        self.cache_dir().join("repo")
    }
    /// Downloaded RPMs.
    pub fn rpms_dir(&self) -> PathBuf {
        self.cache_dir().join("rpms")
    }
    /// `src/config.json`: what `cosa init` recorded about the config, in
    /// coreos-assembler's format.
    fn init_config_path(&self) -> PathBuf {
        self.root.join("src/config.json")
    }

    /// The config variant `cosa init --variant` chose, if any.
    pub fn variant(&self) -> Result<Option<String>> {
        let p = self.init_config_path();
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let c: InitConfig =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        Ok(c.variant)
    }

    /// Record the variant for every later command.
    pub fn set_variant(&self, variant: &str) -> Result<()> {
        let c = InitConfig {
            variant: Some(variant.to_string()),
        };
        let p = self.init_config_path();
        fs_err::write(&p, serde_json::to_string_pretty(&c)? + "\n")?;
        Ok(())
    }

    /// A config file that has one version per variant: `<stem>-<variant>.<ext>` when
    /// a variant is set, `<stem>.<ext>` otherwise (coreos-assembler's convention for
    /// manifest, image and kola-denylist).
    pub fn config_file(&self, stem: &str, ext: &str) -> Result<PathBuf> {
        Ok(self
            .config_dir()
            .join(variant_file(stem, ext, self.variant()?.as_deref())))
    }

    /// The top-level treefile of the config (of its variant, if one is set).
    pub fn treefile_path(&self) -> Result<PathBuf> {
        let dir = self.config_dir();
        let variant = self.variant()?;
        for ext in ["yaml", "json"] {
            let p = dir.join(variant_file("manifest", ext, variant.as_deref()));
            if p.exists() {
                return Ok(p);
            }
        }
        let name = variant_file("manifest", "yaml", variant.as_deref());
        bail!("no {name} (or .json) in {}", dir.display())
    }

    /// Take the workdir's lock for a command that changes builds/ or the caches.
    /// With `wait`, block until the holder finishes; otherwise fail at once.
    pub fn lock(&self, what: &str, wait: bool) -> Result<WorkdirLock> {
        let path = self.root.join("tmp/.cosa.lock");
        fs_err::create_dir_all(self.tmp_dir())?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock {}", path.display()))?;
        if wait {
            tracing::debug!("waiting for {}", path.display());
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        } else if let Err(e) = file.try_lock() {
            match e {
                std::fs::TryLockError::WouldBlock => bail!(
                    "{what}: another cosa command holds the lock on {} (use --wait to wait for it)",
                    self.root.display()
                ),
                std::fs::TryLockError::Error(e) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
        }
        Ok(WorkdirLock { _file: file })
    }
}

/// Held while a command changes the workdir; released on drop (or process exit).
#[derive(Debug)]
pub struct WorkdirLock {
    _file: File,
}

/// Write a file atomically: to a temporary name beside it, then rename over.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, contents)
        .with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refuses_foreign_nonempty_dir() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("somefile"), "x").unwrap();
        let e = Workdir::create(t.path()).unwrap_err();
        assert!(format!("{e}").contains("not empty"), "{e}");
    }

    #[test]
    fn create_is_idempotent_on_a_workdir() {
        let t = tempfile::tempdir().unwrap();
        let (wd, existed) = Workdir::create(t.path()).unwrap();
        assert!(!existed);
        fs::create_dir(wd.config_dir()).unwrap();
        let (_, existed) = Workdir::create(t.path()).unwrap();
        assert!(existed);
        assert!(Workdir::open(t.path()).is_ok());
    }

    #[test]
    fn a_dangling_config_link_is_named() {
        let t = tempfile::tempdir().unwrap();
        let (wd, _) = Workdir::create(t.path()).unwrap();
        let gone = t.path().join("checkout/stream");
        std::os::unix::fs::symlink(&gone, wd.config_dir()).unwrap();
        let e = Workdir::open(t.path()).unwrap_err().to_string();
        assert!(
            e.contains(&gone.display().to_string()) && e.contains("ln -sfn CONFIG"),
            "{e}"
        );
    }

    #[test]
    fn second_lock_refuses_without_wait() {
        let t = tempfile::tempdir().unwrap();
        let (wd, _) = Workdir::create(t.path()).unwrap();
        let _held = wd.lock("build", false).unwrap();
        let e = wd.lock("build", false).unwrap_err();
        assert!(format!("{e}").contains("holds the lock"), "{e}");
    }
}
