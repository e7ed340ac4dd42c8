//! A build's artifacts as meta.json records them: `images.<name> = {path, sha256, size}`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Artifact {
    /// File name, relative to the build's arch directory.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
}

/// sha256 and size of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

impl Artifact {
    /// Describe `file` (which must be in the build directory).
    pub fn of(file: &Path) -> Result<Self> {
        let (sha256, size) = sha256_file(file)?;
        Ok(Artifact {
            path: file
                .file_name()
                .context("artifact has no file name")?
                .to_string_lossy()
                .into_owned(),
            sha256,
            size,
            uncompressed_sha256: None,
            uncompressed_size: None,
        })
    }
}

/// What an image build did for one artifact.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltImage {
    /// The key in meta.json's `images` (platform, `live-iso`, …).
    pub name: String,
    /// false when the build already had it and --force was not given.
    pub built: bool,
    pub image: Artifact,
}

/// Move finished artifacts (name, file in a scratch dir on the same filesystem) into
/// the build directory and record them in `meta` (which the caller saves last).
pub fn install(
    build_dir: &Path,
    meta: &mut super::Meta,
    made: Vec<(String, std::path::PathBuf)>,
) -> Result<Vec<BuiltImage>> {
    let images = meta
        .0
        .entry("images")
        .or_insert_with(|| serde_json::json!({}));
    let mut results = Vec::new();
    for (name, file) in made {
        let dest = build_dir.join(file.file_name().context("artifact has no file name")?);
        std::fs::rename(&file, &dest)
            .with_context(|| format!("moving {} into {}", file.display(), build_dir.display()))?;
        let image = Artifact::of(&dest)?;
        images[name.as_str()] = serde_json::to_value(&image)?;
        results.push(BuiltImage {
            name,
            built: true,
            image,
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_names() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x-1-qemu.x86_64.qcow2");
        std::fs::write(&p, "abc").unwrap();
        let a = Artifact::of(&p).unwrap();
        assert_eq!(a.path, "x-1-qemu.x86_64.qcow2");
        assert_eq!(a.size, 3);
        assert_eq!(
            a.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let j = serde_json::to_value(&a).unwrap();
        assert!(j.get("uncompressed-sha256").is_none());
    }
}
