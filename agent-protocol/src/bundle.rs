//! The test bundle a `run` carries: an uncompressed tar holding the test
//! executable at its top level and, when the test has one, its `data/` tree.

use fs_err as fs;
use std::io;
use std::path::Path;

/// Name of the data directory inside a bundle (`$KOLA_EXT_DATA`).
pub const DATA_DIR: &str = "data";

/// Packs `exec` (as its file name) and `data_dir` (as `data/`, symlinks kept).
/// Returns the executable's name in the bundle and the tar bytes.
pub fn pack(exec: &Path, data_dir: Option<&Path>) -> io::Result<(String, Vec<u8>)> {
    let name = exec
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| *n != DATA_DIR)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unusable test executable name: {}", exec.display()),
            )
        })?
        .to_string();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut f = fs::File::open(exec)?;
    b.append_file(&name, f.file_mut())?;
    if let Some(d) = data_dir {
        b.append_dir_all(DATA_DIR, d)?;
    }
    Ok((name, b.into_inner()?))
}

/// Like [`pack`], but the data's symlinks are resolved, as kola ships them: a
/// distribution's tests share files through them (fedora-coreos-config's
/// `data/commonlib.sh -> ../../data/commonlib.sh`). Each must resolve inside
/// `root` (the tests directory); one that leaves it, or resolves to nothing, is
/// an error naming it, and nothing is packed.
pub fn pack_within(
    exec: &Path,
    data_dir: Option<&Path>,
    root: &Path,
) -> io::Result<(String, Vec<u8>)> {
    let Some(d) = data_dir else {
        return pack(exec, None);
    };
    let root = fs::canonicalize(root)?;
    check_links(d, &root)?;
    let name = pack(exec, None)?.0;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(true);
    let mut f = fs::File::open(exec)?;
    b.append_file(&name, f.file_mut())?;
    b.append_dir_all(DATA_DIR, d)?;
    Ok((name, b.into_inner()?))
}

/// Every symlink under `dir` resolves to something inside `root`; directories
/// reached through a link are checked too.
fn check_links(dir: &Path, root: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let md = fs::symlink_metadata(&p)?;
        if md.file_type().is_symlink() {
            let target = fs::canonicalize(&p).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{} is a symlink to nothing: {e}", p.display()),
                )
            })?;
            if !target.starts_with(root) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is a symlink to {}, outside the tests directory {}",
                        p.display(),
                        target.display(),
                        root.display()
                    ),
                ));
            }
            if target.is_dir() {
                check_links(&target, root)?;
            }
        } else if md.is_dir() {
            check_links(&p, root)?;
        }
    }
    Ok(())
}

/// Unpacks a bundle into `dest` (created if missing). Entries cannot escape it.
pub fn unpack(bundle: &[u8], dest: &Path) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    let mut a = tar::Archive::new(bundle);
    a.set_preserve_permissions(true);
    a.unpack(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("tests/kola");
        fs::create_dir_all(root.join("data")).unwrap();
        fs::write(root.join("data/commonlib.sh"), "fatal() { exit 1; }\n").unwrap();
        fs::create_dir_all(root.join("files/data")).unwrap();
        fs::write(root.join("files/test.sh"), "#!/bin/sh\n").unwrap();
        symlink(
            "../../data/commonlib.sh",
            root.join("files/data/commonlib.sh"),
        )
        .unwrap();
        (d, root)
    }

    #[test]
    fn links_inside_the_tests_directory_are_shipped_as_their_files() {
        let (_d, root) = tree();
        let t = root.join("files");
        let (name, tar) = pack_within(&t.join("test.sh"), Some(&t.join("data")), &root).unwrap();
        assert_eq!(name, "test.sh");
        let out = tempfile::tempdir().unwrap();
        unpack(&tar, out.path()).unwrap();
        let lib = out.path().join("data/commonlib.sh");
        assert!(!fs::symlink_metadata(&lib).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(lib).unwrap(), "fatal() { exit 1; }\n");
    }

    #[test]
    fn links_leaving_the_tests_directory_or_dangling_are_refused() {
        let (d, root) = tree();
        let t = root.join("files");
        fs::write(d.path().join("secret"), "host\n").unwrap();
        symlink(d.path().join("secret"), t.join("data/secret")).unwrap();
        let e = pack_within(&t.join("test.sh"), Some(&t.join("data")), &root).unwrap_err();
        assert!(e.to_string().contains("outside the tests directory"), "{e}");
        assert!(e.to_string().contains("data/secret"), "{e}");
        fs::remove_file(t.join("data/secret")).unwrap();
        symlink("missing", t.join("data/gone")).unwrap();
        let e = pack_within(&t.join("test.sh"), Some(&t.join("data")), &root).unwrap_err();
        assert!(e.to_string().contains("symlink to nothing"), "{e}");
    }
}
