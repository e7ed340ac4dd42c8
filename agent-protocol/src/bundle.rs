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

/// Unpacks a bundle into `dest` (created if missing). Entries cannot escape it.
pub fn unpack(bundle: &[u8], dest: &Path) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    let mut a = tar::Archive::new(bundle);
    a.set_preserve_permissions(true);
    a.unpack(dest)
}
