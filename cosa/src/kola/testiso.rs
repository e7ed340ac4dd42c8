//! kola's install-media scenarios (upstream's `kola testiso`) as built-in tests
//! with upstream's names: the build's live ISO booted as a CD and as a disk, and
//! installs from the ISO and by PXE, offline (the metal image the media carry)
//! and online (`coreos.inst.image_url`), to 512-byte and 4K-sector disks, then
//! the installed disk booted.
//!
//! The scenarios need nothing of the stream but its contracts, so the demo OS
//! and the systemd variant run the same code: each VM's media are customized
//! with `cosa iso/pxe customize` (the library, in-process) so that the live
//! system's or the installed system's Ignition config writes [`MARKER`] naming
//! the boot ("live NAME" or "installed NAME") and, for the SSH transport,
//! authorizes the run's key. The harness reaches the guest as in any test (the
//! agent or SSH) and reads the marker back: a live boot is told from the
//! installed one by that file, not by timing. An ISO install reboots in the same
//! QEMU (the target disk is first in the boot order, passed by while blank); a
//! PXE install ends QEMU with its reboot and the next boot starts from the
//! target disk.
//!
//! The guest reaches only what the run serves on the host's loopback (the online
//! scenarios' metal image and config), through a guestfwd.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use fs_err as fs;
use serde_json::json;

use crate::kola::build::BuildUnderTest;
use crate::kola::httpd::Httpd;
use crate::kola::machine::{
    Firmware, LiveBoot, LiveSource, Machine, MachineSpec, TargetDisk, Transport,
};
use crate::kola::qemu::{Accel, DirectBoot, HOST_FORWARD_ADDR};
use crate::kola::ssh;
use crate::live::customize::{self, Customization, CustomizeInputs};

/// The file the media's Ignition configs write in the guest.
const MARKER: &str = "/etc/cosa-testiso";

/// The tag every scenario carries: `kola run --tag testiso` selects them all.
pub const TAG: &str = "testiso";

/// The install target, as the guest names it (the first virtio disk).
const TARGET_DEV: &str = "/dev/vda";

/// The PXE kernel arguments (what a PXE configuration gives): the live
/// initramfs finds its root image in the appended rootfs.
const PXE_KARGS: &str = "ignition.firstboot ignition.platform.id=metal console=ttyS0,115200n8";

/// How long an install scenario may take: the live boot, the image written,
/// the installed system's first boot (TCG).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The kernel argument and console lines the customized-media scenario checks.
const CUSTOM_KARG: &str = "cosa.testiso=customized";
const HOOK_PRE: &str = "cosa-testiso: pre-install hook ran before the install";
const HOOK_POST: &str = "cosa-testiso: post-install hook ran after the install";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `iso-live-login`: the ISO as a CD boots live to a login prompt.
    LiveLogin,
    /// `iso-as-disk`: the ISO written to a disk (a USB stick) boots live.
    AsDisk,
    /// `iso-install`: the ISO installs from `coreos.inst.image_url`.
    IsoOnlineInstall,
    /// `iso-offline-install`: the ISO, customized with `--dest-device` and
    /// `--dest-ignition`, installs the image it carries.
    IsoOfflineInstall,
    /// `pxe-online-install`: PXE, installing from `coreos.inst.image_url`.
    PxeOnlineInstall,
    /// `pxe-offline-install`: PXE with a customized initramfs, installing the
    /// image the rootfs carries.
    PxeOfflineInstall,
    /// `customized-media`: the ISO customized with the Day-0 options users
    /// combine (destination config and device, kernel arguments, install hooks,
    /// a live config) installs, and each option shows in the installed system.
    CustomizedMedia,
}

/// One scenario: what it does, on which firmware and target disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scenario {
    pub name: &'static str,
    pub kind: Kind,
    pub firmware: Firmware,
    /// The install target has 4K sectors (the media install `metal4k`).
    pub sector_4k: bool,
}

const fn scenario(name: &'static str, kind: Kind, firmware: Firmware, sector_4k: bool) -> Scenario {
    Scenario {
        name,
        kind,
        firmware,
        sector_4k,
    }
}

/// Every scenario, by upstream's name (`NAME.FIRMWARE`, `.4k` for 4K disks).
pub const ALL: [Scenario; 12] = [
    scenario(
        "iso-live-login.bios",
        Kind::LiveLogin,
        Firmware::Bios,
        false,
    ),
    scenario(
        "iso-live-login.uefi",
        Kind::LiveLogin,
        Firmware::Uefi,
        false,
    ),
    scenario("iso-as-disk.bios", Kind::AsDisk, Firmware::Bios, false),
    scenario("iso-as-disk.uefi", Kind::AsDisk, Firmware::Uefi, false),
    scenario(
        "iso-install.bios",
        Kind::IsoOnlineInstall,
        Firmware::Bios,
        false,
    ),
    scenario(
        "iso-offline-install.bios",
        Kind::IsoOfflineInstall,
        Firmware::Bios,
        false,
    ),
    scenario(
        "iso-offline-install.uefi",
        Kind::IsoOfflineInstall,
        Firmware::Uefi,
        false,
    ),
    scenario(
        "iso-offline-install.4k.uefi",
        Kind::IsoOfflineInstall,
        Firmware::Uefi,
        true,
    ),
    scenario(
        "pxe-online-install.bios",
        Kind::PxeOnlineInstall,
        Firmware::Bios,
        false,
    ),
    scenario(
        "pxe-offline-install.bios",
        Kind::PxeOfflineInstall,
        Firmware::Bios,
        false,
    ),
    scenario(
        "pxe-offline-install.4k.uefi",
        Kind::PxeOfflineInstall,
        Firmware::Uefi,
        true,
    ),
    scenario(
        "customized-media.bios",
        Kind::CustomizedMedia,
        Firmware::Bios,
        false,
    ),
];

impl Scenario {
    pub fn description(self) -> &'static str {
        match self.kind {
            Kind::LiveLogin => "The live ISO as a CD boots live (its live Ignition config applied) to a login prompt.",
            Kind::AsDisk => "The live ISO attached as a disk (a USB stick) boots live.",
            Kind::IsoOnlineInstall => "The live ISO installs from coreos.inst.image_url and coreos.inst.ignition_url (served on the host), then the installed disk boots.",
            Kind::IsoOfflineInstall => "The live ISO customized with --dest-device and --dest-ignition installs the metal image it carries, then the installed disk boots.",
            Kind::PxeOnlineInstall => "PXE (kernel, initramfs + rootfs) installs from coreos.inst.image_url, then the installed disk boots.",
            Kind::PxeOfflineInstall => "PXE with an initramfs customized with --dest-device and --dest-ignition installs the image the rootfs carries, then the installed disk boots.",
            Kind::CustomizedMedia => "The live ISO customized with a live config, --dest-device, --dest-ignition, --dest-karg-append and install hooks installs; each shows in the installed system.",
        }
    }

    pub fn tags(self) -> &'static [&'static str] {
        match self.kind {
            Kind::PxeOnlineInstall | Kind::PxeOfflineInstall => &[TAG, "pxe", "install"],
            Kind::LiveLogin | Kind::AsDisk => &[TAG, "iso", "live"],
            _ => &[TAG, "iso", "install"],
        }
    }

    pub fn timeout(self) -> Duration {
        if self.installs() {
            INSTALL_TIMEOUT
        } else {
            crate::kola::test::DEFAULT_TIMEOUT
        }
    }

    /// Whether the scenario installs to a disk (and boots it).
    pub fn installs(self) -> bool {
        !matches!(self.kind, Kind::LiveLogin | Kind::AsDisk)
    }

    fn online(self) -> bool {
        matches!(self.kind, Kind::IsoOnlineInstall | Kind::PxeOnlineInstall)
    }

    fn pxe(self) -> bool {
        matches!(self.kind, Kind::PxeOnlineInstall | Kind::PxeOfflineInstall)
    }

    pub fn by_name(name: &str) -> Option<Scenario> {
        ALL.into_iter().find(|s| s.name == name)
    }
}

/// The build's live media, and what the online scenarios serve.
pub(crate) struct Media {
    iso: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    rootfs: PathBuf,
    /// The PXE initrd: the live initramfs, then the rootfs.
    pxe_initrd: Option<PathBuf>,
    /// What the online scenarios fetch: `metal.raw.gz` (the build's metal image).
    www: Option<PathBuf>,
}

const BUILDEXTEND_LIVE: &str = "`cosa buildextend-live`";

impl Media {
    /// The build's live media for `scenarios`, with the shared inputs (the PXE
    /// initrd, the compressed metal image) made once under `dir`. An error names
    /// what the build lacks.
    pub(crate) fn prepare(b: &BuildUnderTest, scenarios: &[Scenario], dir: &Path) -> Result<Media> {
        let what = "the install-media tests need the build's live media";
        let iso = b.image("live-iso", BUILDEXTEND_LIVE).context(what)?;
        let kernel = b.image("live-kernel", BUILDEXTEND_LIVE).context(what)?;
        let initramfs = b.image("live-initramfs", BUILDEXTEND_LIVE).context(what)?;
        let rootfs = b.image("live-rootfs", BUILDEXTEND_LIVE).context(what)?;
        fs::create_dir_all(dir)?;
        let pxe_initrd = if scenarios.iter().any(|s| s.kind == Kind::PxeOnlineInstall) {
            let p = dir.join("pxe-initrd.img");
            crate::live::pxe_initrd(&initramfs, &rootfs, &p)?;
            Some(p)
        } else {
            None
        };
        let www = if scenarios.iter().any(|s| s.online()) {
            let metal = b
                .image("metal", "`cosa buildextend-metal`")
                .context("the online install tests serve the build's metal image")?;
            let www = dir.join("www");
            fs::create_dir_all(&www)?;
            gzip(&metal, &www.join("metal.raw.gz"))?;
            Some(www)
        } else {
            None
        };
        Ok(Media {
            iso,
            kernel,
            initramfs,
            rootfs,
            pxe_initrd,
            www,
        })
    }
}

/// `src` gzipped (fast) to `dest`, as the online installs fetch it.
fn gzip(src: &Path, dest: &Path) -> Result<()> {
    let what = || format!("compressing {} for the online installs", src.display());
    let mut input = fs::File::open(src)?;
    let out = std::io::BufWriter::new(fs::File::create(dest)?);
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    std::io::copy(&mut input, &mut gz).with_context(what)?;
    gz.finish()
        .with_context(what)?
        .into_inner()
        .map_err(|e| anyhow!("{}: {e}", what()))?;
    Ok(())
}

/// One scenario and everything it runs with.
pub(crate) struct Case {
    pub scenario: Scenario,
    pub media: Arc<Media>,
    pub arch: crate::arch::Arch,
    pub accel: Accel,
    pub transport: Transport,
    /// The live VM's memory (see [`memory_mib`]).
    pub memory_mib: u64,
    /// The scenario's own directory.
    pub dir: PathBuf,
}

impl Case {
    /// The scenario VM's console log.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("vm").join("console.txt")
    }
}

/// The memory a live VM needs: at least `default`, and room for the live root
/// image three times over (a PXE boot holds the initrd while the kernel unpacks
/// it into the initramfs, and the root image stays there; an ISO's is read into
/// the page cache), rounded up to 256 MiB.
pub(crate) fn memory_mib(media: &Media, default: u64) -> Result<u64> {
    let rootfs_mib = fs::metadata(&media.rootfs)?.len().div_ceil(1 << 20);
    let want = (1024 + 3 * rootfs_mib).div_ceil(256) * 256;
    Ok(want.max(default).max(1536))
}

/// An Ignition config writing [`MARKER`] with `text` (and, over SSH,
/// authorizing the run's key).
fn marker_config(text: &str, transport: &Transport) -> Result<serde_json::Value> {
    let mut c = json!({
        "ignition": {"version": "3.0.0"},
        "storage": {"files": [{
            "path": MARKER,
            "mode": 420,
            "overwrite": true,
            "contents": {"source": format!("data:,{}", customize::percent_encode(format!("{text}\n").as_bytes()))}
        }]}
    });
    if let Transport::Ssh(key) = transport {
        ssh::authorize(&mut c, ssh::USER, &key.public)?;
    }
    Ok(c)
}

fn write_config(dir: &Path, name: &str, c: &serde_json::Value) -> Result<PathBuf> {
    let p = dir.join(name);
    fs::write(&p, serde_json::to_vec_pretty(c)?)?;
    Ok(p)
}

/// A shell hook that says on the serial console whether the target was written.
fn hook(dir: &Path, name: &str, says: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    let part = format!("{TARGET_DEV}3");
    fs::write(
        &p,
        format!(
            "#!/bin/sh\nif [ -b {part} ]; then w=after; else w=before; fi\n\
             echo \"cosa-testiso: {says} hook ran $w the install\" >/dev/ttyS0\n"
        ),
    )?;
    Ok(p)
}

/// The media this scenario boots, customized for it in its directory, and the
/// host port the guest reaches (online scenarios).
fn make_boot(
    s: Scenario,
    m: &Media,
    transport: &Transport,
    dir: &Path,
    port: Option<u16>,
) -> Result<LiveSource> {
    let live_cfg = marker_config(&format!("live {}", s.name), transport)?;
    let dest_cfg = marker_config(&format!("installed {}", s.name), transport)?;
    let mut o = CustomizeInputs::default();
    let url = |f: &str| {
        format!(
            "http://{HOST_FORWARD_ADDR}:{}/{f}",
            port.unwrap_or_default()
        )
    };
    match s.kind {
        Kind::LiveLogin | Kind::AsDisk => {
            o.live_ignition = vec![write_config(dir, "live.ign", &live_cfg)?];
        }
        Kind::IsoOfflineInstall | Kind::PxeOfflineInstall => {
            o.dest_ignition = vec![write_config(dir, "dest.ign", &dest_cfg)?];
            o.dest_device = Some(TARGET_DEV.into());
        }
        Kind::CustomizedMedia => {
            o.live_ignition = vec![write_config(dir, "live.ign", &live_cfg)?];
            o.dest_ignition = vec![write_config(dir, "dest.ign", &dest_cfg)?];
            o.dest_device = Some(TARGET_DEV.into());
            o.dest_karg_append = vec![CUSTOM_KARG.into()];
            o.pre_install = vec![hook(dir, "pre.sh", "pre-install")?];
            o.post_install = vec![hook(dir, "post.sh", "post-install")?];
        }
        Kind::IsoOnlineInstall | Kind::PxeOnlineInstall => {
            // The config the installer fetches, beside the image.
            let www = m
                .www
                .as_ref()
                .context("internal: the online scenarios' files were not prepared")?;
            fs::write(
                www.join(format!("{}.ign", s.name)),
                serde_json::to_vec(&dest_cfg)?,
            )?;
            o.live_karg_append = vec![
                format!("coreos.inst.install_dev={TARGET_DEV}"),
                format!("coreos.inst.image_url={}", url("metal.raw.gz")),
                format!(
                    "coreos.inst.ignition_url={}",
                    url(&format!("{}.ign", s.name))
                ),
            ];
        }
    }
    let c = Customization::from_inputs(&o)
        .with_context(|| format!("{}: customizing the live media", s.name))?;
    Ok(match s.kind {
        Kind::PxeOnlineInstall => {
            let initrd = m
                .pxe_initrd
                .clone()
                .context("internal: the PXE initrd was not prepared")?;
            LiveSource::Pxe(DirectBoot {
                kernel: m.kernel.clone(),
                initrd: Some(initrd),
                cmdline: format!("{PXE_KARGS} {}", o.live_karg_append.join(" ")),
            })
        }
        Kind::PxeOfflineInstall => {
            let custom = dir.join("initramfs.img");
            customize::pxe(&m.initramfs, &custom, false, &c)
                .with_context(|| format!("{}: customizing the live initramfs", s.name))?;
            let initrd = dir.join("pxe-initrd.img");
            crate::live::pxe_initrd(&custom, &m.rootfs, &initrd)?;
            fs::remove_file(&custom)?;
            LiveSource::Pxe(DirectBoot {
                kernel: m.kernel.clone(),
                initrd: Some(initrd),
                cmdline: PXE_KARGS.into(),
            })
        }
        _ => {
            let iso = dir.join("live.iso");
            customize::iso(&m.iso, &iso, false, &c)
                .with_context(|| format!("{}: customizing the live ISO", s.name))?;
            if s.kind == Kind::AsDisk {
                LiveSource::IsoAsDisk(iso)
            } else {
                LiveSource::Cdrom(iso)
            }
        }
    })
}

/// Runs scenario `s`: `Ok(Ok(log))` passed, `Ok(Err(why))` the guest's part
/// failed (with the console's tail), `Err` the scenario could not be set up.
pub(crate) async fn run(su: &Case) -> Result<std::result::Result<String, String>> {
    let s = su.scenario;
    fs::create_dir_all(&su.dir)?;
    let httpd = match &su.media.www {
        Some(www) if s.online() => Some(Httpd::serve(www)?),
        _ => None,
    };
    let port = httpd.as_ref().map(|h| h.port);
    // Copying and customizing the media is file I/O: on the blocking pool (not
    // `block_in_place`, which may retire this worker thread, and QEMU, spawned
    // from it below, dies with the thread that spawned it).
    let source = {
        let (media, transport, dir) = (su.media.clone(), su.transport.clone(), su.dir.clone());
        tokio::task::spawn_blocking(move || make_boot(s, &media, &transport, &dir, port))
            .await
            .context("customizing the media")??
    };
    let live = LiveBoot {
        source,
        target: s.installs().then_some(TargetDisk {
            size_gib: 3,
            sector_4k: s.sector_4k,
        }),
    };
    let spec = MachineSpec::new(
        su.arch,
        s.name.into(),
        su.dir.join("vm"),
        su.media.iso.clone(),
        su.accel,
    )
    .firmware(s.firmware)
    .memory(su.memory_mib)
    .transport(su.transport.clone())
    .forwards(port.into_iter().collect())
    .live(live);

    let mut m = Machine::start(spec).await?;
    let r = match tokio::time::timeout(s.timeout(), check(s, &mut m)).await {
        Ok(Ok(log)) => Ok(log),
        Ok(Err(e)) => Err(format!("{e:#}; console tail:\n{}", m.console_tail())),
        Err(_) => Err(format!(
            "not done within {} s; console tail:\n{}",
            s.timeout().as_secs(),
            m.console_tail()
        )),
    };
    let _ = m.shutdown(Duration::from_secs(10)).await;
    m.remove_scratch();
    for f in ["live.iso", "pxe-initrd.img"] {
        let _ = fs::remove_file(su.dir.join(f));
    }
    drop(httpd);
    Ok(r)
}

/// The guest's part: boot, and read back what the media's configs wrote.
async fn check(s: Scenario, m: &mut Machine) -> Result<String> {
    let started = Instant::now();
    let mut log = Vec::new();
    if !s.installs() {
        // The scenario's own timeout bounds the boot: a live system read from
        // a CD under TCG takes minutes (the systemd variant's, some 4 under UEFI).
        let info = m.wait_ready(s.timeout(), None).await?;
        let marker = read_marker(m).await?;
        expect_marker(&marker, &format!("live {}", s.name))?;
        log.push(format!(
            "live system ready after {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            info.cmdline
        ));
        if s.kind == Kind::LiveLogin {
            wait_console(m, "login:", Duration::from_secs(120)).await?;
            log.push("login prompt on the serial console".into());
        }
        return Ok(log.join("\n"));
    }
    let console = m.console_path();
    if s.pxe() {
        tokio::select! {
            r = m.boot_target_after_exit(s.timeout()) => r?,
            e = watch_installer(console.clone()) => bail!("{e}"),
        }
        log.push(format!(
            "the PXE live system installed and rebooted after {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    // An ISO install reboots in the same QEMU: boots until the installed one.
    let info = tokio::select! {
        i = until_installed(m, s, &mut log) => i?,
        e = watch_installer(console) => bail!("{e}"),
    };
    log.push(format!(
        "installed system ready after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        info.cmdline
    ));
    if info.cmdline.contains("coreos.liveiso=") {
        bail!(
            "the installed marker is there, but the system booted the ISO: {}",
            info.cmdline
        );
    }
    let sectors = exec_text(m, &["cat", "/sys/block/vda/queue/logical_block_size"]).await?;
    let want_sectors = if s.sector_4k { "4096" } else { "512" };
    if sectors.trim() != want_sectors {
        bail!(
            "the target disk has {} -byte sectors, not {want_sectors}",
            sectors.trim()
        );
    }
    let mounts = exec_text(m, &["cat", "/proc/mounts"]).await?;
    if !mounts.lines().any(|l| l.starts_with(TARGET_DEV)) {
        bail!("nothing of {TARGET_DEV} is mounted: the system did not boot the installed disk\n{mounts}");
    }
    log.push(format!(
        "booted from {TARGET_DEV} ({want_sectors}-byte sectors)"
    ));
    if s.kind == Kind::CustomizedMedia {
        if !info.cmdline.split_whitespace().any(|k| k == CUSTOM_KARG) {
            bail!("--dest-karg-append {CUSTOM_KARG} is not on the installed system's command line: {}", info.cmdline);
        }
        let console = m.console_text();
        for want in [HOOK_PRE, HOOK_POST] {
            if !console.contains(want) {
                bail!("no {want:?} on the console: the install hooks did not run in order");
            }
        }
        log.push("kernel argument and install hooks applied".into());
    }
    Ok(log.join("\n"))
}

/// Boots until the installed system's (its config's marker says so).
async fn until_installed(
    m: &mut Machine,
    s: Scenario,
    log: &mut Vec<String>,
) -> Result<crate::kola::machine::BootInfo> {
    let want = format!("installed {}", s.name);
    let mut previous: Option<String> = None;
    loop {
        let info = m.wait_ready(s.timeout(), previous.as_deref()).await?;
        let marker = read_marker(m).await.unwrap_or_default();
        if marker.trim() == want {
            return Ok(info);
        }
        log.push(format!(
            "a boot that is not the installed system ({:?}): waiting for the next",
            marker.trim()
        ));
        previous = Some(info.boot_id.clone());
    }
}

/// What the streams' installer (`demo-installer`, both streams) says when an
/// install fails; the live system then stays up instead of rebooting.
const INSTALLER_ERROR: &str = "demo-installer: error:";

/// Returns (with the line) once the console shows the install failed.
async fn watch_installer(console: PathBuf) -> String {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let text = fs::read(&console).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        if let Some(line) = text.lines().find(|l| l.contains(INSTALLER_ERROR)) {
            return format!("the install failed: {}", line.trim());
        }
    }
}

async fn exec_text(m: &mut Machine, argv: &[&str]) -> Result<String> {
    let out = m.exec(argv, Duration::from_secs(60)).await?;
    if !out.success() {
        bail!(
            "`{}` in the guest failed: {}",
            argv.join(" "),
            out.text().trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn read_marker(m: &mut Machine) -> Result<String> {
    exec_text(m, &["cat", MARKER]).await
}

fn expect_marker(got: &str, want: &str) -> Result<()> {
    if got.trim() != want {
        bail!(
            "{MARKER} holds {:?}, not {want:?}: the media's Ignition config was not applied",
            got.trim()
        );
    }
    Ok(())
}

async fn wait_console(m: &Machine, text: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while !m.console_text().contains(text) {
        if Instant::now() > deadline {
            return Err(anyhow!(
                "no {text:?} on the serial console within {} s",
                within.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names() {
        let names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
        for n in [
            "iso-live-login.bios",
            "iso-live-login.uefi",
            "iso-as-disk.bios",
            "iso-as-disk.uefi",
            "iso-install.bios",
            "iso-offline-install.bios",
            "iso-offline-install.uefi",
            "iso-offline-install.4k.uefi",
            "pxe-online-install.bios",
            "pxe-offline-install.bios",
            "pxe-offline-install.4k.uefi",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        for s in ALL {
            // The name says the firmware and the sector size.
            assert!(s.name.ends_with(s.firmware.as_str()), "{}", s.name);
            assert_eq!(s.name.contains(".4k."), s.sector_4k, "{}", s.name);
            assert!(s.tags().contains(&TAG));
            assert_eq!(Scenario::by_name(s.name), Some(s));
        }
    }

    #[test]
    fn marker_config_authorizes_the_key_over_ssh() {
        let c = marker_config("live x", &Transport::Agent).unwrap();
        assert_eq!(c["storage"]["files"][0]["path"], MARKER);
        assert_eq!(
            c["storage"]["files"][0]["contents"]["source"],
            "data:,live%20x%0A"
        );
        assert!(c.get("passwd").is_none());
    }
}
