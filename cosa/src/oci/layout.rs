//! The OCI image layout: descriptors, manifest, index, and the `oci-archive` tar that
//! holds them (written reproducibly: fixed headers, blobs sorted by digest).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::layer::HashingWriter;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub manifests: Vec<Descriptor>,
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A JSON blob and its descriptor.
pub fn json_blob<T: Serialize>(media_type: &str, v: &T) -> Result<(Descriptor, Vec<u8>)> {
    let bytes = serde_json::to_vec(v)?;
    Ok((
        Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{}", sha256_hex(&bytes)),
            size: bytes.len() as u64,
            annotations: None,
        },
        bytes,
    ))
}

fn entry_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(0);
    h
}

/// Write an `oci-archive` to `dest`: the blobs (keyed by hex sha256), `index.json`,
/// `oci-layout`. Returns the archive's sha256 and size.
pub fn write_archive(
    dest: &Path,
    blobs: &BTreeMap<String, Vec<u8>>,
    index: &Index,
) -> Result<(String, u64)> {
    let f = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut tar = tar::Builder::new(HashingWriter::new(BufWriter::with_capacity(1 << 20, f)));
    for d in ["blobs", "blobs/sha256"] {
        let mut h = entry_header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, d, std::io::empty())?;
    }
    for (digest, b) in blobs {
        let path = format!("blobs/sha256/{digest}");
        let mut h = entry_header(tar::EntryType::Regular, 0o644, b.len() as u64);
        tar.append_data(&mut h, &path, b.as_slice())?;
    }
    let index = serde_json::to_vec(index)?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    for (name, data) in [("index.json", index.as_slice()), ("oci-layout", layout)] {
        let mut h = entry_header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, name, data)?;
    }
    let (mut w, sha, size) = tar.into_inner()?.finish();
    w.flush()?;
    w.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok((sha, size))
}

/// An image in an `oci:` layout directory (what `skopeo copy` normalizes to).
pub struct OciDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub config: serde_json::Value,
}

impl OciDir {
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let Some(hex) = digest.strip_prefix("sha256:") else {
            bail!("unsupported digest {digest}");
        };
        if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            bail!("invalid digest {digest}");
        }
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    fn read_blob(dir: &Path, d: &Descriptor) -> Result<Vec<u8>> {
        let hex = d.digest.strip_prefix("sha256:").unwrap_or(&d.digest);
        let p = dir.join("blobs/sha256").join(hex);
        let mut b = Vec::new();
        File::open(&p)
            .with_context(|| format!("blob {} is missing", d.digest))?
            .read_to_end(&mut b)?;
        if format!("sha256:{}", sha256_hex(&b)) != d.digest {
            bail!("blob {} does not match its digest", d.digest);
        }
        Ok(b)
    }

    /// Open the single image of an OCI layout directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let p = dir.join("index.json");
        let index: Index = serde_json::from_slice(
            &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?;
        let [m] = index.manifests.as_slice() else {
            bail!(
                "{} lists {} images; expected one",
                p.display(),
                index.manifests.len()
            );
        };
        let manifest: Manifest = serde_json::from_slice(&Self::read_blob(dir, m)?)
            .context("parsing the image manifest")?;
        let config = serde_json::from_slice(&Self::read_blob(dir, &manifest.config)?)
            .context("parsing the image config")?;
        Ok(OciDir {
            dir: dir.to_path_buf(),
            manifest,
            config,
        })
    }

    /// The image's labels (`config.Labels`).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config["config"]["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The uncompressed digests of the layers, in order.
    pub fn diff_ids(&self) -> Vec<String> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A layer's uncompressed tar stream.
    pub fn open_layer(&self, d: &Descriptor) -> Result<Box<dyn Read>> {
        let p = self.blob_path(&d.digest)?;
        let f = File::open(&p).with_context(|| format!("layer {} is missing", d.digest))?;
        let mut r = std::io::BufReader::new(f);
        let magic = {
            use std::io::BufRead;
            r.fill_buf()?
                .get(..4)
                .map(|m| m.to_vec())
                .unwrap_or_default()
        };
        Ok(if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(r))
        } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
            Box::new(zstd::Decoder::with_buffer(r)?)
        } else {
            Box::new(r)
        })
    }
}
