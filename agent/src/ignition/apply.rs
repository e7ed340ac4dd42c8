//! Carries out a validated plan under a root directory.

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::Write;
use std::os::unix::fs::{lchown, DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::plan::Op;

pub struct Applier<'a> {
    root: &'a Path,
    /// chown only works as root; unprivileged test runs keep their own ids.
    chown: bool,
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl<'a> Applier<'a> {
    pub fn new(root: &'a Path) -> Self {
        let chown = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        Applier { root, chown }
    }

    fn host(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    fn set_owner(&self, p: &Path, (uid, gid): (u32, u32)) -> Result<()> {
        if self.chown {
            lchown(p, Some(uid), Some(gid))
                .with_context(|| format!("chown {uid}:{gid} {}", p.display()))?;
        }
        Ok(())
    }

    fn parents(&self, p: &Path) -> Result<()> {
        if let Some(parent) = p.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        Ok(())
    }

    /// The host path for `path`, its parents made, and whatever was there removed
    /// when the config says `overwrite`.
    fn place(&self, path: &Path, replace: bool) -> Result<PathBuf> {
        let h = self.host(path);
        if replace {
            remove_any(&h)?;
        }
        self.parents(&h)?;
        Ok(h)
    }

    pub fn apply(&self, op: &Op) -> Result<()> {
        match op {
            Op::Dir {
                path,
                mode,
                owner,
                replace,
            } => {
                let h = self.place(path, *replace)?;
                if !h.is_dir() {
                    fs::create_dir(&h).with_context(|| format!("creating {}", path.display()))?;
                }
                self.set_owner(&h, *owner)?;
                fs::set_permissions(&h, std::fs::Permissions::from_mode(*mode))?;
            }
            Op::File {
                path,
                data,
                mode,
                owner,
                replace,
            } => {
                let h = self.host(path);
                if *replace && fs::symlink_metadata(&h).is_ok_and(|m| m.is_dir()) {
                    remove_any(&h)?;
                }
                self.parents(&h)?;
                // Write beside, then rename: never a half-written file.
                let tmp = h.with_file_name(format!(
                    ".{}.demo-agent.tmp",
                    h.file_name().unwrap_or_default().to_string_lossy()
                ));
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                f.write_all(data)?;
                f.sync_all()?;
                drop(f);
                self.set_owner(&tmp, *owner)?;
                fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))?;
                fs::rename(&tmp, &h).with_context(|| format!("writing {}", path.display()))?;
            }
            Op::Symlink {
                path,
                target,
                owner,
                replace,
            } => {
                let h = self.place(path, *replace)?;
                std::os::unix::fs::symlink(target, &h)
                    .with_context(|| format!("linking {} -> {target}", path.display()))?;
                self.set_owner(&h, *owner)?;
            }
            Op::Hardlink {
                path,
                target,
                replace,
            } => {
                let h = self.place(path, *replace)?;
                fs::hard_link(self.host(target), &h).with_context(|| {
                    format!("hard-linking {} to {}", path.display(), target.display())
                })?;
            }
            Op::Remove { path } => {
                remove_any(&self.host(path))
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }
}
