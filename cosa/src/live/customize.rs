//! Day-0 customization (`cosa iso customize`, `cosa pxe customize`): a copy of the
//! live media carrying first-boot Ignition configs, kernel arguments, an install
//! target, install hooks and extra files, made without rebuilding anything.
//!
//! The contract is coreos-installer's, so media customized by either tool boot the
//! same way and each tool reads what the other wrote. Everything becomes one live
//! Ignition config, `config.ign` at the root of a small xz cpio (CRC32 checks, the
//! only kind the kernel's decompressor takes):
//!
//! | live config writes | from |
//! |---|---|
//! | `/etc/coreos/installer.d/NNNN-NAME.yaml` (0600) | `--installer-config`, then `customize.yaml` from `--dest-device`, `--dest-console`, `--dest-karg-*` |
//! | `/etc/coreos/dest.ign` (0600), named by `ignition-file:` | `--dest-ignition`, `--dest-file`, `--ignition-ca` |
//! | `/usr/local/bin/{pre,post}-install-NAME` + a unit | `--pre-install`, `--post-install` |
//! | `ignition.config.merge` | `--live-ignition` |
//!
//! On an ISO the cpio fills the Ignition embed area (`coreos/igninfo.json`) and the
//! live kernel arguments the kargs areas (`coreos/kargs.json`), both overwritten in
//! place in a copy. On PXE media the cpio is appended to a copy of the live
//! initramfs. The live system's Ignition applies the config; its installer then
//! reads `/etc/coreos/installer.d`.

use fs_err as fs;
use fs_err::os::unix::fs::FileExt;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use super::iso::{self, Features, IgnInfo, KargsInfo};
use crate::cpio;
use cmdext::CommandRunExt;

/// The Ignition spec version of the configs cosa writes (Ignition 2.14 and later).
const SPEC: &str = "3.3.0";
/// Where the live system finds the installed system's config.
const DEST_IGN: &str = "/etc/coreos/dest.ign";
const INSTALLER_D: &str = "/etc/coreos/installer.d";
/// The live config's name in the cpio.
const CONFIG_IGN: &str = "config.ign";
/// Installer config keys the streams' installer (demo-installer) acts on.
const INSTALLER_KEYS: &[&str] = &[
    "dest-device",
    "image-file",
    "image-url",
    "ignition-file",
    "ignition-url",
    "append-karg",
    "delete-karg",
    "console",
];

/// What the user asked to embed, as given (paths not yet read).
#[derive(Debug, Default, Clone)]
pub struct CustomizeInputs {
    /// Ignition configs for the installed system's first boot (merged).
    pub dest_ignition: Vec<PathBuf>,
    /// The install target (e.g. /dev/vda): makes the media install unattended.
    pub dest_device: Option<String>,
    /// Kernel console for the installed system (`ttyS0,115200n8`).
    pub dest_console: Vec<String>,
    pub dest_karg_append: Vec<String>,
    pub dest_karg_delete: Vec<String>,
    /// `LOCAL:/PATH` files for the installed system, added to its Ignition config.
    pub dest_file: Vec<String>,
    /// NetworkManager keyfiles for the live and installed systems.
    pub network_keyfile: Vec<PathBuf>,
    /// CA certificates Ignition trusts for its fetches (live and installed).
    pub ignition_ca: Vec<PathBuf>,
    pub pre_install: Vec<PathBuf>,
    pub post_install: Vec<PathBuf>,
    /// coreos-installer config files for the live installer.
    pub installer_config: Vec<PathBuf>,
    /// Ignition configs for the live system itself (merged).
    pub live_ignition: Vec<PathBuf>,
    pub live_karg_append: Vec<String>,
    /// `KEY=OLD=NEW`.
    pub live_karg_replace: Vec<String>,
    pub live_karg_delete: Vec<String>,
}

/// A customization, validated and turned into what the media carry.
#[derive(Debug)]
pub struct Customization {
    /// The live Ignition config (`config.ign`), when anything needs one.
    pub live_config: Option<Vec<u8>>,
    pub live_kargs: KargsEdit,
    /// Options that need an OS feature, checked against the media's features.
    needs: Needs,
}

#[derive(Debug, Default)]
struct Needs {
    installer_config: bool,
    console: bool,
    network: bool,
}

/// Live kernel argument edits, applied to the media's default arguments.
#[derive(Debug, Default, Clone)]
pub struct KargsEdit {
    pub append: Vec<String>,
    pub replace: Vec<String>,
    pub delete: Vec<String>,
}

impl KargsEdit {
    pub fn is_empty(&self) -> bool {
        self.append.is_empty() && self.replace.is_empty() && self.delete.is_empty()
    }

    /// coreos-installer's order: delete, append, replace (`KEY=OLD=NEW`), by whole argument.
    pub fn apply_to(&self, kargs: &str) -> Result<String> {
        let mut v: Vec<String> = kargs.split_whitespace().map(String::from).collect();
        v.retain(|k| !self.delete.contains(k));
        v.extend(self.append.iter().cloned());
        for r in &self.replace {
            let parts: Vec<&str> = r.split('=').collect();
            let [key, old, new] = parts[..] else {
                bail!("--live-karg-replace {r:?}: expected KEY=OLD=NEW");
            };
            let (old, new) = (format!("{key}={old}"), format!("{key}={new}"));
            for k in v.iter_mut().filter(|k| **k == old) {
                k.clone_from(&new);
            }
        }
        Ok(v.join(" "))
    }
}

/// Parse an Ignition config enough to refuse what no Ignition v3 would take: JSON,
/// an object, `ignition.version` 3.x.y.
pub fn check_ignition(bytes: &[u8], what: &str) -> Result<Value> {
    let v: Value =
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

fn read_file(path: &Path, option: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("{option} {}: reading", path.display()))
}

fn read_ignition(path: &Path, option: &str) -> Result<Vec<u8>> {
    let b = read_file(path, option)?;
    check_ignition(&b, &format!("{option} {}", path.display()))?;
    Ok(b)
}

/// An Ignition resource holding `data` inline (RFC 2397, base64).
fn resource(data: &[u8]) -> Value {
    json!({
        "source": format!(
            "data:;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(data)
        )
    })
}

fn file_name(path: &Path, option: &str) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .with_context(|| format!("{option} {}: no file name", path.display()))
}

/// An Ignition config under construction (spec [`SPEC`]).
struct Config(Value);

impl Config {
    fn new() -> Self {
        Config(json!({"ignition": {"version": SPEC}}))
    }

    fn list(&mut self, section: &str, key: &str) -> &mut Vec<Value> {
        let slot = &mut self.0[section][key];
        if !slot.is_array() {
            *slot = json!([]);
        }
        slot.as_array_mut().expect("just made an array")
    }

    fn add_file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<()> {
        let files = self.list("storage", "files");
        if files.iter().any(|f| f["path"] == path) {
            bail!("{path} is written twice by this customization");
        }
        let mut f = json!({"path": path, "mode": mode, "overwrite": true});
        f["contents"] = resource(data);
        files.push(f);
        Ok(())
    }

    fn add_unit(&mut self, name: &str, contents: String) {
        self.list("systemd", "units")
            .push(json!({"name": name, "enabled": true, "contents": contents}));
    }

    fn merge(&mut self, child: &[u8]) {
        let ign = &mut self.0["ignition"];
        if !ign["config"]["merge"].is_array() {
            ign["config"]["merge"] = json!([]);
        }
        ign["config"]["merge"]
            .as_array_mut()
            .expect("just made an array")
            .push(resource(child));
    }

    fn add_ca(&mut self, pem: &[u8]) {
        let sec = &mut self.0["ignition"]["security"]["tls"]["certificateAuthorities"];
        if !sec.is_array() {
            *sec = json!([]);
        }
        sec.as_array_mut()
            .expect("just made an array")
            .push(resource(pem));
    }

    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut b = serde_json::to_vec(&self.0)?;
        b.push(b'\n');
        Ok(b)
    }
}

/// `customize.yaml`: the installer config made from the command line's options.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
struct InstallerConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignition_file: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    console: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    append_karg: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    delete_karg: Vec<String>,
}

impl InstallerConfig {
    fn is_empty(&self) -> bool {
        self.dest_device.is_none()
            && self.ignition_file.is_none()
            && self.console.is_empty()
            && self.append_karg.is_empty()
            && self.delete_karg.is_empty()
    }
}

/// A user's installer config: a YAML mapping of keys the installer acts on.
fn check_installer_config(data: &[u8], path: &Path) -> Result<()> {
    let what = format!("--installer-config {}", path.display());
    let v: serde_yaml::Value =
        serde_yaml::from_slice(data).with_context(|| format!("{what}: not valid YAML"))?;
    let map = v
        .as_mapping()
        .with_context(|| format!("{what}: not a mapping of installer options"))?;
    for k in map.keys() {
        let k = k.as_str().unwrap_or_default();
        if !INSTALLER_KEYS.contains(&k) {
            bail!(
                "{what}: key {k:?} is not one this stream's installer acts on ({})",
                INSTALLER_KEYS.join(", ")
            );
        }
    }
    Ok(())
}

/// `bytes` percent-encoded for an RFC 2397 data URL (`data:,` + this).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// RFC 2397 data URL, percent-encoded (for `--dest-file` contents).
fn data_url(bytes: &[u8]) -> String {
    format!("data:,{}", percent_encode(bytes))
}

/// The `--dest-file` entries (`LOCAL:/dest/path`) as Ignition files.
fn dest_files(files: &[String]) -> Result<Vec<Value>> {
    files
        .iter()
        .map(|f| {
            let (local, dest) = f
                .split_once(':')
                .with_context(|| format!("--dest-file {f}: expected LOCAL:/absolute/path"))?;
            if !dest.starts_with('/') {
                bail!("--dest-file {f}: the destination {dest:?} is not absolute");
            }
            let data = fs::read(local).with_context(|| format!("reading --dest-file {local}"))?;
            Ok(json!({
                "path": dest,
                "overwrite": true,
                "mode": 0o644,
                "contents": {"source": data_url(&data)},
            }))
        })
        .collect()
}

/// A unit running an install hook, ordered as coreos-installer orders its own.
fn hook_unit(kind: &str, name: &str) -> String {
    let (order, wanted) = if kind == "pre" {
        (
            "After=coreos-installer-pre.target\nBefore=coreos-installer.service",
            "coreos-installer.service",
        )
    } else {
        (
            "After=coreos-installer.service\nBefore=coreos-installer.target",
            "coreos-installer.target",
        )
    };
    format!(
        "# Written by cosa iso/pxe customize.\n[Unit]\nDescription={kind}-install hook {name}\n{order}\n\n\
         [Service]\nType=oneshot\nExecStart=/usr/local/bin/{kind}-install-{name}\nRemainAfterExit=yes\n\
         StandardOutput=journal+console\nStandardError=journal+console\n\n[Install]\nRequiredBy={wanted}\n"
    )
}

impl Customization {
    /// Read and check every input named on the command line; nothing is written.
    pub fn from_inputs(o: &CustomizeInputs) -> Result<Self> {
        let mut needs = Needs::default();
        let mut live = Config::new();
        let mut live_used = false;

        for k in o.dest_karg_append.iter().chain(&o.dest_karg_delete) {
            iso::check_karg(k).with_context(|| format!("--dest-karg-append/delete {k:?}"))?;
        }
        for k in o.live_karg_append.iter().chain(&o.live_karg_delete) {
            iso::check_karg(k).with_context(|| format!("--live-karg-append/delete {k:?}"))?;
        }
        for r in &o.live_karg_replace {
            iso::check_karg(r).with_context(|| format!("--live-karg-replace {r:?}"))?;
            if r.split('=').count() != 3 {
                bail!("--live-karg-replace {r:?}: expected KEY=OLD=NEW");
            }
        }
        if let Some(d) = &o.dest_device {
            if !d.starts_with("/dev/") || d.contains(char::is_whitespace) {
                bail!("--dest-device {d:?}: expected a device path under /dev");
            }
        }
        for c in &o.dest_console {
            if c.is_empty() || c.contains(char::is_whitespace) || c.starts_with("console=") {
                bail!("--dest-console {c:?}: expected a kernel console spec such as ttyS0,115200n8 (without console=)");
            }
        }
        if let Some(p) = o.network_keyfile.first() {
            needs.network = true;
            read_file(p, "--network-keyfile")?;
        }

        // The installed system's config: the user's alone when that is all, else
        // one config merging them with the extra files and CAs.
        let user_dest: Vec<Vec<u8>> = o
            .dest_ignition
            .iter()
            .map(|p| read_ignition(p, "--dest-ignition"))
            .collect::<Result<_>>()?;
        let files = dest_files(&o.dest_file)?;
        let cas: Vec<Vec<u8>> = o
            .ignition_ca
            .iter()
            .map(|p| read_file(p, "--ignition-ca"))
            .collect::<Result<_>>()?;
        for (p, ca) in o.ignition_ca.iter().zip(&cas) {
            if !String::from_utf8_lossy(ca).contains("-----BEGIN CERTIFICATE-----") {
                bail!("--ignition-ca {}: not a PEM certificate", p.display());
            }
            live.add_ca(ca);
            live_used = true;
        }
        let dest = if user_dest.len() == 1 && files.is_empty() && cas.is_empty() {
            Some(user_dest[0].clone())
        } else if !user_dest.is_empty() || !files.is_empty() {
            let mut d = Config::new();
            for u in &user_dest {
                d.merge(u);
            }
            for ca in &cas {
                d.add_ca(ca);
            }
            d.list("storage", "files").extend(files);
            Some(d.to_bytes()?)
        } else {
            None
        };

        let mut installer = InstallerConfig {
            dest_device: o.dest_device.clone(),
            console: o.dest_console.clone(),
            append_karg: o.dest_karg_append.clone(),
            delete_karg: o.dest_karg_delete.clone(),
            ..Default::default()
        };
        needs.console = !installer.console.is_empty();
        if let Some(d) = &dest {
            live.add_file(DEST_IGN, d, 0o600)?;
            installer.ignition_file = Some(DEST_IGN.into());
        }

        for (kind, paths) in [("pre", &o.pre_install), ("post", &o.post_install)] {
            for p in paths {
                let option = format!("--{kind}-install");
                let data = read_file(p, &option)?;
                if !data.starts_with(b"#!") {
                    bail!("{option} {}: not a script (no #! line)", p.display());
                }
                let name = file_name(p, &option)?;
                live.add_file(
                    &format!("/usr/local/bin/{kind}-install-{name}"),
                    &data,
                    0o700,
                )?;
                live.add_unit(
                    &format!("{kind}-install-{name}.service"),
                    hook_unit(kind, &name),
                );
                live_used = true;
            }
        }

        let mut serial = 0;
        let mut add_installer = |live: &mut Config, name: &str, data: &[u8]| -> Result<()> {
            live.add_file(&format!("{INSTALLER_D}/{serial:04}-{name}"), data, 0o600)?;
            serial += 1;
            Ok(())
        };
        for p in &o.installer_config {
            let data = read_file(p, "--installer-config")?;
            check_installer_config(&data, p)?;
            add_installer(&mut live, &file_name(p, "--installer-config")?, &data)?;
            needs.installer_config = true;
        }
        if !installer.is_empty() {
            let yaml = serde_yaml::to_string(&installer)?;
            add_installer(&mut live, "customize.yaml", yaml.as_bytes())?;
            needs.installer_config = true;
        }
        live_used |= needs.installer_config;

        for p in &o.live_ignition {
            live.merge(&read_ignition(p, "--live-ignition")?);
            live_used = true;
        }

        let c = Customization {
            live_config: live_used.then(|| live.to_bytes()).transpose()?,
            live_kargs: KargsEdit {
                append: o.live_karg_append.clone(),
                replace: o.live_karg_replace.clone(),
                delete: o.live_karg_delete.clone(),
            },
            needs,
        };
        if c.live_config.is_none() && c.live_kargs.is_empty() && !c.needs.network {
            bail!("nothing to customize: give --dest-ignition, --dest-device, --dest-console, --dest-karg-append/delete, --dest-file, --ignition-ca, --pre-install, --post-install, --installer-config, --live-ignition or --live-karg-append/replace/delete");
        }
        Ok(c)
    }

    /// Refuse what the media's OS cannot do, naming the option.
    fn check_features(&self, f: &Features, media: &Path) -> Result<()> {
        let m = media.display();
        if self.needs.network && !f.live_initrd_network {
            bail!("--network-keyfile: {m} does not support customizing network settings (its live initramfs reads no NetworkManager keyfiles; configure networking with Ignition instead)");
        }
        if self.needs.installer_config && !f.installer_config {
            bail!("{m} does not support customizing the installer (no installer-config feature): --dest-device, --dest-ignition, --dest-console, --dest-karg-*, --installer-config cannot be used");
        }
        if self.needs.console && !f.installer_config_directives.console {
            bail!("--dest-console: {m} does not support customizing the destination console");
        }
        Ok(())
    }

    /// The cpio GRUB or the PXE loader hands the kernel: `config.ign`, xz (CRC32).
    pub fn initrd(&self) -> Result<Vec<u8>> {
        let Some(cfg) = &self.live_config else {
            return Ok(Vec::new());
        };
        let mut w = cpio::Writer::new(Vec::new());
        w.file(CONFIG_IGN, 0o600, cfg)?;
        xz_crc32(&w.finish()?)
    }
}

/// xz with CRC32 checks (the kernel's initramfs decompressor has no CRC64).
fn xz_crc32(data: &[u8]) -> Result<Vec<u8>> {
    let stream = xz2::stream::Stream::new_easy_encoder(9, xz2::stream::Check::Crc32)
        .context("setting up the xz encoder")?;
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data)?;
    Ok(enc.finish()?)
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
    // The output is an ordinary file: 0666 less the umask, as coreos-installer
    // leaves it, not the 0600 of a temporary file.
    tempfile::Builder::new()
        .prefix(".cosa-customize-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// Where each file of an ISO is: path (Rock Ridge name) to (byte offset, size). A
/// missing file, or one that is not an ISO 9660 image, is an error (xorriso itself
/// reports either as an empty image).
pub fn file_table(iso: &Path) -> Result<HashMap<String, (u64, u64)>> {
    fs::File::open(iso)?;
    let out = cmdext::command("xorriso")
        .args(["-report_about", "SORRY", "-indev"])
        .arg(iso)
        .args(["-find", "/", "-type", "f", "-exec", "report_lba", "--"])
        .run_get_string()
        .with_context(|| format!("reading the file table of {}", iso.display()))?;
    // "File data lba:  0 ,   12345 ,   512 ,  1048576 , '/images/ignition.img'"
    let mut t = HashMap::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("File data lba:") else {
            continue;
        };
        let f: Vec<&str> = rest.splitn(5, ',').map(str::trim).collect();
        if f.len() == 5 && f[0] == "0" {
            let lba: u64 = f[1].parse().context("report_lba: start")?;
            let size: u64 = f[3].parse().context("report_lba: size")?;
            let path = f[4].trim_matches('\'').trim_start_matches('/').to_string();
            t.insert(path, (lba * 2048, size));
        }
    }
    if t.is_empty() {
        bail!(
            "xorriso lists no files in {}: not an ISO 9660 image",
            iso.display()
        );
    }
    Ok(t)
}

/// The live ISO's embed areas, read before anything is written.
struct IsoAreas {
    /// The Ignition area: offset, length.
    ignition: (u64, u64),
    /// Whether it holds anything.
    ignition_used: bool,
    kargs: KargsInfo,
    /// Each kargs area's offset in the ISO, and the arguments it holds now.
    kargs_at: Vec<u64>,
    current_kargs: String,
    features: Features,
}

impl IsoAreas {
    fn read(path: &Path) -> Result<Self> {
        let table = file_table(path)?;
        let f = fs::File::open(path)?;
        let not_live = |what: &str| {
            anyhow::anyhow!(
                "{} has no {what}: not live media in coreos-installer's layout (cosa buildextend-live)",
                path.display()
            )
        };
        let find = |p: &str| -> Option<(u64, u64)> {
            table.get(p).copied().or_else(|| {
                table
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(p))
                    .map(|(_, v)| *v)
            })
        };
        let read_at = |(off, len): (u64, u64)| -> Result<Vec<u8>> {
            let mut b = vec![0u8; len as usize];
            f.read_exact_at(&mut b, off)
                .with_context(|| format!("reading {len} bytes at {off} of {}", path.display()))?;
            Ok(b)
        };
        let json = |p: &str| -> Result<Option<Vec<u8>>> { find(p).map(read_at).transpose() };

        let igninfo: IgnInfo = serde_json::from_slice(
            &json(iso::IGNINFO_JSON)?.ok_or_else(|| not_live(iso::IGNINFO_JSON))?,
        )
        .with_context(|| format!("{}: parsing {}", path.display(), iso::IGNINFO_JSON))?;
        let (area_off, area_len) = find(&igninfo.file).ok_or_else(|| not_live(&igninfo.file))?;
        let skip = igninfo.offset.unwrap_or(0);
        let len = igninfo.length.unwrap_or(area_len.saturating_sub(skip));
        if skip + len > area_len {
            bail!(
                "{}: igninfo.json's area lies outside {}",
                path.display(),
                igninfo.file
            );
        }
        let ignition = (area_off + skip, len);
        let ignition_used = read_at(ignition)?.iter().any(|b| *b != 0);

        let kargs: KargsInfo = serde_json::from_slice(
            &json(iso::KARGS_JSON)?.ok_or_else(|| not_live(iso::KARGS_JSON))?,
        )
        .with_context(|| format!("{}: parsing {}", path.display(), iso::KARGS_JSON))?;
        let mut kargs_at = Vec::new();
        let mut current = None;
        for loc in &kargs.files {
            let (off, flen) = find(&loc.path).ok_or_else(|| not_live(&loc.path))?;
            if loc.offset + kargs.size as u64 > flen {
                bail!("{}: a kargs area lies outside {}", path.display(), loc.path);
            }
            let at = off + loc.offset;
            let now = iso::parse_kargs_area(&read_at((at, kargs.size as u64))?, loc)?;
            if current.as_ref().is_some_and(|c| *c != now) {
                bail!(
                    "{}: the kargs areas disagree ({:?} and {now:?})",
                    path.display(),
                    current.unwrap_or_default()
                );
            }
            current = Some(now);
            kargs_at.push(at);
        }
        let current_kargs = current.ok_or_else(|| not_live("kargs area"))?;
        let features = match json(iso::FEATURES_JSON)? {
            Some(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{}: parsing {}", path.display(), iso::FEATURES_JSON))?,
            None => Features {
                installer_config: false,
                installer_config_directives: Default::default(),
                live_initrd_network: false,
            },
        };
        Ok(IsoAreas {
            ignition,
            ignition_used,
            kargs,
            kargs_at,
            current_kargs,
            features,
        })
    }
}

/// `cosa iso customize`: copy the ISO and overwrite its embed areas. An ISO that is
/// customized already (either area changed) is refused unless `force`, which
/// replaces the customization.
pub fn iso(input: &Path, output: &Path, force: bool, c: &Customization) -> Result<()> {
    check_output(input, output, force)?;
    let areas = IsoAreas::read(input)?;
    c.check_features(&areas.features, input)?;
    let customized = areas.ignition_used || areas.current_kargs != areas.kargs.default;
    if customized && !force {
        bail!(
            "{} is customized already (an embedded Ignition config or changed kernel arguments); -f replaces that customization",
            input.display()
        );
    }
    let initrd = c.initrd()?;
    if initrd.len() as u64 > areas.ignition.1 {
        bail!(
            "the customization takes {} bytes compressed; the ISO's Ignition area holds {}",
            initrd.len(),
            areas.ignition.1
        );
    }
    let kargs = if c.live_kargs.is_empty() {
        None
    } else {
        let k = c.live_kargs.apply_to(&areas.kargs.default)?;
        Some(iso::kargs_area(&k, areas.kargs.size)?)
    };

    let tmp = temp_beside(output)?;
    // cp: reflinks or sparse copies where the filesystem can, at disk speed otherwise.
    cmdext::command("cp")
        .args(["--reflink=auto", "--sparse=auto"])
        .arg(input)
        .arg(tmp.path())
        .run()
        .with_context(|| format!("copying {}", input.display()))?;
    let f = fs::OpenOptions::new().write(true).open(tmp.path())?;
    let mut area = initrd;
    area.resize(areas.ignition.1 as usize, 0);
    f.write_all_at(&area, areas.ignition.0)
        .context("writing the Ignition area of the ISO copy")?;
    if let Some(k) = kargs {
        for at in &areas.kargs_at {
            f.write_all_at(&k, *at)
                .context("writing a kargs area of the ISO copy")?;
        }
    }
    f.sync_all()?;
    tmp.persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// A pristine live initramfs's features, from the cpio cosa appends to it last; an
/// initramfs with anything after that cpio is customized already.
fn initramfs_features(initramfs: &Path, data: &[u8]) -> Result<(Features, bool)> {
    let stamp = format!("{}\0", iso::INITRD_LIVE_STAMP);
    let name_at = data
        .windows(stamp.len())
        .rposition(|w| w == stamp.as_bytes())
        .filter(|&i| i >= 110 && &data[i - 110..i - 104] == b"070701")
        .with_context(|| {
            format!(
                "{}: no {} member: not a live initramfs (cosa buildextend-live's live-initramfs)",
                initramfs.display(),
                iso::INITRD_LIVE_STAMP
            )
        })?;
    let mut r = cpio::Reader::new(std::io::Cursor::new(&data[name_at - 110..]));
    let mut features = None;
    while let Some(e) = r.next_entry()? {
        if e.name == iso::INITRD_FEATURES {
            features = Some(
                serde_json::from_slice(&r.data_to_vec()?)
                    .with_context(|| format!("{}: parsing {}", initramfs.display(), e.name))?,
            );
        }
    }
    let rest = r.into_inner()?;
    let customized = data[name_at - 110 + rest.position() as usize..]
        .iter()
        .any(|b| *b != 0);
    let features = features.with_context(|| {
        format!(
            "{}: the live stamp has no {} beside it",
            initramfs.display(),
            iso::INITRD_FEATURES
        )
    })?;
    Ok((features, customized))
}

/// `cosa pxe customize`: the live initramfs with the customization appended (the
/// rootfs is unchanged), written to `output`, as `coreos-installer pxe customize` does.
pub fn pxe(initramfs: &Path, output: &Path, force: bool, c: &Customization) -> Result<()> {
    check_output(initramfs, output, force)?;
    if !c.live_kargs.is_empty() {
        bail!("--live-karg-*: PXE media carry no kernel command line; give live kernel arguments in the PXE configuration");
    }
    let mut data = fs::read(initramfs)
        .with_context(|| format!("reading the live initramfs {}", initramfs.display()))?;
    let (features, customized) = initramfs_features(initramfs, &data)?;
    c.check_features(&features, initramfs)?;
    if customized {
        bail!(
            "{} is customized already; customize the build's own live-initramfs",
            initramfs.display()
        );
    }
    data.resize(data.len().div_ceil(4) * 4, 0);
    data.extend(c.initrd()?);
    let mut tmp = temp_beside(output)?;
    tmp.write_all(&data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
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

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn files(live: &Value) -> HashMap<String, Vec<u8>> {
        live["storage"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let src = f["contents"]["source"].as_str().unwrap();
                let b64 = src.strip_prefix("data:;base64,").unwrap();
                let data = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                (f["path"].as_str().unwrap().to_string(), data)
            })
            .collect()
    }

    #[test]
    fn everything_becomes_one_live_config() {
        let t = tempfile::tempdir().unwrap();
        let ign = write(t.path(), "d.ign", r#"{"ignition":{"version":"3.4.0"}}"#);
        let extra = write(t.path(), "motd", "hi there\n");
        let hook = write(t.path(), "wipe.sh", "#!/bin/sh\necho hi\n");
        let c = Customization::from_inputs(&CustomizeInputs {
            dest_ignition: vec![ign.clone()],
            dest_device: Some("/dev/vda".into()),
            dest_console: vec!["ttyS0,115200n8".into()],
            dest_karg_append: vec!["a=1".into()],
            dest_file: vec![format!("{}:/etc/motd.d/x", extra.display())],
            pre_install: vec![hook],
            live_ignition: vec![ign],
            ..Default::default()
        })
        .unwrap();
        let live: Value = serde_json::from_slice(c.live_config.as_ref().unwrap()).unwrap();
        assert_eq!(live["ignition"]["version"], SPEC);
        assert_eq!(
            live["ignition"]["config"]["merge"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let f = files(&live);
        let yaml =
            String::from_utf8(f["/etc/coreos/installer.d/0000-customize.yaml"].clone()).unwrap();
        assert_eq!(
            yaml,
            "dest-device: /dev/vda\nignition-file: /etc/coreos/dest.ign\nconsole:\n- ttyS0,115200n8\nappend-karg:\n- a=1\n"
        );
        // The dest config merges the user's and carries the extra file.
        let dest: Value = serde_json::from_slice(&f[DEST_IGN]).unwrap();
        assert_eq!(dest["storage"]["files"][0]["path"], "/etc/motd.d/x");
        assert_eq!(
            dest["ignition"]["config"]["merge"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(f.contains_key("/usr/local/bin/pre-install-wipe.sh"));
        assert_eq!(
            live["systemd"]["units"][0]["name"],
            "pre-install-wipe.sh.service"
        );
        // The embed: an xz stream (CRC32) holding config.ign.
        let xz = c.initrd().unwrap();
        assert_eq!(&xz[..6], b"\xfd7zXZ\0");
        assert_eq!(xz[7], 1, "stream flags: CRC32");
    }

    #[test]
    fn bad_inputs_are_refused_by_option() {
        let t = tempfile::tempdir().unwrap();
        let cfg = write(
            t.path(),
            "i.yaml",
            "dest-device: /dev/vda\nwipe-everything: true\n",
        );
        let e = Customization::from_inputs(&CustomizeInputs {
            installer_config: vec![cfg],
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("wipe-everything"), "{e:#}");
        let e = Customization::from_inputs(&CustomizeInputs {
            dest_console: vec!["console=ttyS0".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("--dest-console"), "{e:#}");
        let e = Customization::from_inputs(&CustomizeInputs {
            live_karg_replace: vec!["a=b".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("KEY=OLD=NEW"), "{e:#}");
        assert!(Customization::from_inputs(&CustomizeInputs::default()).is_err());
        let c = Customization::from_inputs(&CustomizeInputs {
            network_keyfile: vec![write(t.path(), "eth0.nmconnection", "[connection]\n")],
            ..Default::default()
        })
        .unwrap();
        let e = c
            .check_features(&Features::ours(), Path::new("x.iso"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("--network-keyfile"), "{e:#}");
    }

    #[test]
    fn kargs_edits_follow_coreos_installer() {
        let e = KargsEdit {
            append: vec!["c=3".into()],
            replace: vec!["b=2=9".into()],
            delete: vec!["a".into()],
        };
        assert_eq!(e.apply_to("a b=2 a=1").unwrap(), "b=9 a=1 c=3");
    }
}
