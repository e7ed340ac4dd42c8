//! The initramfs: the stream's generator (dracut unless the treefile names another)
//! run over the finished tree, and a cache that skips it when nothing it read changed.
//!
//! dracut is most of a rebuild's time when one package changes (seconds, against
//! well under one for the rest), and its output depends on a small part of the tree.
//! The cache keeps the last image with the inputs it was made from, recorded after
//! the run, in the manner of a compiler's dependency file:
//!
//! - the generator's command line and the kernel version;
//! - every path of the tree with its file type (a generator's module checks test
//!   which commands and files exist);
//! - the content, mode and owner of each tree file the image holds at the same path
//!   (what an overlay, a scriptlet or a treefile edit changed is seen here);
//! - the identity (NEVRA and header digest) of each package that owns one of those
//!   files or the generator itself (what the generator read from them without
//!   copying it, its own scripts and data, changes with the package);
//! - the content of the generator's configuration and modules and of the kernel's
//!   module tree (`/usr/lib/dracut`, `/etc/dracut.conf*`, `/usr/lib/modules/KVER`),
//!   wherever they came from.
//!
//! If all of them are equal the cached image is copied into the tree after its own
//! checksum is verified; otherwise the generator runs and the cache is replaced. The
//! cache holds one image (the last), written image first and record last, each by
//! rename, so an interrupted build leaves either the old entry or the new one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rpmhdr::RpmHeader;
use super::sandbox::{run_read_only, Bind};
use crate::config::treefile::Treefile;
use crate::cpio;

/// What `make` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    Generated,
    Reused,
}

/// The record of the cached image: what it was made from.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Inputs {
    argv: Vec<String>,
    kver: String,
    /// sha256 over every path of the tree with its type.
    paths: String,
    /// Tree path (no leading `/`) → digest of its type, mode, owner and content.
    files: BTreeMap<String, String>,
    /// `dbkey` (NEVRA and header digest) of the packages the inputs come from.
    packages: BTreeSet<String>,
}

/// The cache entry: the record, and the image's file name and sha256.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    inputs: Inputs,
    image: String,
    sha256: String,
}

const RECORD: &str = "inputs.json";

/// Put the initramfs of kernel `kver` at `/usr/lib/modules/KVER/initramfs.img`,
/// from `cache` (a directory of its own) when its inputs are unchanged.
pub fn make(
    rootfs: &Path,
    scratch: &Path,
    cache: &Path,
    tf: &Treefile,
    hdrs: &[RpmHeader],
    kver: &str,
) -> Result<Made> {
    let argv = generator_argv(rootfs, tf, kver)?;
    let dest = rootfs
        .join("usr/lib/modules")
        .join(kver)
        .join("initramfs.img");
    let tree = TreeIndex::walk(rootfs)?;
    let owners = Owners::new(hdrs);
    if let Some(entry) = read_entry(cache) {
        if entry.inputs.argv == argv
            && entry.inputs.kver == kver
            && entry.inputs.paths == tree.paths
        {
            let now = inputs_now(
                rootfs,
                &tree,
                &owners,
                &argv,
                kver,
                entry.inputs.files.keys(),
            )?;
            if now == entry.inputs {
                if copy_cached(cache, &entry, &dest)? {
                    tracing::info!(
                        "initramfs for {kver}: reused ({} files and {} packages it was made from are unchanged)",
                        entry.inputs.files.len(),
                        entry.inputs.packages.len()
                    );
                    return Ok(Made::Reused);
                }
            } else {
                tracing::debug!(
                    "initramfs for {kver}: {}",
                    first_difference(&entry.inputs, &now)
                );
            }
        }
    }
    tracing::info!("generating the initramfs for {kver}");
    let image = generate(rootfs, scratch, &argv, kver)?;
    match members(&image) {
        Ok(members) => {
            let inputs = inputs_now(rootfs, &tree, &owners, &argv, kver, members.iter())?;
            if let Err(e) = store(cache, &image, inputs) {
                tracing::warn!("initramfs for {kver}: not cached: {e:#}");
            }
        }
        Err(e) => {
            tracing::warn!("initramfs for {kver}: not cached, its members cannot be listed: {e:#}")
        }
    }
    fs::set_permissions(&image, std::fs::Permissions::from_mode(0o600))?;
    fs::rename(&image, &dest)
        .with_context(|| format!("moving the initramfs of kernel {kver} into the tree"))?;
    Ok(Made::Generated)
}

/// The generator's command line, writing to `/run/cosa-initramfs/initramfs.img`.
fn generator_argv(rootfs: &Path, tf: &Treefile, kver: &str) -> Result<Vec<String>> {
    let mut argv: Vec<String>;
    if let Some(g) = &tf.initramfs_generator {
        if !rootfs.join(g.trim_start_matches('/')).exists() {
            bail!("initramfs-generator {g} is not in the tree");
        }
        argv = vec![g.clone()];
    } else {
        if !rootfs.join("usr/bin/dracut").exists() {
            bail!("the tree has a kernel ({kver}) but no /usr/bin/dracut, and the treefile names no initramfs-generator");
        }
        argv = [
            "dracut",
            "--add",
            "ostree",
            "--no-hostonly",
            "--reproducible",
            "--tmpdir=/tmp",
            "-f",
        ]
        .map(String::from)
        .to_vec();
    }
    argv.extend(tf.initramfs_args.iter().cloned());
    argv.push("/run/cosa-initramfs/initramfs.img".into());
    argv.push(kver.to_string());
    Ok(argv)
}

/// Run the generator with the tree read-only (it only reads it) and its output in a
/// directory of `scratch`; returns the image's path there.
fn generate(rootfs: &Path, scratch: &Path, argv: &[String], kver: &str) -> Result<PathBuf> {
    let outdir = scratch.join("initramfs");
    if outdir.exists() {
        fs::remove_dir_all(&outdir)?;
    }
    fs::create_dir(&outdir)?;
    let binds = [Bind::Rw(&outdir, "/run/cosa-initramfs")];
    run_read_only(rootfs, argv, &binds, &[]).with_context(|| {
        format!(
            "generating the initramfs for kernel {kver} with {}",
            argv[0]
        )
    })?;
    let image = outdir.join("initramfs.img");
    if !image.is_file() {
        bail!(
            "{} exited successfully for kernel {kver} but wrote no initramfs",
            argv[0]
        );
    }
    Ok(image)
}

/// Every path of the tree (relative, no leading `/`) with its metadata, and the
/// digest over paths and types.
struct TreeIndex {
    root: PathBuf,
    entries: HashMap<String, std::fs::Metadata>,
    paths: String,
}

impl TreeIndex {
    fn walk(rootfs: &Path) -> Result<Self> {
        let mut entries = HashMap::new();
        let mut names = Vec::new();
        for e in walkdir::WalkDir::new(rootfs).min_depth(1) {
            let e = e.with_context(|| format!("listing {}", rootfs.display()))?;
            let rel = e
                .path()
                .strip_prefix(rootfs)?
                .to_string_lossy()
                .into_owned();
            let md = e.metadata().with_context(|| format!("reading /{rel}"))?;
            names.push(format!("{rel}\0{}\n", kind(&md)));
            entries.insert(rel, md);
        }
        names.sort_unstable();
        let mut h = Sha256::new();
        for n in &names {
            h.update(n.as_bytes());
        }
        Ok(TreeIndex {
            root: rootfs.to_path_buf(),
            entries,
            paths: hex::encode(h.finalize()),
        })
    }

    /// `path` with the tree's symbolic links in it resolved inside the tree (the
    /// image holds `usr/lib/…` where the tree may say `lib/…`); None if it is not there.
    fn resolve(&self, path: &str) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    parts.pop();
                    continue;
                }
                _ => {}
            }
            parts.push(c);
            let here = parts.join("/");
            let md = self.entries.get(&here)?;
            // The last component stays as it is: a member that is a link is compared as one.
            if md.file_type().is_symlink() && !todo.is_empty() {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = self.link_target(&here)?;
                parts.pop();
                if target.starts_with('/') {
                    parts.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
            }
        }
        Some(parts.join("/"))
    }

    fn link_target(&self, rel: &str) -> Option<String> {
        let t = std::fs::read_link(self.root.join(rel)).ok()?;
        Some(t.to_string_lossy().into_owned())
    }
}

fn kind(md: &std::fs::Metadata) -> char {
    let t = md.file_type();
    if t.is_dir() {
        'd'
    } else if t.is_symlink() {
        'l'
    } else if t.is_file() {
        'f'
    } else {
        'o'
    }
}

/// Which package owns each path, from the headers.
struct Owners<'a> {
    by_path: HashMap<&'a str, &'a RpmHeader>,
}

impl<'a> Owners<'a> {
    fn new(hdrs: &'a [RpmHeader]) -> Self {
        let mut by_path = HashMap::new();
        for h in hdrs {
            for f in &h.files {
                by_path.insert(f.path.trim_start_matches('/'), h);
            }
        }
        Owners { by_path }
    }

    fn owner(&self, rel: &str) -> Option<&'a RpmHeader> {
        self.by_path.get(rel).copied()
    }
}

/// Directories whose whole content is an input whatever the image holds of them.
fn input_dirs(kver: &str) -> [String; 4] {
    [
        "usr/lib/dracut".into(),
        "etc/dracut.conf".into(),
        "etc/dracut.conf.d".into(),
        format!("usr/lib/modules/{kver}"),
    ]
}

/// The inputs as the tree has them now, for the image members `members`.
fn inputs_now<'m>(
    rootfs: &Path,
    tree: &TreeIndex,
    owners: &Owners,
    argv: &[String],
    kver: &str,
    members: impl Iterator<Item = &'m String>,
) -> Result<Inputs> {
    let mut files = BTreeMap::new();
    let mut packages = BTreeSet::new();
    let generator = argv[0].trim_start_matches('/');
    let generator = if generator.contains('/') {
        generator.to_string()
    } else {
        format!("usr/bin/{generator}")
    };
    let mut paths: BTreeSet<String> = members.filter_map(|m| tree.resolve(m)).collect();
    if let Some(g) = tree.resolve(&generator) {
        paths.insert(g);
    }
    let dirs = input_dirs(kver);
    for rel in tree.entries.keys() {
        if dirs
            .iter()
            .any(|d| rel == d || rel.starts_with(&format!("{d}/")))
        {
            paths.insert(rel.clone());
        }
    }
    for rel in paths {
        let Some(md) = tree.entries.get(&rel) else {
            continue;
        };
        if md.is_dir() {
            continue;
        }
        if let Some(h) = owners.owner(&rel) {
            packages.insert(h.dbkey.clone());
        }
        let d = file_digest(rootfs, &rel, md)?;
        files.insert(rel, d);
    }
    Ok(Inputs {
        argv: argv.to_vec(),
        kver: kver.to_string(),
        paths: tree.paths.clone(),
        files,
        packages,
    })
}

/// A tree file's type, mode, owner and content (a link's target) as one string.
fn file_digest(rootfs: &Path, rel: &str, md: &std::fs::Metadata) -> Result<String> {
    let head = format!("{:o} {}:{}", md.mode(), md.uid(), md.gid());
    if md.file_type().is_symlink() {
        let t = fs::read_link(rootfs.join(rel))?;
        return Ok(format!("{head} -> {}", t.display()));
    }
    if !md.is_file() {
        return Ok(head);
    }
    let mut f = fs::File::open(rootfs.join(rel))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading /{rel}"))?;
    Ok(format!("{head} {}", hex::encode(h.finalize())))
}

/// Why two records differ (for the debug log).
fn first_difference(old: &Inputs, new: &Inputs) -> String {
    if let Some(p) = old.packages.symmetric_difference(&new.packages).next() {
        return format!("package {p} changed");
    }
    for (k, v) in &new.files {
        if old.files.get(k) != Some(v) {
            return format!("/{k} changed");
        }
    }
    "its inputs changed".into()
}

/// The cache's record, if there is a readable one.
fn read_entry(cache: &Path) -> Option<Entry> {
    let text = std::fs::read_to_string(cache.join(RECORD)).ok()?;
    match serde_json::from_str(&text) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", cache.join(RECORD).display());
            None
        }
    }
}

/// Copy the cached image to `dest` if its checksum is still the recorded one.
fn copy_cached(cache: &Path, entry: &Entry, dest: &Path) -> Result<bool> {
    let image = cache.join(&entry.image);
    let data = match std::fs::read(&image) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("initramfs cache: reading {}: {e}", image.display());
            return Ok(false);
        }
    };
    if hex::encode(Sha256::digest(&data)) != entry.sha256 {
        tracing::warn!(
            "initramfs cache: {} does not match its recorded sha256; regenerating",
            image.display()
        );
        return Ok(false);
    }
    fs::write(dest, &data)?;
    fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))?;
    Ok(true)
}

/// Make `image` the cache's entry: the image under its checksum, then the record,
/// each by rename; then drop other images.
fn store(cache: &Path, image: &Path, inputs: Inputs) -> Result<()> {
    fs::create_dir_all(cache)?;
    let data = fs::read(image)?;
    let sha256 = hex::encode(Sha256::digest(&data));
    let name = format!("{sha256}.img");
    let tmp = cache.join(format!(".{name}.tmp"));
    fs::write(&tmp, &data)?;
    fs::rename(&tmp, cache.join(&name))?;
    let entry = Entry {
        inputs,
        image: name.clone(),
        sha256,
    };
    let tmp = cache.join(format!(".{RECORD}.tmp"));
    fs::write(&tmp, serde_json::to_vec(&entry)?)?;
    fs::rename(&tmp, cache.join(RECORD))?;
    for e in fs::read_dir(cache)? {
        let e = e?;
        if e.file_name().to_string_lossy() != name && e.file_name() != RECORD {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// The regular files and links an initramfs holds: the concatenated cpio archives
/// the kernel unpacks, each plain or compressed with gzip or zstd (what dracut and
/// the demo's generator write).
fn members(image: &Path) -> Result<Vec<String>> {
    let data = fs::read(image)?;
    let mut names = Vec::new();
    let mut rest: &[u8] = &data;
    loop {
        while let [0, tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            break;
        }
        if rest.starts_with(b"0707") {
            let mut r = std::io::BufReader::new(rest);
            archives(&mut r, &mut names)?;
            let left = r.buffer().len() + r.into_inner().len();
            rest = &rest[rest.len() - left..];
        } else if rest.starts_with(&[0x1f, 0x8b]) {
            let mut r = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(rest));
            archives(&mut r, &mut names)?;
            break;
        } else if rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let mut r = std::io::BufReader::new(zstd::stream::read::Decoder::new(rest)?);
            archives(&mut r, &mut names)?;
            break;
        } else {
            let magic: Vec<String> = rest.iter().take(4).map(|b| format!("{b:02x}")).collect();
            bail!(
                "{}: a segment starts with {} (neither cpio, gzip nor zstd)",
                image.display(),
                magic.join(" ")
            );
        }
    }
    Ok(names)
}

/// The cpio archives `r` holds one after the other (zero padding between them),
/// until its end or something that is not an archive.
fn archives<R: BufRead>(r: &mut R, names: &mut Vec<String>) -> Result<()> {
    loop {
        if !cpio::skip_padding(r)? {
            return Ok(());
        }
        if !r.fill_buf()?.starts_with(b"0707") {
            return Ok(());
        }
        let mut c = cpio::Reader::new(&mut *r);
        while let Some(e) = c.next_entry()? {
            if matches!(e.kind(), cpio::S_IFREG | cpio::S_IFLNK) {
                names.push(e.name);
            }
        }
        c.into_inner()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &str)]) -> Vec<u8> {
        let mut w = cpio::Writer::new(Vec::new());
        w.dir("usr").unwrap();
        for (name, data) in files {
            w.file(name, 0o644, data.as_bytes()).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn members_of_concatenated_plain_and_compressed_archives() {
        let dir = tempfile::tempdir().unwrap();
        // dracut's layout: an uncompressed early archive, padding, then the main one compressed.
        let mut image = archive(&[("kernel/x86/microcode/GenuineIntel.bin", "ucode")]);
        image.extend([0u8; 512]);
        let main = archive(&[("usr/bin/sh", "sh"), ("init", "init")]);
        let mut zstd_image = image.clone();
        zstd_image.extend(zstd::encode_all(&main[..], 3).unwrap());
        let mut gz_image = image;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &main).unwrap();
        gz_image.extend(gz.finish().unwrap());
        for (name, bytes) in [("zstd", zstd_image), ("gzip", gz_image)] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(
                members(&p).unwrap(),
                [
                    "kernel/x86/microcode/GenuineIntel.bin",
                    "usr/bin/sh",
                    "init"
                ],
                "{name}"
            );
        }
        let p = dir.path().join("text");
        std::fs::write(&p, "not an archive\n").unwrap();
        let e = members(&p).unwrap_err().to_string();
        assert!(e.contains("neither cpio, gzip nor zstd"), "{e}");
    }

    #[test]
    fn tree_paths_resolve_through_the_trees_own_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib/x")).unwrap();
        std::fs::write(root.join("usr/lib/x/f"), "f").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        // An absolute link is the tree's root, never the host's.
        std::os::unix::fs::symlink("/usr/lib/x", root.join("usr/lib/abs")).unwrap();
        std::os::unix::fs::symlink("f", root.join("usr/lib/x/link")).unwrap();
        let t = TreeIndex::walk(root).unwrap();
        assert_eq!(t.resolve("lib/x/f").as_deref(), Some("usr/lib/x/f"));
        assert_eq!(t.resolve("usr/lib/abs/f").as_deref(), Some("usr/lib/x/f"));
        // `..` after a link is taken from where the link leads, as the kernel does.
        assert_eq!(t.resolve("lib/../lib/x/f").as_deref(), Some("usr/lib/x/f"));
        // The last component stays a link: a member that is one is compared as one.
        assert_eq!(t.resolve("lib/x/link").as_deref(), Some("usr/lib/x/link"));
        assert_eq!(t.resolve("etc/passwd"), None);

        // The path digest sees a new path, not a changed content.
        std::fs::write(root.join("usr/lib/x/f"), "changed").unwrap();
        assert_eq!(TreeIndex::walk(root).unwrap().paths, t.paths);
        std::fs::write(root.join("usr/lib/x/g"), "g").unwrap();
        assert_ne!(TreeIndex::walk(root).unwrap().paths, t.paths);
    }
}
