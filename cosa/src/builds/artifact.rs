//! A build's artifacts as meta.json records them: `images.<name> = {path, sha256, size}`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// What `cosa sign` signed of this artifact, and with which key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<Signature>,
}

/// One signature over an artifact (or, for `ostree`, over what the archive holds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Signature {
    pub kind: SignatureKind,
    /// The signing key's fingerprint.
    pub key: String,
    /// The signature's file in the build directory (none for `ostree-commit`, whose
    /// signature is the commit's detached metadata in the repo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `containers-simple-signing`: the image reference the signature vouches for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `ostree-commit`: the signed commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureKind {
    /// An OpenPGP detached signature of the file (`<file>.sig`), as Fedora CoreOS
    /// publishes beside each artifact.
    Gpg,
    /// containers' simple signing of the OCI image's manifest, for a `signedBy`
    /// rule in policy.json.
    ContainersSimpleSigning,
    /// GPG signature of the ostree commit, in its detached metadata.
    OstreeCommit,
}

/// sha256 and size of a file, streamed. Holes of a sparse file (a disk image is
/// mostly holes) are hashed as the zeros they read as, without reading them: the
/// kernel would otherwise fill the page cache with gigabytes of zero pages.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let ctx = || format!("reading {}", path.display());
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata().with_context(ctx)?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d.min(len),
            // No data after pos: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => len,
            Err(e) => return Err(std::io::Error::from(e)).with_context(ctx),
        };
        buf.fill(0);
        while pos < data {
            let n = (data - pos).min(buf.len() as u64) as usize;
            h.update(&buf[..n]);
            pos += n as u64;
        }
        if pos == len {
            break;
        }
        let hole = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(pos))
            .map_err(std::io::Error::from)
            .with_context(ctx)?
            .min(len);
        f.seek(SeekFrom::Start(pos)).with_context(ctx)?;
        let mut region = (&mut f).take(hole - pos);
        loop {
            let n = region.read(&mut buf).with_context(ctx)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            pos += n as u64;
        }
        if pos < hole {
            anyhow::bail!("{} shrank while it was being hashed", path.display());
        }
    }
    Ok((hex::encode(h.finalize()), len))
}

impl Artifact {
    /// An uncompressed artifact.
    pub fn new(path: &str, sha256: &str, size: u64) -> Self {
        Artifact {
            path: path.to_string(),
            sha256: sha256.to_string(),
            size,
            uncompressed_sha256: None,
            uncompressed_size: None,
            signatures: Vec::new(),
        }
    }

    /// Describe `file` (which must be in the build directory).
    pub fn of(file: &Path) -> Result<Self> {
        let (sha256, size) = sha256_file(file)?;
        let name = file.file_name().context("artifact has no file name")?;
        Ok(Artifact::new(&name.to_string_lossy(), &sha256, size))
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

/// Describe files made in a scratch directory, hashing them in parallel.
pub fn describe(made: Vec<(String, PathBuf)>) -> Result<Vec<(String, PathBuf, Artifact)>> {
    made.into_par_iter()
        .map(|(name, file)| {
            let a = Artifact::of(&file)?;
            Ok((name, file, a))
        })
        .collect()
}

/// Move finished artifacts (name, file in a scratch dir on the same filesystem, its
/// description) into the build directory and record them in `meta` (which the caller
/// saves last).
pub fn install(
    build_dir: &Path,
    meta: &mut super::Meta,
    made: Vec<(String, PathBuf, Artifact)>,
) -> Result<Vec<BuiltImage>> {
    let mut results = Vec::new();
    for (name, file, image) in made {
        let dest = build_dir.join(file.file_name().context("artifact has no file name")?);
        fs_err::rename(&file, &dest)
            .with_context(|| format!("moving {} into {}", file.display(), build_dir.display()))?;
        meta.images.insert(name.clone(), image.clone());
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
        fs_err::write(&p, "abc").unwrap();
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

    #[test]
    fn sparse_files_hash_like_their_bytes() {
        use std::os::unix::fs::FileExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("disk.raw");
        let f = std::fs::File::create(&p).unwrap();
        // data, hole, data, trailing hole, at offsets that are not block-aligned
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(&[7u8; 5000], 3 * 1024 * 1024 + 17).unwrap();
        f.set_len(9 * 1024 * 1024 + 3).unwrap();
        let bytes = fs_err::read(&p).unwrap();
        let (sha, size) = sha256_file(&p).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&bytes)));
        // all hole
        let q = t.path().join("empty.raw");
        std::fs::File::create(&q)
            .unwrap()
            .set_len(2 * 1024 * 1024)
            .unwrap();
        let (sha, _) = sha256_file(&q).unwrap();
        assert_eq!(sha, hex::encode(Sha256::digest(vec![0u8; 2 * 1024 * 1024])));
    }
}
