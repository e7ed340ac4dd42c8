//! The OCI image layout, with oci-spec's types: JSON blobs and their descriptors, the
//! `oci-archive` tar that holds them (written reproducibly: fixed headers, blobs
//! sorted by digest, JSON keys sorted), and reading an `oci:` layout directory.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use oci_spec::image::{
    Descriptor, Digest, DigestAlgorithm, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
    OciLayoutBuilder, Sha256Digest,
};
use serde::Serialize;

use super::layer::HashingWriter;

/// The `sha256:` digest of a blob whose hex sha256 is `hex`.
pub fn sha256_digest(hex: &str) -> Result<Digest> {
    let d: Sha256Digest = hex
        .parse()
        .with_context(|| format!("invalid sha256 {hex:?}"))?;
    Ok(d.into())
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

fn sort_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.sort_keys();
            m.values_mut().for_each(sort_keys);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// Compact JSON with every object's keys sorted: oci-spec holds annotations and
/// labels in HashMaps, whose order would otherwise change the digests run to run.
pub fn canonical_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut v = serde_json::to_value(v)?;
    sort_keys(&mut v);
    Ok(serde_json::to_vec(&v)?)
}

/// A JSON blob and its descriptor.
pub fn json_blob<T: Serialize>(media_type: MediaType, v: &T) -> Result<(Descriptor, Vec<u8>)> {
    let bytes = canonical_json(v)?;
    let digest = sha256_digest(&sha256_hex(&bytes))?;
    Ok((
        Descriptor::new(media_type, bytes.len() as u64, digest),
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
    index: &ImageIndex,
) -> Result<(String, u64)> {
    let f = fs::File::create(dest)?;
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
    let index = canonical_json(index)?;
    let layout = canonical_json(
        &OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()?,
    )?;
    for (name, data) in [("index.json", &index), ("oci-layout", &layout)] {
        let mut h = entry_header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, name, data.as_slice())?;
    }
    let (mut w, sha, size) = tar
        .into_inner()
        .with_context(|| format!("writing {}", dest.display()))?
        .finish();
    w.flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", dest.display()))?
        .sync_all()?;
    Ok((sha, size))
}

/// The manifest of the single image in an `oci-archive`, byte for byte as stored (a
/// signature over the manifest is over these bytes). Layers are skipped unread.
pub fn archive_manifest(archive: &Path) -> Result<Vec<u8>> {
    let ctx = || format!("reading the image manifest of {}", archive.display());
    let f = fs::File::open(archive)?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(f));
    let mut index = None;
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in tar.entries_with_seek().with_context(ctx)? {
        let mut entry = entry.with_context(ctx)?;
        let path = entry
            .path()
            .with_context(ctx)?
            .to_string_lossy()
            .into_owned();
        let path = path.trim_start_matches("./").to_string();
        // A manifest is JSON of a few kilobytes; layers are what is large.
        if entry.size() > 1 << 20 {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).with_context(ctx)?;
        if path == "index.json" {
            index = Some(data);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            small.insert(hex.to_string(), data);
        }
    }
    let index: ImageIndex = serde_json::from_slice(&index.with_context(|| {
        format!(
            "{} has no index.json: not an oci-archive",
            archive.display()
        )
    })?)
    .with_context(ctx)?;
    let [m] = index.manifests().as_slice() else {
        bail!(
            "{}: the archive holds {} images, not one",
            archive.display(),
            index.manifests().len()
        );
    };
    let bytes = small
        .remove(m.digest().digest())
        .with_context(|| format!("{}: manifest {} is missing", archive.display(), m.digest()))?;
    if sha256_digest(&sha256_hex(&bytes))? != *m.digest() {
        bail!(
            "{}: manifest {} does not match its digest",
            archive.display(),
            m.digest()
        );
    }
    Ok(bytes)
}

/// An image config. The image spec makes `history` optional, oci-spec 0.7 requires
/// it: a config without one reads as having an empty history.
fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(o) = v.as_object_mut() {
        o.entry("history").or_insert_with(|| serde_json::json!([]));
    }
    Ok(serde_json::from_value(v)?)
}

/// An image in an `oci:` layout directory (what `skopeo copy` normalizes to).
pub struct OciDir {
    pub dir: PathBuf,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

impl OciDir {
    fn blob_path(dir: &Path, digest: &Digest) -> Result<PathBuf> {
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            bail!("unsupported digest {digest}");
        }
        Ok(dir.join("blobs/sha256").join(digest.digest()))
    }

    fn read_blob(dir: &Path, d: &Descriptor) -> Result<Vec<u8>> {
        let b = fs::read(Self::blob_path(dir, d.digest())?)
            .with_context(|| format!("blob {} is missing", d.digest()))?;
        if sha256_digest(&sha256_hex(&b))? != *d.digest() {
            bail!("blob {} does not match its digest", d.digest());
        }
        Ok(b)
    }

    /// Open the single image of an OCI layout directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let p = dir.join("index.json");
        let index: ImageIndex = serde_json::from_slice(&fs::read(&p)?)
            .with_context(|| format!("parsing {}", p.display()))?;
        let [m] = index.manifests().as_slice() else {
            bail!(
                "{} lists {} images; expected one",
                p.display(),
                index.manifests().len()
            );
        };
        let manifest: ImageManifest = serde_json::from_slice(&Self::read_blob(dir, m)?)
            .context("parsing the image manifest")?;
        let config = parse_config(&Self::read_blob(dir, manifest.config())?)
            .context("parsing the image config")?;
        Ok(OciDir {
            dir: dir.to_path_buf(),
            manifest,
            config,
        })
    }

    /// The image's labels (`config.Labels`).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref())
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// The uncompressed digests of the layers, in order.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }

    /// A layer's uncompressed tar stream.
    pub fn open_layer(&self, d: &Descriptor) -> Result<Box<dyn Read>> {
        let p = Self::blob_path(&self.dir, d.digest())?;
        let f = fs::File::open(&p).with_context(|| format!("layer {} is missing", d.digest()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn json_blobs_are_stable_and_sorted() {
        let annotations: HashMap<String, String> = (0..32)
            .map(|i| (format!("key{i:02}"), i.to_string()))
            .collect();
        let mut d = Descriptor::new(
            MediaType::ImageLayerGzip,
            3,
            sha256_digest(&sha256_hex(b"abc")).unwrap(),
        );
        d.set_annotations(Some(annotations));
        let (desc, bytes) = json_blob(MediaType::Descriptor, &d).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"annotations":{"key00":"0","key01":"1","#));
        assert!(text
            .ends_with(r#""mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3}"#));
        assert_eq!(desc.size(), bytes.len() as u64);
        assert_eq!(desc.digest().digest(), sha256_hex(&bytes));
        let back: Descriptor = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, d);
        assert!(sha256_digest("not-hex").is_err());
    }

    #[test]
    fn a_config_without_history_is_read() {
        let c = parse_config(
            br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#,
        )
        .unwrap();
        assert!(c.history().is_empty());
        assert_eq!(c.rootfs().diff_ids(), &["sha256:00".to_string()]);
        assert!(parse_config(br#"{"os":"linux"}"#).is_err());
    }
}
