//! Reading a .deb: its control record, conffiles, maintainer scripts and the
//! entries of its data archive (through dpkg-deb, the reference reader), with
//! paths moved into /usr as a merged-/usr system has them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use cmdext::CommandRunExt;
use deb822_fast::{Deb822, FromDeb822Paragraph};
use debian_control::lossy::apt::Package;
use fs_err as fs;

/// The top-level directories a merged-/usr system keeps as symlinks into /usr.
const MERGED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Directories the stream's `filesystem` package makes symlinks (into /var or
/// /run): a package may not put anything there.
const SYMLINKED: [&str; 8] = [
    "/home",
    "/root",
    "/opt",
    "/srv",
    "/mnt",
    "/media",
    "/usr/local",
    "/ostree",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute, merged-/usr.
    pub path: String,
    /// Where the .deb had it, when merging /usr moved it (`/bin/sh` for
    /// `/usr/bin/sh`).
    pub moved_from: Option<String>,
    pub mode: u16,
    pub user: String,
    pub group: String,
    pub kind: Kind,
}

/// A .deb's control part: its record, conffiles and maintainer scripts.
pub struct Control {
    pub control: Package,
    pub conffiles: Vec<String>,
    /// Script name (preinst, postinst, prerm, postrm) -> body.
    pub scripts: BTreeMap<String, String>,
}

/// A .deb's data part.
pub struct Data {
    pub entries: Vec<Entry>,
    /// The newest modification time in the archive (the RPM's build time).
    pub mtime: u64,
}

/// `p` (absolute, normalized) as a merged-/usr system has it.
pub fn merge_usr(p: &str) -> String {
    let rest = p.trim_start_matches('/');
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if MERGED.contains(&first) {
        if tail.is_empty() {
            format!("/usr/{first}")
        } else {
            format!("/usr/{first}/{tail}")
        }
    } else {
        format!("/{rest}")
    }
}

/// `/a/b/../c` -> `/a/c`, without touching the filesystem.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// A symlink's target after its link moved from `orig` to `merged`: a relative
/// target that would now point elsewhere becomes the absolute merged path.
pub fn retarget(orig: &str, merged: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let parent = |p: &str| {
        Path::new(p)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    };
    let was = normalize(&parent(orig).join(target));
    let now = normalize(&parent(merged).join(target));
    let was = merge_usr(&was.to_string_lossy());
    if merge_usr(&now.to_string_lossy()) == was {
        target.to_string()
    } else {
        was
    }
}

fn is_under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

impl Control {
    pub fn read(path: &Path) -> Result<Control> {
        Self::read_inner(path)
            .with_context(|| format!("reading the control part of {}", path.display()))
    }

    fn read_inner(path: &Path) -> Result<Control> {
        let ctl = tempfile::tempdir().context("creating a scratch directory")?;
        cmdext::command("dpkg-deb")
            .arg("--control")
            .arg(path)
            .arg(ctl.path())
            .run()?;
        let control_text = fs::read_to_string(ctl.path().join("control"))?;
        let doc = Deb822::from_reader(control_text.as_bytes())
            .map_err(|e| anyhow::anyhow!("parsing its control file: {e}"))?;
        let para = doc
            .iter()
            .next()
            .context("its control file has no paragraph")?;
        let control = Package::from_paragraph(para)
            .map_err(|e| anyhow::anyhow!("parsing its control file: {e}"))?;
        let conffiles = match fs::read_to_string(ctl.path().join("conffiles")) {
            Ok(t) => t
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(merge_usr)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut scripts = BTreeMap::new();
        for s in ["preinst", "postinst", "prerm", "postrm"] {
            let p = ctl.path().join(s);
            if p.exists() {
                scripts.insert(s.to_string(), fs::read_to_string(&p)?);
            }
        }
        Ok(Control {
            control,
            conffiles,
            scripts,
        })
    }
}

impl Data {
    pub fn read(path: &Path) -> Result<Data> {
        let tar = cmdext::command("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(path)
            .run_get_output()
            .with_context(|| format!("reading the data part of {}", path.display()))?
            .stdout;
        let (entries, mtime) = read_data(&tar[..])
            .with_context(|| format!("reading the data part of {}", path.display()))?;
        Ok(Data { entries, mtime })
    }
}

/// The entries of a data archive, merged into /usr, hard links resolved to
/// copies. Two entries that land on one path (a package shipping both /bin/x and
/// /usr/bin/x) are an error, as is a file under a directory the stream keeps as
/// a symlink.
fn read_data(tar: impl Read) -> Result<(Vec<Entry>, u64)> {
    let mut archive = tar::Archive::new(tar);
    let mut by_path: BTreeMap<String, Entry> = BTreeMap::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    let mut mtime = 0;
    for e in archive.entries().context("reading its data archive")? {
        let mut e = e.context("reading its data archive")?;
        let h = e.header().clone();
        let raw = e.path()?.to_string_lossy().into_owned();
        let orig = normalize(Path::new(&format!("/{raw}")))
            .to_string_lossy()
            .into_owned();
        if orig == "/" {
            continue;
        }
        let path = merge_usr(&orig);
        mtime = mtime.max(h.mtime().unwrap_or(0));
        let kind = match h.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => {
                let t = e
                    .link_name()?
                    .with_context(|| format!("symlink {orig} has no target"))?;
                Kind::Symlink(retarget(&orig, &path, &t.to_string_lossy()))
            }
            tar::EntryType::Link => {
                let t = e
                    .link_name()?
                    .with_context(|| format!("hard link {orig} has no target"))?;
                let t = merge_usr(
                    &normalize(Path::new(&format!("/{}", t.to_string_lossy()))).to_string_lossy(),
                );
                match by_path.get(&t) {
                    Some(Entry {
                        kind: k @ Kind::File(_),
                        ..
                    }) => k.clone(),
                    _ => bail!("hard link {orig} points to {t}, which is not a file before it"),
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut buf = Vec::with_capacity(h.size().unwrap_or(0) as usize);
                e.read_to_end(&mut buf)
                    .with_context(|| format!("reading {orig}"))?;
                Kind::File(buf)
            }
            other => bail!("{orig} is a {other:?}, which an RPM cannot carry"),
        };
        if let Some(d) = SYMLINKED.iter().find(|d| is_under(&path, d)) {
            if kind == Kind::Dir && path == *d {
                continue;
            }
            bail!("{orig} is under {d}, which the stream's filesystem package makes a symlink");
        }
        let entry = Entry {
            path: path.clone(),
            moved_from: (orig != path).then(|| orig.clone()),
            mode: (h.mode()? & 0o7777) as u16,
            user: h.username().ok().flatten().unwrap_or("root").to_string(),
            group: h.groupname().ok().flatten().unwrap_or("root").to_string(),
            kind,
        };
        if let Some(prev) = by_path.get(&path) {
            if prev.kind == Kind::Dir && entry.kind == Kind::Dir {
                continue;
            }
            bail!(
                "{orig} and {} are both {path} on a merged-/usr system",
                origin[&path]
            );
        }
        origin.insert(path.clone(), orig);
        by_path.insert(path, entry);
    }
    Ok((by_path.into_values().collect(), mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_relative_links_follow_the_usr_merge() {
        assert_eq!(
            merge_usr("/lib/systemd/systemd"),
            "/usr/lib/systemd/systemd"
        );
        assert_eq!(merge_usr("/sbin"), "/usr/sbin");
        assert_eq!(merge_usr("/etc/libx"), "/etc/libx");
        assert_eq!(merge_usr("/library/x"), "/library/x");
        // Same directory: stays relative.
        assert_eq!(
            retarget(
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/usr/lib/x86_64-linux-gnu/libz.so.1",
                "libz.so.1.2"
            ),
            "libz.so.1.2"
        );
        // One level, into another merged directory: still right relative.
        assert_eq!(retarget("/bin/x", "/usr/bin/x", "../lib/y"), "../lib/y");
        // Would now point to /usr/usr/lib: made absolute.
        assert_eq!(
            retarget(
                "/lib/x86_64-linux-gnu/libfoo.so",
                "/usr/lib/x86_64-linux-gnu/libfoo.so",
                "../../usr/lib/x86_64-linux-gnu/libfoo.so.1"
            ),
            "/usr/lib/x86_64-linux-gnu/libfoo.so.1"
        );
        // Two levels up from /lib/a is /, from /usr/lib/a is /usr: both reach /usr/bin/c.
        assert_eq!(
            retarget("/lib/a/b", "/usr/lib/a/b", "../../bin/c"),
            "../../bin/c"
        );
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, ty, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_mode(0o755);
            if *ty == tar::EntryType::Symlink {
                h.set_size(0);
                b.append_link(&mut h, path, data).unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_path_shipped_twice_after_the_merge_is_an_error() {
        let t = tar_of(&[
            ("./bin/x", tar::EntryType::Regular, "a"),
            ("./usr/bin/x", tar::EntryType::Regular, "b"),
        ]);
        let e = read_data(&t[..]).unwrap_err().to_string();
        assert!(
            e.contains("/usr/bin/x and /bin/x are both /usr/bin/x"),
            "{e}"
        );
    }

    #[test]
    fn files_under_symlinked_directories_are_refused() {
        let t = tar_of(&[("./usr/local/bin/x", tar::EntryType::Regular, "a")]);
        let e = read_data(&t[..]).unwrap_err().to_string();
        assert!(e.contains("under /usr/local"), "{e}");
        let t = tar_of(&[
            ("./usr/local/", tar::EntryType::Directory, ""),
            ("./lib/", tar::EntryType::Directory, ""),
            ("./usr/lib/", tar::EntryType::Directory, ""),
            (
                "./sbin/init",
                tar::EntryType::Symlink,
                "/lib/systemd/systemd",
            ),
        ]);
        let (entries, _) = read_data(&t[..]).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/usr/lib", "/usr/sbin/init"]);
    }
}
