//! `--live-iso-ls`: the regular files of a live ISO with their sizes, as xorriso
//! lists them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Changes, Lines};

/// A file of a live ISO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoFile {
    /// From the ISO's root, with a leading `/` (Rock Ridge names).
    pub path: String,
    pub size: u64,
}

/// The regular files of an ISO by path.
pub fn listing(iso: &Path) -> Result<BTreeMap<String, IsoFile>> {
    let table = crate::live::customize::file_table(iso)?;
    Ok(table
        .into_iter()
        .map(|(p, (_, size))| {
            let path = format!("/{p}");
            (path.clone(), IsoFile { path, size })
        })
        .collect())
}

pub(super) fn lines(c: &Changes<IsoFile>) -> Lines {
    let mut l = Lines::new();
    for f in &c.removed {
        l.push((f.path.clone(), format!("- {} ({} bytes)", f.path, f.size)));
    }
    for f in &c.added {
        l.push((f.path.clone(), format!("+ {} ({} bytes)", f.path, f.size)));
    }
    for m in &c.modified {
        let line = format!("~ {}: size {} -> {}", m.to.path, m.from.size, m.to.size);
        l.push((m.to.path.clone(), line));
    }
    l
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;

    use cmdext::CommandRunExt;

    use super::*;

    /// Make an ISO of `files` with xorriso.
    pub fn iso(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let root = dir.join(format!("{name}.d"));
        for (p, data) in files {
            let f = root.join(p);
            fs_err::create_dir_all(f.parent().unwrap()).unwrap();
            fs_err::write(f, data).unwrap();
        }
        let out = dir.join(name);
        cmdext::command("xorriso")
            .args(["-report_about", "SORRY", "-as", "mkisofs", "-R", "-o"])
            .arg(&out)
            .arg(&root)
            .run()
            .unwrap();
        out
    }

    #[test]
    fn lists_files_not_directories() {
        let t = tempfile::tempdir().unwrap();
        let p = iso(t.path(), "x.iso", &[("a/b/c.txt", b"abc"), ("empty", b"")]);
        let l = listing(&p).unwrap();
        let files: Vec<(&str, u64)> = l.values().map(|f| (f.path.as_str(), f.size)).collect();
        assert_eq!(files, [("/a/b/c.txt", 3), ("/empty", 0)]);
        let e = listing(&t.path().join("missing.iso")).unwrap_err();
        assert!(format!("{e:#}").contains("missing.iso"), "{e:#}");
        fs_err::write(t.path().join("not.iso"), [0u8; 65536]).unwrap();
        let e = listing(&t.path().join("not.iso")).unwrap_err();
        assert!(format!("{e:#}").contains("not an ISO 9660 image"), "{e:#}");
    }
}
