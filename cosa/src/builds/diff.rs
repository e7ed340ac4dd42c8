//! `cosa diff`: what changed between two builds, one differ per aspect, under
//! coreos-assembler's flag names.
//!
//! | differ | compares | read from |
//! |---|---|---|
//! | `rpms` | the package sets | each build's lockfile (`manifest-lock.generated.<arch>.json`) |
//! | `ostree` | the paths of the two commits | meta.json `ostree-commit`, in `cache/repo` |
//! | `metal-part-table` | the GPTs of the metal images | `images.metal`, plain or `.xz`/`.gz`/`.zst`; only the table's bytes are decompressed |
//! | `live-iso-ls` | the files of the live ISOs | `images.live-iso` (xorriso reads the table) |
//! | `initrd` | the files of the commits' initramfs | `/usr/lib/modules/<kver>/initramfs.img` in each commit |
//!
//! # JSON (`cosa diff --json`, also `--rpms-json`)
//!
//! One object: `from` and `to` (the build IDs) and one key per differ asked for. Each
//! list is always present (empty when nothing changed) and sorted by its key (package
//! name, path, partition number). Keys may be added in the future; none will be renamed
//! or dropped, and no value changes type.
//!
//! ```text
//! {
//!   "from": "1.20240101.0", "to": "1.20240102.0",
//!   "rpms": {
//!     "added":      [PKG], "removed": [PKG],
//!     "upgraded":   [{"from": PKG, "to": PKG}],
//!     "downgraded": [{"from": PKG, "to": PKG}],
//!     "changed":    [{"from": PKG, "to": PKG}]      // same EVR by rpm's order: arch or spelling
//!   },                                             // PKG: {"name", "evr", "arch"}; evr "E:V-R" (E only if set)
//!   "ostree": {"added": [PATH], "removed": [PATH], "modified": [PATH]},   // PATH: "/usr/bin/x"
//!   "metal-part-table": {
//!     "sector-size": {"from": 512, "to": 512},
//!     "partitions": {"from": [PART], "to": [PART]},    // both tables, whole
//!     "added": [PART], "removed": [PART], "modified": [{"from": PART, "to": PART}]
//!   },                                             // PART: {"number", "label", "type-guid", "start", "size"}
//!   "live-iso-ls": {
//!     "added": [FILE], "removed": [FILE], "modified": [{"from": FILE, "to": FILE}]
//!   },                                             // FILE: {"path", "size"}
//!   "initrd": {
//!     "image": {"from": "/usr/lib/modules/<kver>/initramfs.img", "to": "…"},
//!     "added": [ENTRY], "removed": [ENTRY], "modified": [{"from": ENTRY, "to": ENTRY}]
//!   }                                              // ENTRY: {"path", "mode", "size"}
//! }
//! ```
//!
//! What each differ counts as a change:
//!
//! - `ostree`: a file or symlink whose content object differs (content, mode, owner or
//!   xattrs), a directory whose metadata object differs. An added or removed directory
//!   is one entry, its contents are not listed. A path that changed type (file to
//!   directory) is both removed and added.
//! - `metal-part-table`: partitions are matched by number; one is modified when its
//!   label, type GUID, start or size differ. `start` and `size` are in bytes. Partition
//!   and disk GUIDs are not compared: they derive from the build ID, so they differ
//!   between any two builds.
//! - `live-iso-ls`: regular files only (directories are implied by their files); a
//!   file is modified when its size differs (contents are not compared).
//! - `initrd`: every member of the concatenated archives (plain, gzip, zstd, xz); a
//!   later member replaces an earlier one of the same path, as the kernel unpacks them.
//!   `mode` is the octal `st_mode`, file type included (`"100644"`, `"40755"`). A member
//!   is modified when its mode, size or content (a file's bytes, a symlink's target)
//!   differ.

mod gpt;
mod initrd;
mod iso;
mod rpms;
mod tree;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{History, Meta, Workdir};
pub use gpt::{Partition, TableDiff};
pub use initrd::{InitrdDiff, InitrdEntry};
pub use iso::IsoFile;
pub use rpms::{Package, RpmsDiff};
pub use tree::PathsDiff;

/// The differs, in the order their sections are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Differ {
    Rpms,
    Ostree,
    MetalPartTable,
    LiveIsoLs,
    Initrd,
}

impl Differ {
    pub const ALL: [Differ; 5] = [
        Differ::Rpms,
        Differ::Ostree,
        Differ::MetalPartTable,
        Differ::LiveIsoLs,
        Differ::Initrd,
    ];

    /// Its flag without the dashes, and its key in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Differ::Rpms => "rpms",
            Differ::Ostree => "ostree",
            Differ::MetalPartTable => "metal-part-table",
            Differ::LiveIsoLs => "live-iso-ls",
            Differ::Initrd => "initrd",
        }
    }
}

/// One value before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change<T> {
    pub from: T,
    pub to: T,
}

/// Two listings of the same kind of entry, compared key by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changes<T> {
    pub added: Vec<T>,
    pub removed: Vec<T>,
    pub modified: Vec<Change<T>>,
}

impl<T: Clone + PartialEq> Changes<T> {
    /// Entries only in `to` are added, only in `from` removed, in both but unequal
    /// modified; each list in key order.
    pub fn of<K: Ord>(from: &BTreeMap<K, T>, to: &BTreeMap<K, T>) -> Self {
        let mut c = Changes {
            added: Vec::new(),
            removed: Vec::new(),
            modified: Vec::new(),
        };
        for (k, a) in from {
            match to.get(k) {
                None => c.removed.push(a.clone()),
                Some(b) if a != b => c.modified.push(Change {
                    from: a.clone(),
                    to: b.clone(),
                }),
                Some(_) => {}
            }
        }
        c.added = to
            .iter()
            .filter(|(k, _)| !from.contains_key(k))
            .map(|(_, b)| b.clone())
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty()
    }
}

/// A section's output: lines with the key they sort by.
type Lines = Vec<(String, String)>;

/// What `cosa diff` found, by differ; the JSON of `--json` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpms: Option<RpmsDiff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ostree: Option<PathsDiff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metal_part_table: Option<TableDiff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_iso_ls: Option<Changes<IsoFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<InitrdDiff>,
}

impl Report {
    /// The text of `cosa diff`: a `[differ]` header per section, then `+ added`,
    /// `- removed`, `~ modified` lines in key order, or "No differences".
    pub fn write_text(&self, out: &mut impl Write) -> Result<()> {
        writeln!(out, "From {} to {}", self.from, self.to)?;
        let sections = [
            (Differ::Rpms, self.rpms.as_ref().map(RpmsDiff::lines)),
            (Differ::Ostree, self.ostree.as_ref().map(PathsDiff::lines)),
            (
                Differ::MetalPartTable,
                self.metal_part_table.as_ref().map(TableDiff::lines),
            ),
            (Differ::LiveIsoLs, self.live_iso_ls.as_ref().map(iso::lines)),
            (Differ::Initrd, self.initrd.as_ref().map(InitrdDiff::lines)),
        ];
        for (differ, lines) in sections {
            let Some(mut lines) = lines else { continue };
            writeln!(out, "[{}]", differ.name())?;
            if lines.is_empty() {
                writeln!(out, "No differences")?;
            }
            // Stable: a path both removed and added keeps "-" before "+".
            lines.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, l) in lines {
                writeln!(out, "{l}")?;
            }
        }
        Ok(())
    }
}

/// A build as the differs see it.
struct Build {
    id: String,
    /// `builds/<id>/<arch>`.
    dir: PathBuf,
    meta: Meta,
}

impl Build {
    fn load(h: &History, id: &str, arch: &str) -> Result<Self> {
        let dir = h.build_dir(id, arch);
        let meta = Meta::load(&dir.join("meta.json")).with_context(|| format!("build {id}"))?;
        Ok(Build {
            id: id.to_string(),
            dir,
            meta,
        })
    }

    /// The file of the artifact `images.<key>`, or an error saying which command makes it.
    fn image(&self, key: &str, what: &str, make: &str) -> Result<PathBuf> {
        let Some(a) = self.meta.images.get(key) else {
            bail!(
                "build {} has no {what} (no images.{key} in {}): run `{make}`",
                self.id,
                self.dir.join("meta.json").display()
            );
        };
        let p = self.dir.join(&a.path);
        if !p.exists() {
            bail!(
                "build {}: {} (its images.{key}) is missing",
                self.id,
                p.display()
            );
        }
        Ok(p)
    }
}

/// FROM and TO as `cosa diff` takes them: TO defaults to the latest build, FROM to
/// the build before TO; each may be a build ID, a tag or `latest`.
pub fn resolve_pair(h: &History, from: Option<&str>, to: Option<&str>) -> Result<(String, String)> {
    let to = h.resolve_id(to)?;
    let from = match from {
        Some(f) => h.resolve_id(Some(f))?,
        None => {
            let b = h.load()?;
            let i = b
                .builds
                .iter()
                .position(|e| e.id == to)
                .with_context(|| format!("build {to} is not in builds.json"))?;
            b.builds
                .get(i + 1)
                .map(|e| e.id.clone())
                .with_context(|| format!("build {to} has no older build to compare with"))?
        }
    };
    Ok((from, to))
}

/// Run `differs` on the builds `from` and `to` of `wd`.
pub fn diff(wd: &Workdir, arch: &str, from: &str, to: &str, differs: &[Differ]) -> Result<Report> {
    let h = History::new(wd.builds_dir());
    let a = Build::load(&h, from, arch)?;
    let b = Build::load(&h, to, arch)?;
    let mut r = Report {
        from: a.id.clone(),
        to: b.id.clone(),
        rpms: None,
        ostree: None,
        metal_part_table: None,
        live_iso_ls: None,
        initrd: None,
    };
    // Opened on first use: the image differs need no repo.
    let mut opened: Option<ostree::Repo> = None;
    let mut repo = || -> Result<ostree::Repo> {
        if let Some(r) = &opened {
            return Ok(r.clone());
        }
        let r = tree::open_repo(&wd.repo_path())?;
        opened = Some(r.clone());
        Ok(r)
    };
    let mut sorted = differs.to_vec();
    sorted.sort();
    sorted.dedup();
    for d in sorted {
        match d {
            Differ::Rpms => {
                let lock = |x: &Build| {
                    h.build_lockfile(&x.id, arch).with_context(|| {
                        format!(
                            "build {}: reading its package list (imported builds have none)",
                            x.id
                        )
                    })
                };
                r.rpms = Some(RpmsDiff::of(&lock(&a)?, &lock(&b)?));
            }
            Differ::Ostree => {
                let repo = repo()?;
                let (ca, cb) = (&a.meta.ostree_commit, &b.meta.ostree_commit);
                r.ostree = Some(tree::commit_diff(&repo, ca, cb).with_context(|| {
                    format!(
                        "comparing commit {ca} (build {}) with {cb} (build {}) in {}",
                        a.id,
                        b.id,
                        wd.repo_path().display()
                    )
                })?);
            }
            Differ::MetalPartTable => {
                let table = |x: &Build| {
                    let p = x.image("metal", "metal image", "cosa osbuild metal")?;
                    gpt::image_table(&p).with_context(|| {
                        format!(
                            "build {}: reading the partition table of {}",
                            x.id,
                            p.display()
                        )
                    })
                };
                r.metal_part_table = Some(TableDiff::of(&table(&a)?, &table(&b)?));
            }
            Differ::LiveIsoLs => {
                let ls = |x: &Build| {
                    let p = x.image("live-iso", "live ISO", "cosa buildextend-live")?;
                    iso::listing(&p).with_context(|| {
                        format!("build {}: listing the files of {}", x.id, p.display())
                    })
                };
                r.live_iso_ls = Some(Changes::of(&ls(&a)?, &ls(&b)?));
            }
            Differ::Initrd => {
                let repo = repo()?;
                let listing = |x: &Build| {
                    let c = &x.meta.ostree_commit;
                    let (path, data) = tree::commit_initramfs(&repo, c).with_context(|| {
                        format!(
                            "build {}: reading the initramfs of commit {c} in {}",
                            x.id,
                            wd.repo_path().display()
                        )
                    })?;
                    let entries = initrd::list(&data)
                        .with_context(|| format!("build {}: reading {path} of commit {c}", x.id))?;
                    Ok::<_, anyhow::Error>((path, entries))
                };
                let (pa, la) = listing(&a)?;
                let (pb, lb) = listing(&b)?;
                r.initrd = Some(InitrdDiff {
                    image: Change { from: pa, to: pb },
                    entries: Changes::of(&la, &lb),
                });
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::builds::artifact::Artifact;
    use crate::builds::history::{BuildEntry, BuildsJson};

    #[test]
    fn changes_of_two_listings() {
        let a: BTreeMap<&str, (u32, &str)> =
            [("a", (1, "a")), ("b", (2, "b")), ("c", (3, "c"))].into();
        let b: BTreeMap<&str, (u32, &str)> =
            [("b", (2, "b")), ("c", (4, "c")), ("d", (5, "d"))].into();
        let c = Changes::of(&a, &b);
        assert_eq!(c.removed, [(1, "a")]);
        assert_eq!(c.added, [(5, "d")]);
        assert_eq!(
            c.modified,
            [Change {
                from: (3, "c"),
                to: (4, "c")
            }]
        );
        assert!(Changes::of(&a, &a).is_empty());
    }

    /// A workdir with two builds (`1`, then `2`) whose meta.json name `images`.
    fn workdir(images: [&[(&str, &str)]; 2]) -> (tempfile::TempDir, Workdir) {
        let t = tempfile::tempdir().unwrap();
        let (wd, _) = Workdir::create(&t.path().join("w")).unwrap();
        fs_err::create_dir_all(wd.config_dir()).unwrap();
        let h = History::new(wd.builds_dir());
        for (id, imgs) in ["1", "2"].into_iter().zip(images) {
            let dir = h.build_dir(id, "x86_64");
            fs_err::create_dir_all(&dir).unwrap();
            let mut m = Meta::new("os", id, &"0".repeat(64), 0, "x86_64");
            for (key, src) in imgs {
                let name = Path::new(src).file_name().unwrap();
                fs_err::copy(src, dir.join(name)).unwrap();
                m.images
                    .insert(key.to_string(), Artifact::of(&dir.join(name)).unwrap());
            }
            m.save(&dir.join("meta.json")).unwrap();
        }
        let entry = |id: &str| BuildEntry {
            id: id.into(),
            arches: vec!["x86_64".into()],
        };
        h.save(&BuildsJson {
            builds: vec![entry("2"), entry("1")],
            ..Default::default()
        })
        .unwrap();
        (t, wd)
    }

    #[test]
    fn live_iso_ls_and_metal_part_table_through_a_workdir() {
        let t = tempfile::tempdir().unwrap();
        let iso1 = iso::tests::iso(
            t.path(),
            "a.iso",
            &[
                ("images/pxeboot/rootfs.img", b"rootfs v1"),
                ("images/ignition.img", b""),
                ("EFI/old.efi", b"x"),
            ],
        );
        let iso2 = iso::tests::iso(
            t.path(),
            "b.iso",
            &[
                ("images/pxeboot/rootfs.img", b"rootfs v1.1"),
                ("images/ignition.img", b""),
                ("EFI/new.efi", b"xy"),
            ],
        );
        let d1 = gpt::tests::disk(t.path(), "a.raw", 512, &gpt::tests::LAYOUT);
        let mut grown = gpt::tests::LAYOUT;
        grown[2].2 = 6;
        let d2 = gpt::tests::disk(t.path(), "b.raw", 512, &grown);
        let d2 = gpt::tests::compress(&d2, "xz");
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        let (i1, i2, d1, d2) = (s(&iso1), s(&iso2), s(&d1), s(&d2));
        let (_t, wd) = workdir([
            &[("live-iso", &i1), ("metal", &d1)],
            &[("live-iso", &i2), ("metal", &d2)],
        ]);
        let h = History::new(wd.builds_dir());
        assert_eq!(
            resolve_pair(&h, None, None).unwrap(),
            ("1".to_string(), "2".to_string())
        );
        let r = diff(
            &wd,
            "x86_64",
            "1",
            "2",
            &[Differ::LiveIsoLs, Differ::MetalPartTable],
        )
        .unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["from"], "1");
        assert_eq!(
            json["live-iso-ls"],
            serde_json::json!({
                "added": [{"path": "/EFI/new.efi", "size": 2}],
                "removed": [{"path": "/EFI/old.efi", "size": 1}],
                "modified": [{
                    "from": {"path": "/images/pxeboot/rootfs.img", "size": 9},
                    "to": {"path": "/images/pxeboot/rootfs.img", "size": 11},
                }],
            })
        );
        let parts = &json["metal-part-table"];
        assert_eq!(
            parts["sector-size"],
            serde_json::json!({"from": 512, "to": 512})
        );
        assert_eq!(parts["modified"][0]["to"]["label"], "root");
        assert_eq!(parts["modified"][0]["to"]["size"], 6 * 1024 * 1024);
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);

        let mut text = Vec::new();
        r.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with("From 1 to 2\n[metal-part-table]\n"),
            "{text}"
        );
        assert!(text.contains("~ 3 root: size 4194304 -> 6291456"), "{text}");
        assert!(
            text.ends_with(
                "[live-iso-ls]\n\
                 + /EFI/new.efi (2 bytes)\n\
                 - /EFI/old.efi (1 bytes)\n\
                 ~ /images/pxeboot/rootfs.img: size 9 -> 11\n"
            ),
            "{text}"
        );

        let same = diff(&wd, "x86_64", "1", "1", &[Differ::LiveIsoLs]).unwrap();
        let mut text = Vec::new();
        same.write_text(&mut text).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "From 1 to 1\n[live-iso-ls]\nNo differences\n"
        );
    }

    #[test]
    fn missing_images_say_which_build_and_how_to_make_them() {
        let t = tempfile::tempdir().unwrap();
        let d = gpt::tests::disk(t.path(), "a.raw", 512, &gpt::tests::LAYOUT);
        let d = d.to_str().unwrap();
        let (_t, wd) = workdir([&[("metal", d)], &[]]);
        let e = diff(&wd, "x86_64", "1", "2", &[Differ::MetalPartTable]).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("build 2 has no metal image") && e.contains("cosa osbuild metal"),
            "{e}"
        );
        let e = diff(&wd, "x86_64", "1", "2", &[Differ::LiveIsoLs]).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("build 1 has no live ISO") && e.contains("cosa buildextend-live"),
            "{e}"
        );
        // meta.json names it but the file is gone.
        fs_err::remove_file(wd.builds_dir().join("1/x86_64/a.raw")).unwrap();
        let e = diff(&wd, "x86_64", "1", "2", &[Differ::MetalPartTable]).unwrap_err();
        assert!(format!("{e:#}").contains("build 1: "), "{e:#}");
        let e = diff(&wd, "x86_64", "1", "2", &[Differ::Rpms]).unwrap_err();
        assert!(
            format!("{e:#}").contains("build 1: reading its package list"),
            "{e:#}"
        );
    }
}
