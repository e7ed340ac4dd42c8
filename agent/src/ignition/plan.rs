//! Validation: turns a parsed config plus the target root's current state into
//! a list of filesystem operations. Every check that can fail is made here,
//! so an invalid config writes nothing.

use fs_err as fs;
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use super::dataurl;
use super::passwd::Accounts;
use super::schema::{self, Config, Owner, Resource};

#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    Dir {
        path: PathBuf,
        mode: u32,
        owner: (u32, u32),
        replace: bool,
    },
    File {
        path: PathBuf,
        data: Vec<u8>,
        mode: u32,
        owner: (u32, u32),
        replace: bool,
    },
    Symlink {
        path: PathBuf,
        target: String,
        owner: (u32, u32),
        replace: bool,
    },
    Hardlink {
        path: PathBuf,
        target: PathBuf,
        replace: bool,
    },
    Remove {
        path: PathBuf,
    },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// files, directories and links
    pub files: usize,
    pub users: usize,
    pub units: usize,
}

#[derive(Debug)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub warnings: Vec<String>,
    pub counts: Counts,
}

pub(super) struct Planner<'a> {
    pub(super) root: &'a Path,
    pub(super) minor: u32,
    pub(super) ops: Vec<Op>,
    pub(super) warnings: Vec<String>,
    pub(super) accounts: Accounts,
    /// Paths some entry of this config writes: a second writer is an error.
    pub(super) claimed: BTreeSet<PathBuf>,
}

/// Validates `cfg` (spec minor version `minor`) against `root`.
pub fn plan(cfg: &Config, minor: u32, root: &Path) -> Result<Plan> {
    let mut p = Planner {
        root,
        minor,
        ops: Vec::new(),
        warnings: Vec::new(),
        accounts: Accounts::load(&root.join("etc"))?,
        claimed: BTreeSet::new(),
    };
    let mut counts = Counts::default();
    p.refuse_unsupported(cfg)?;
    if let Some(pw) = &cfg.passwd {
        counts.users = p.passwd(pw)?;
    }
    if let Some(st) = &cfg.storage {
        counts.files = p.storage(st)?;
    }
    if let Some(units) = cfg.systemd.as_ref().and_then(|s| s.units.as_ref()) {
        for (i, u) in units.iter().enumerate() {
            p.unit(u)
                .with_context(|| format!("systemd.units[{i}] ({})", u.name))?;
        }
        counts.units = units.len();
    }
    Ok(Plan {
        ops: p.ops,
        warnings: p.warnings,
        counts,
    })
}

/// Null, `""`, `[]`, `{}` or an object of only such values.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Absolute, lexically cleaned path (like Go's `filepath.Clean`).
pub(super) fn clean_path(p: &str) -> Result<PathBuf> {
    if !p.starts_with('/') {
        bail!("path {p:?} is not absolute");
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if out == Path::new("/") {
        bail!("path {p:?} names the root directory");
    }
    Ok(out)
}

fn decompress(data: Vec<u8>, compression: Option<&str>) -> Result<Vec<u8>> {
    match compression.unwrap_or("") {
        "" => Ok(data),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&data[..])
                .read_to_end(&mut out)
                .context("invalid gzip data")?;
            Ok(out)
        }
        other => bail!("unsupported compression {other:?} (null or \"gzip\")"),
    }
}

fn verify(data: &[u8], hash: &str) -> Result<()> {
    let (kind, want) = hash
        .split_once('-')
        .ok_or_else(|| anyhow!("hash {hash:?} is not <type>-<value>"))?;
    let got = match kind {
        "sha512" => hex(&Sha512::digest(data)),
        "sha256" => hex(&Sha256::digest(data)),
        _ => bail!("unsupported hash type {kind:?} (sha512 or sha256)"),
    };
    if !got.eq_ignore_ascii_case(want) {
        bail!("{kind} mismatch: config says {want}, contents have {got}");
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Refuses `field`, present in a config of spec 3.`cfg_minor`, if it was added
/// in 3.`minor`.
pub(super) fn since(cfg_minor: u32, minor: u32, present: bool, field: &str) -> Result<()> {
    if present && cfg_minor < minor {
        bail!("{field}: not in spec 3.{cfg_minor}.0 (added in 3.{minor}.0)");
    }
    Ok(())
}

/// The contents of `r` (`None` without a source): decoded, decompressed and
/// verified. Not a planner method, so referenced configs (`merge`) are read
/// exactly like file contents, before there is a planner.
pub(super) fn read_resource(field: &str, r: &Resource) -> Result<Option<Vec<u8>>> {
    let Resource {
        source,
        compression,
        http_headers,
        verification,
    } = r;
    if http_headers.as_ref().is_some_and(|v| !is_empty(v)) {
        bail!("{field}.httpHeaders: not supported (no remote fetches)");
    }
    let Some(source) = source else {
        return Ok(None);
    };
    let data = dataurl::decode(source).with_context(|| format!("{field}.source"))?;
    let data =
        decompress(data, compression.as_deref()).with_context(|| format!("{field}.compression"))?;
    if let Some(h) = verification.as_ref().and_then(|v| v.hash.as_deref()) {
        verify(&data, h).with_context(|| format!("{field}.verification.hash"))?;
    }
    Ok(Some(data))
}

impl Planner<'_> {
    /// Host path of the target path `p`.
    pub(super) fn host(&self, p: &Path) -> PathBuf {
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    pub(super) fn since(&self, minor: u32, present: bool, field: &str) -> Result<()> {
        since(self.minor, minor, present, field)
    }

    fn refuse_unsupported(&self, cfg: &Config) -> Result<()> {
        let schema::Ignition {
            config, security, ..
        } = &cfg.ignition;
        if config.is_some() {
            // `merge::resolve` folds references in and drops the section.
            bail!("ignition.config: referenced configs were not resolved before planning");
        }
        if security.as_ref().is_some_and(|v| !is_empty(v)) {
            bail!("ignition.security: TLS settings are not supported (no remote fetches)");
        }
        if let Some(k) = &cfg.kernel_arguments {
            self.since(3, true, "kernelArguments")?;
            let n = k.should_exist.as_ref().map_or(0, Vec::len)
                + k.should_not_exist.as_ref().map_or(0, Vec::len);
            if n > 0 {
                bail!("kernelArguments: not supported on this stream (the agent does not manage the bootloader config); use the image's kernel arguments");
            }
        }
        if let Some(st) = &cfg.storage {
            self.since(2, st.luks.is_some(), "storage.luks")?;
            for (name, v) in [
                ("disks", &st.disks),
                ("raid", &st.raid),
                ("filesystems", &st.filesystems),
                ("luks", &st.luks),
            ] {
                if v.as_ref().is_some_and(|v| !is_empty(v)) {
                    bail!("storage.{name}: not supported (the agent only writes files, directories and links)");
                }
            }
        }
        Ok(())
    }

    pub(super) fn claim(&mut self, p: &Path) -> Result<()> {
        if !self.claimed.insert(p.to_path_buf()) {
            bail!("path {} is written twice by this config", p.display());
        }
        Ok(())
    }

    /// Every existing ancestor of `p` must be a directory (or a link to one).
    fn check_parents(&self, p: &Path) -> Result<()> {
        for a in p.ancestors().skip(1) {
            if a == Path::new("/") {
                break;
            }
            if self.claimed.contains(a) && !self.will_be_dir(a) {
                bail!(
                    "parent {} of {} is a file of this config",
                    a.display(),
                    p.display()
                );
            }
            match fs::metadata(self.host(a)) {
                Ok(m) if !m.is_dir() => bail!(
                    "parent {} of {} exists and is not a directory",
                    a.display(),
                    p.display()
                ),
                _ => {}
            }
        }
        Ok(())
    }

    fn will_be_dir(&self, p: &Path) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op, Op::Dir { path, .. } if path == p))
    }

    pub(super) fn resource(&self, field: &str, r: &Resource) -> Result<Option<Vec<u8>>> {
        self.since(1, r.http_headers.is_some(), &format!("{field}.httpHeaders"))?;
        read_resource(field, r)
    }

    pub(super) fn owner(
        &self,
        field: &str,
        user: &Option<Owner>,
        group: &Option<Owner>,
    ) -> Result<(u32, u32)> {
        let uid = match user {
            None => 0,
            Some(Owner {
                id: Some(_),
                name: Some(_),
            }) => {
                bail!("{field}.user: set id or name, not both")
            }
            Some(Owner { id: Some(id), .. }) => *id,
            Some(Owner { name: Some(n), .. }) => {
                self.accounts
                    .user(n)
                    .ok_or_else(|| anyhow!("{field}.user.name: no user {n:?}"))?
                    .uid
            }
            Some(Owner { .. }) => 0,
        };
        let gid = match group {
            None => 0,
            Some(Owner {
                id: Some(_),
                name: Some(_),
            }) => {
                bail!("{field}.group: set id or name, not both")
            }
            Some(Owner { id: Some(id), .. }) => *id,
            Some(Owner { name: Some(n), .. }) => {
                self.accounts
                    .group(n)
                    .ok_or_else(|| anyhow!("{field}.group.name: no group {n:?}"))?
                    .gid
            }
            Some(Owner { .. }) => 0,
        };
        Ok((uid, gid))
    }

    pub(super) fn mode(field: &str, mode: Option<u32>, default: u32) -> Result<u32> {
        match mode {
            Some(m) if m > 0o7777 => bail!(
                "{field}.mode: {m} is not a valid mode (decimal {}, max 4095)",
                m
            ),
            Some(m) => Ok(m),
            None => Ok(default),
        }
    }

    fn storage(&mut self, st: &schema::Storage) -> Result<usize> {
        // Parents before children, as Ignition does: order by depth.
        enum Entry<'a> {
            Dir(usize, &'a schema::Directory),
            File(usize, &'a schema::File),
            Link(usize, &'a schema::Link),
        }
        let mut entries = Vec::new();
        for (i, d) in st.directories.iter().flatten().enumerate() {
            entries.push((
                clean_path(&d.path).with_context(|| format!("storage.directories[{i}].path"))?,
                Entry::Dir(i, d),
            ));
        }
        for (i, f) in st.files.iter().flatten().enumerate() {
            entries.push((
                clean_path(&f.path).with_context(|| format!("storage.files[{i}].path"))?,
                Entry::File(i, f),
            ));
        }
        for (i, l) in st.links.iter().flatten().enumerate() {
            entries.push((
                clean_path(&l.path).with_context(|| format!("storage.links[{i}].path"))?,
                Entry::Link(i, l),
            ));
        }
        entries.sort_by_key(|(p, _)| p.components().count());
        let n = entries.len();
        for (path, e) in entries {
            match e {
                Entry::Dir(i, d) => {
                    let field = format!("storage.directories[{i}]");
                    self.directory(&field, path, d)
                        .with_context(|| field.clone())?
                }
                Entry::File(i, f) => {
                    let field = format!("storage.files[{i}]");
                    self.file(&field, path, f).with_context(|| field.clone())?
                }
                Entry::Link(i, l) => {
                    let field = format!("storage.links[{i}]");
                    self.link(&field, path, l).with_context(|| field.clone())?
                }
            }
        }
        Ok(n)
    }

    fn directory(&mut self, field: &str, path: PathBuf, d: &schema::Directory) -> Result<()> {
        self.claim(&path)?;
        self.check_parents(&path)?;
        let overwrite = d.overwrite.unwrap_or(false);
        let replace = match fs::symlink_metadata(self.host(&path)) {
            Ok(m) if m.is_dir() => false,
            Ok(_) if !overwrite => {
                bail!(
                    "{} exists and is not a directory (overwrite is false)",
                    path.display()
                )
            }
            Ok(_) => true,
            Err(_) => false,
        };
        let mode = Self::mode(field, d.mode, 0o755)?;
        let owner = self.owner(field, &d.user, &d.group)?;
        self.ops.push(Op::Dir {
            path,
            mode,
            owner,
            replace,
        });
        Ok(())
    }

    fn file(&mut self, field: &str, path: PathBuf, f: &schema::File) -> Result<()> {
        self.claim(&path)?;
        self.check_parents(&path)?;
        let overwrite = f.overwrite.unwrap_or(false);
        let contents = match &f.contents {
            Some(r) => self.resource(&format!("{field}.contents"), r)?,
            None => None,
        };
        if overwrite && contents.is_none() {
            bail!("overwrite is true but contents.source is not set");
        }
        let host = self.host(&path);
        let (mut data, kept_mode, replace) = match fs::symlink_metadata(&host) {
            Ok(m) if overwrite => (contents.unwrap_or_default(), None, !m.is_file()),
            Ok(m) if !m.is_file() => {
                bail!(
                    "{} exists and is not a regular file (overwrite is false)",
                    path.display()
                )
            }
            Ok(_) if contents.is_some() => {
                bail!("{} already exists and overwrite is false", path.display())
            }
            Ok(m) => (
                fs::read(&host).with_context(|| format!("reading {}", path.display()))?,
                Some(m.mode() & 0o7777),
                false,
            ),
            Err(_) => (contents.unwrap_or_default(), None, false),
        };
        for (i, r) in f.append.iter().flatten().enumerate() {
            let af = format!("{field}.append[{i}]");
            let more = self
                .resource(&af, r)?
                .ok_or_else(|| anyhow!("{af}.source: required"))?;
            data.extend_from_slice(&more);
        }
        let mode = Self::mode(field, f.mode, kept_mode.unwrap_or(0o644))?;
        let owner = self.owner(field, &f.user, &f.group)?;
        self.ops.push(Op::File {
            path,
            data,
            mode,
            owner,
            replace,
        });
        Ok(())
    }

    fn link(&mut self, field: &str, path: PathBuf, l: &schema::Link) -> Result<()> {
        self.claim(&path)?;
        self.check_parents(&path)?;
        if l.target.is_empty() {
            bail!("target: empty");
        }
        let overwrite = l.overwrite.unwrap_or(false);
        let hard = l.hard.unwrap_or(false);
        let existing = fs::symlink_metadata(self.host(&path)).ok();
        let same_symlink = !hard
            && existing
                .as_ref()
                .is_some_and(|m| m.file_type().is_symlink())
            && fs::read_link(self.host(&path)).is_ok_and(|t| t == Path::new(&l.target));
        let replace = match existing {
            None => false,
            Some(_) if same_symlink => true,
            Some(_) if overwrite => true,
            Some(_) => bail!("{} already exists and overwrite is false", path.display()),
        };
        if hard {
            if l.user.is_some() || l.group.is_some() {
                bail!("user/group cannot be set on a hard link (it shares the target's inode)");
            }
            let target = clean_path(&l.target).context("target")?;
            let exists = fs::symlink_metadata(self.host(&target)).is_ok()
                || self.ops.iter().any(|op| {
                    matches!(op, Op::File { path, .. } | Op::Symlink { path, .. } if *path == target)
                });
            if !exists {
                bail!(
                    "target: hard link target {} does not exist",
                    target.display()
                );
            }
            self.ops.push(Op::Hardlink {
                path,
                target,
                replace,
            });
        } else {
            let owner = self.owner(field, &l.user, &l.group)?;
            self.ops.push(Op::Symlink {
                path,
                target: l.target.clone(),
                owner,
                replace,
            });
        }
        Ok(())
    }
}
