//! Day-0 customization (`cosa iso customize`, `cosa pxe customize`): a copy of the
//! live media carrying first-boot Ignition configs, kernel arguments, an install
//! target and extra files, made without rebuilding anything from the commit.
//!
//! What is embedded is one small newc cpio (the installer's contract, read by
//! `demo-installer` in the live system):
//!
//! | member | |
//! |---|---|
//! | `install.yaml` | coreos-installer config keys `dest-device`, `append-karg` |
//! | `dest.ign` | the installed system's first-boot config (`/boot/ignition/config.ign` there) |
//! | `live.ign` | the live system's own first-boot config |
//!
//! On an ISO it goes into the reserved embed area and the live kernel arguments into
//! the kargs area (both overwritten in place in the copy). On PXE media the live root
//! image is the only thing that reaches the running system, so the cpio is appended
//! to a copy of its squashfs (existing data is not recompressed) as `/cosa-embed/`.

use fs_err as fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::iso;
use crate::cpio;
use cmdext::CommandRunExt;

/// What the user asked to embed, as given (paths not yet read).
#[derive(Debug, Default, Clone)]
pub struct CustomizeInputs {
    /// Ignition config for the installed system's first boot.
    pub dest_ignition: Option<PathBuf>,
    /// The install target (e.g. /dev/vda): makes the media install unattended.
    pub dest_device: Option<String>,
    /// Kernel arguments for the installed system.
    pub dest_karg_append: Vec<String>,
    /// `LOCAL:/PATH` files for the installed system, added to its Ignition config.
    pub dest_file: Vec<String>,
    /// Ignition config for the live system itself.
    pub live_ignition: Option<PathBuf>,
    /// Kernel arguments for the live system.
    pub live_karg_append: Vec<String>,
}

/// Everything a customization embeds, validated.
#[derive(Debug, Default)]
pub struct Customization {
    pub dest_ignition: Option<Vec<u8>>,
    pub live_ignition: Option<Vec<u8>>,
    pub dest_device: Option<String>,
    pub dest_kargs: Vec<String>,
    pub live_kargs: Vec<String>,
}

/// Parse an Ignition config enough to refuse what no Ignition v3 would take: JSON,
/// an object, `ignition.version` 3.x.y.
pub fn check_ignition(bytes: &[u8], what: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).with_context(|| format!("{what}: not valid JSON"))?;
    let version = v
        .get("ignition")
        .and_then(|i| i.get("version"))
        .and_then(|v| v.as_str())
        .with_context(|| format!("{what}: no ignition.version string: not an Ignition config"))?;
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok());
    if !numeric || parts[0] != "3" {
        bail!("{what}: ignition.version {version:?} is not a 3.x.y (Ignition spec v3) version");
    }
    Ok(v)
}

fn read_ignition(path: &Path, what: &str) -> Result<Vec<u8>> {
    let b = fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    check_ignition(&b, &format!("{what} {}", path.display()))?;
    Ok(b)
}

/// RFC 2397 data URL, percent-encoded (Ignition's `source` for inline contents).
fn data_url(bytes: &[u8]) -> String {
    let mut s = String::from("data:,");
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Add `files` (`LOCAL:/dest/path`) to a dest config (a minimal 3.4.0 one if none).
fn add_files(config: Option<Vec<u8>>, files: &[String]) -> Result<Option<Vec<u8>>> {
    if files.is_empty() {
        return Ok(config);
    }
    let mut v = match &config {
        Some(b) => serde_json::from_slice(b)?,
        None => serde_json::json!({"ignition": {"version": "3.4.0"}}),
    };
    let root = v
        .as_object_mut()
        .context("the dest Ignition config is not an object")?;
    let storage = root
        .entry("storage")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .context("storage is not an object")?;
    let list = storage
        .entry("files")
        .or_insert_with(|| serde_json::json!([]))
        .as_array_mut()
        .context("storage.files is not a list")?;
    for f in files {
        let (local, dest) = f
            .split_once(':')
            .with_context(|| format!("--dest-file {f}: expected LOCAL:/absolute/path"))?;
        if !dest.starts_with('/') {
            bail!("--dest-file {f}: the destination {dest:?} is not absolute");
        }
        let data = fs::read(local).with_context(|| format!("reading --dest-file {local}"))?;
        list.push(serde_json::json!({
            "path": dest,
            "overwrite": true,
            "mode": 0o644,
            "contents": {"source": data_url(&data)},
        }));
    }
    Ok(Some(serde_json::to_vec_pretty(&v)?))
}

impl Customization {
    /// Read and check every input named on the command line; nothing is written.
    pub fn from_inputs(o: &CustomizeInputs) -> Result<Self> {
        let dest_ignition = o
            .dest_ignition
            .as_deref()
            .map(|p| read_ignition(p, "--dest-ignition"))
            .transpose()?;
        let live_ignition = o
            .live_ignition
            .as_deref()
            .map(|p| read_ignition(p, "--live-ignition"))
            .transpose()?;
        let dest_ignition = add_files(dest_ignition, &o.dest_file)?;
        for k in o.dest_karg_append.iter().chain(&o.live_karg_append) {
            if k.is_empty() || k.contains(char::is_whitespace) {
                bail!("kernel argument {k:?}: empty or holds whitespace (give one per option)");
            }
        }
        if let Some(d) = &o.dest_device {
            if !d.starts_with("/dev/") || d.contains(char::is_whitespace) {
                bail!("--dest-device {d:?}: expected a device path under /dev");
            }
        }
        let c = Customization {
            dest_ignition,
            live_ignition,
            dest_device: o.dest_device.clone(),
            dest_kargs: o.dest_karg_append.clone(),
            live_kargs: o.live_karg_append.clone(),
        };
        if c.is_empty() {
            bail!("nothing to customize: give --dest-ignition, --dest-device, --dest-karg-append, --dest-file, --live-ignition or --live-karg-append");
        }
        Ok(c)
    }

    fn is_empty(&self) -> bool {
        self.dest_ignition.is_none()
            && self.live_ignition.is_none()
            && self.dest_device.is_none()
            && self.dest_kargs.is_empty()
            && self.live_kargs.is_empty()
    }

    /// The installer config (a YAML subset the installer's shell parser reads).
    pub fn install_yaml(&self) -> String {
        let mut s = String::from("# Written by cosa iso/pxe customize.\n");
        if let Some(d) = &self.dest_device {
            s.push_str(&format!("dest-device: {d}\n"));
        }
        if !self.dest_kargs.is_empty() {
            s.push_str("append-karg:\n");
            for k in &self.dest_kargs {
                s.push_str(&format!("  - {k}\n"));
            }
        }
        s
    }

    /// The embedded cpio.
    pub fn embed_cpio(&self) -> Result<Vec<u8>> {
        let mut w = cpio::Writer::new(Vec::new());
        w.file("install.yaml", 0o644, self.install_yaml().as_bytes())?;
        if let Some(b) = &self.dest_ignition {
            w.file("dest.ign", 0o600, b)?;
        }
        if let Some(b) = &self.live_ignition {
            w.file("live.ign", 0o600, b)?;
        }
        w.finish()
    }
}

/// Refuse to clobber the input or (without --force) an existing output.
fn check_output(input: &Path, output: &Path, force: bool) -> Result<()> {
    let same = match (fs::canonicalize(input), fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        bail!(
            "--output {} is the input: the original media is never modified",
            output.display()
        );
    }
    if output.exists() && !force {
        bail!("{} exists (--force to overwrite)", output.display());
    }
    Ok(())
}

/// A temporary file beside `output`, renamed onto it on success.
fn temp_beside(output: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".cosa-customize-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// `cosa iso customize`: copy the ISO and overwrite its embed and kargs areas.
pub fn iso(input: &Path, output: &Path, force: bool, c: &Customization) -> Result<()> {
    check_output(input, output, force)?;
    let embed = c.embed_cpio()?;
    if embed.len() > iso::EMBED_AREA_SIZE {
        bail!(
            "the customization takes {} bytes; the ISO's embed area holds {}",
            embed.len(),
            iso::EMBED_AREA_SIZE
        );
    }
    let kargs = iso::kargs_area(&c.live_kargs)?;
    let embed_at = iso::locate(input, iso::EMBED_AREA)?;
    let kargs_at = iso::locate(input, iso::KARGS_AREA)?;
    let tmp = temp_beside(output)?;
    // cp: reflinks or sparse copies where the filesystem can, at disk speed otherwise.
    cmdext::command("cp")
        .args(["--reflink=auto", "--sparse=auto"])
        .arg(input)
        .arg(tmp.path())
        .run()
        .with_context(|| format!("copying {}", input.display()))?;
    let f = fs::OpenOptions::new().write(true).open(tmp.path())?;
    iso::write_area(&f, embed_at, &embed)?;
    iso::write_area(&f, kargs_at, &kargs)?;
    f.sync_all()?;
    tmp.persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// The root image member of a PXE rootfs cpio: (name, data offset, size).
fn rootfs_member(rootfs: &Path) -> Result<(String, u64, u64)> {
    let mut h = [0u8; 110];
    let f = fs::File::open(rootfs).with_context(|| format!("opening {}", rootfs.display()))?;
    fs_err::os::unix::fs::FileExt::read_exact_at(&f, &mut h, 0)?;
    let field = |i: usize| -> Result<u64> {
        let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i])?;
        Ok(u64::from_str_radix(s, 16)?)
    };
    if &h[..6] != b"070701" {
        bail!("{} is not a newc cpio (a live rootfs)", rootfs.display());
    }
    let size = field(6)?;
    let namesize = field(11)?;
    let mut name = vec![0u8; namesize as usize];
    fs_err::os::unix::fs::FileExt::read_exact_at(&f, &mut name, 110)?;
    let name = String::from_utf8_lossy(&name)
        .trim_end_matches('\0')
        .to_string();
    if name != "root.squashfs" && name != "root.erofs" {
        bail!(
            "{}: first member is {name:?}, not root.squashfs or root.erofs: not a live rootfs",
            rootfs.display()
        );
    }
    Ok((name, (110 + namesize).div_ceil(4) * 4, size))
}

/// The build's live rootfs beside its live initramfs (`…-live-initramfs.ARCH.img`).
pub fn rootfs_beside(initramfs: &Path) -> Result<PathBuf> {
    let name = initramfs
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| {
            format!(
                "{}: the initramfs path has no file name",
                initramfs.display()
            )
        })?;
    let guess = name.replace("-live-initramfs.", "-live-rootfs.");
    if guess == name {
        bail!(
            "{}: not named like a live initramfs; give the live rootfs with --rootfs",
            initramfs.display()
        );
    }
    Ok(initramfs.with_file_name(guess))
}

/// `cosa pxe customize`: into `outdir`, the initramfs (as is) and a rootfs whose
/// squashfs gains `/cosa-embed/` (appended: nothing is recompressed). Without
/// `rootfs`, the build's live rootfs beside the initramfs.
pub fn pxe(
    initramfs: &Path,
    rootfs: Option<&Path>,
    outdir: &Path,
    force: bool,
    c: &Customization,
) -> Result<()> {
    let rootfs = &match rootfs {
        Some(r) => r.to_path_buf(),
        None => rootfs_beside(initramfs)?,
    };
    if !c.live_kargs.is_empty() {
        bail!("PXE media carry no kernel command line: give live kernel arguments in the PXE configuration instead of --live-karg-append");
    }
    let (member, offset, size) = rootfs_member(rootfs)?;
    if member != "root.squashfs" {
        bail!("pxe customize needs a squashfs live rootfs (an erofs image cannot be appended to)");
    }
    let out_initramfs = outdir.join(initramfs.file_name().context("initramfs name")?);
    let out_rootfs = outdir.join(rootfs.file_name().context("rootfs name")?);
    check_output(initramfs, &out_initramfs, force)?;
    check_output(rootfs, &out_rootfs, force)?;
    let embed = c.embed_cpio()?;
    fs::create_dir_all(outdir)?;
    let work = tempfile::Builder::new()
        .prefix(".cosa-customize-")
        .tempdir_in(outdir)?;
    let sq = work.path().join("root.squashfs");
    {
        let mut src = fs::File::open(rootfs)?;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(offset))?;
        let mut dst = fs::File::create(&sq)?;
        let n = std::io::copy(&mut std::io::Read::take(src, size), &mut dst)?;
        if n != size {
            bail!("{}: truncated root image", rootfs.display());
        }
    }
    let add = work.path().join("add");
    let embed_dir = add.join("cosa-embed");
    fs::create_dir_all(&embed_dir)?;
    fs::write(embed_dir.join("embed.img"), &embed)?;
    cmdext::command("mksquashfs")
        .arg(&add)
        .arg(&sq)
        .args(["-no-progress", "-quiet", "-all-root"])
        .run()
        .context("appending the customization to the squashfs")?;
    let tmp_rootfs = work.path().join("rootfs.img");
    super::write_rootfs_cpio(&sq, &member, &tmp_rootfs)?;
    fs::rename(&tmp_rootfs, &out_rootfs)?;
    let tmp_initramfs: PathBuf = work.path().join("initramfs.img");
    fs::copy(initramfs, &tmp_initramfs)?;
    fs::File::open(&tmp_initramfs)?.sync_all()?;
    fs::rename(&tmp_initramfs, &out_initramfs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignition_v3_only() {
        assert!(check_ignition(br#"{"ignition":{"version":"3.4.0"}}"#, "x").is_ok());
        let e = check_ignition(br#"{"ignition":{"version":"2.2.0"}}"#, "x").unwrap_err();
        assert!(format!("{e:#}").contains("3.x.y"), "{e:#}");
        assert!(check_ignition(b"{not json", "x").is_err());
        assert!(check_ignition(br#"{"storage":{}}"#, "x").is_err());
        assert!(check_ignition(br#"{"ignition":{"version":"3.x"}}"#, "x").is_err());
    }

    #[test]
    fn files_become_ignition_entries() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("motd");
        fs::write(&f, "hi there\n").unwrap();
        let cfg = add_files(None, &[format!("{}:/etc/motd.d/x", f.display())])
            .unwrap()
            .unwrap();
        let v = check_ignition(&cfg, "x").unwrap();
        let e = &v["storage"]["files"][0];
        assert_eq!(e["path"], "/etc/motd.d/x");
        assert_eq!(e["contents"]["source"], "data:,hi%20there%0A");
        assert!(add_files(None, &["nocolon".into()]).is_err());
    }

    #[test]
    fn install_yaml_lists_kargs() {
        let c = Customization {
            dest_device: Some("/dev/vda".into()),
            dest_kargs: vec!["a=1".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(
            c.install_yaml(),
            "# Written by cosa iso/pxe customize.\ndest-device: /dev/vda\nappend-karg:\n  - a=1\n  - b\n"
        );
    }
}
